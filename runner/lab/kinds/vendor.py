"""Kinds containerlab knows that the namespace backend cannot build (vendor images, Docker
itself, host bridges): each refused with what to do instead, never half-built."""

from __future__ import annotations

from runner.errors import TopologyError

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
BRIDGE_KINDS = ("bridge", "ovs-bridge")


def refusal(name: str, buildable: list[str]) -> TopologyError | None:
    """Why a containerlab kind is not built here (None: not a containerlab kind).
    buildable: the kinds (and aliases) the namespace backend does build."""
    if name in BRIDGE_KINDS:
        return TopologyError(f"kind {name!r} is a bridge of this host, which containerlab "
                             "attaches containers to; the namespace backend links nodes "
                             "only by veth pairs (link them directly, or use --backend "
                             "containerlab)")
    if name in CONTAINERLAB_ONLY_KINDS:
        return TopologyError(f"kind {name!r} needs containerlab with Docker and its vendor "
                             f"image; the namespace backend builds only "
                             f"{', '.join(buildable)}")
    return None
