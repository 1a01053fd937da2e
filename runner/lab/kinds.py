"""Node kinds: an instance-owned registry saying what each kind is and how to log in to it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from runner.errors import TopologyError
from runner.inventory import platforms
from runner.registry import Registry

Role = Literal["router", "host"]

# Kinds containerlab knows that boot a vendor image (or need Docker itself): the namespace
# backend cannot emulate them, so they get a clear error instead of a half-built lab.
CONTAINERLAB_ONLY_KINDS = frozenset(
    (
        "nokia_srlinux", "srl", "arista_ceos", "ceos", "juniper_crpd", "crpd",
        "juniper_csrx", "sonic-vs", "sonic-vm", "nokia_sros", "vr-sros", "nokia_srsim",
        "juniper_vmx", "vr-vmx", "juniper_vqfx", "vr-vqfx", "juniper_vsrx", "vr-vsrx",
        "juniper_vjunosrouter", "juniper_vjunosswitch", "juniper_vjunosevolved",
        "cisco_xrv", "vr-xrv", "cisco_xrv9k", "vr-xrv9k", "arista_veos", "vr-veos",
        "cisco_csr1000v", "vr-csr", "paloalto_panos", "vr-pan", "mikrotik_ros", "vr-ros",
        "6wind_vsr", "cisco_n9kv", "vr-n9kv", "cisco_ftdv", "vr-ftdv", "dell_ftosv",
        "vr-ftosv", "dell_sonic", "aruba_aoscx", "vr-aoscx", "keysight_ixia-c-one",
        "ipinfusion_ocnos", "checkpoint_cloudguard", "ciena_saos", "ext-container", "rare",
        "cisco_xrd", "cisco_xrd_vrouter", "cisco_c8000", "cisco_c8000v", "cisco_cat9kv",
        "cisco_iol", "cisco_asav", "cisco_vios", "nvidia_cumulusvx", "cvx", "huawei_vrp",
        "openbsd", "freebsd", "generic_vm", "fortinet_fortigate", "k8s-kind", "fdio_vpp",
        "vyosnetworks_vyos", "juniper_cjunosevolved", "arrcus_arcos", "f5_bigip-ve",
        "cisco_sdwan", "openwrt", "spirent_stc", "veesix_osvbng", "ostinato",
        "plvision_sonic", "bridge", "ovs-bridge", "border0", "host",
    )
)


@dataclass(frozen=True)
class Kind:
    """What runner knows about one node kind: its role, login and automation platforms."""

    name: str
    # None: decided per node (a `linux` node is a router when it runs an FRR image).
    role: Role | None
    username: str = "admin"
    password: str = "admin"  # noqa: S105 - containerlab's published lab default, not a secret
    # How clients drive its CLI: runner's platform (a platforms.yaml key, which runner's own
    # asyncssh driver uses), netmiko's device_type and scrapli's definition.
    platform: str = "cisco_ios"
    netmiko_platform: str = "cisco_ios"
    scrapli_platform: str = "cisco_iosxe"


class KindRegistry(Registry[Kind]):
    """Kinds known to one lab loader; each kind is registered explicitly, with aliases.
    A name registered twice is refused; an unknown one is an error naming the known ones."""

    def __init__(self) -> None:
        super().__init__("kind", lambda kind: kind.name, error=TopologyError)

    def register(self, entry: Kind, *aliases: str) -> None:
        if platforms.get(entry.platform) is None:
            raise ValueError(f"kind {entry.name!r}: platform {entry.platform!r} is not in "
                             f"platforms.yaml (runner knows {', '.join(platforms.names())})")
        super().register(entry, *aliases)

    def unknown(self, name: str) -> TopologyError:
        """TopologyError (without a location): bridges and vendor kinds say what to do."""
        if name in ("bridge", "ovs-bridge"):
            return TopologyError(f"kind {name!r} is a bridge of this host, which containerlab "
                                 "attaches containers to; the namespace backend links nodes "
                                 "only by veth pairs (link them directly, or use --backend "
                                 "containerlab)")
        if name in CONTAINERLAB_ONLY_KINDS:
            return TopologyError(f"kind {name!r} needs containerlab with Docker and its vendor "
                                 f"image; the namespace backend builds only "
                                 f"{', '.join(self.names(aliases=True))}")
        return TopologyError(f"unknown kind {name!r} (expected one of "
                             f"{', '.join(self.names(aliases=True))}, or a containerlab kind "
                             "with --backend containerlab)")

    def names(self, *, aliases: bool = True) -> list[str]:
        """Kinds and their aliases, sorted: a topology may use any of them."""
        return sorted(super().names(aliases=aliases))


def default_registry() -> KindRegistry:
    """The kinds the namespace backend can build: FRR routers and plain Linux hosts."""
    registry = KindRegistry()
    # vtysh answers like IOS: netmiko's cisco_ios and scrapli's cisco_iosxe both drive it.
    registry.register(Kind("frr", role="router"), "frrouting")
    registry.register(Kind("linux", role=None))
    return registry


def is_frr_image(image: str | None) -> bool:
    """True for FRR images (frrouting/frr, quay.io/frrouting/frr:8.4.4, .../frr-debian...)."""
    if not image:
        return False
    repo = image.rsplit("@", 1)[0]
    last = repo.rsplit("/", 1)[-1].split(":", 1)[0]
    return last == "frr" or last.startswith("frr-") or "frrouting" in repo
