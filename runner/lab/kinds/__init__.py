"""Node kinds, one module each (frr, a package with its files and boot; linux; vendor for
the kinds refused here), all implementing base.Kind; a registry of the kinds one lab
loader builds."""

from __future__ import annotations

from runner.errors import TopologyError
from runner.inventory import platforms
from runner.lab.kinds.base import Kind, NodeShape, Role, is_router
from runner.lab.kinds.frr import FrrKind, is_frr_image
from runner.lab.kinds.linux import LinuxKind
from runner.lab.kinds.vendor import CONTAINERLAB_ONLY_KINDS, refusal
from runner.registry import Registry

__all__ = ["CONTAINERLAB_ONLY_KINDS", "FrrKind", "Kind", "KindRegistry", "LinuxKind",
           "NodeShape", "Role", "default_registry", "is_frr_image", "planned"]


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
        known = self.names(aliases=True)
        return refusal(name, known) or TopologyError(
            f"unknown kind {name!r} (expected one of {', '.join(known)}, or a containerlab "
            "kind with --backend containerlab)")

    def names(self, *, aliases: bool = True) -> list[str]:
        """Kinds and their aliases, sorted: a topology may use any of them."""
        return sorted(super().names(aliases=aliases))


def default_registry() -> KindRegistry:
    """The kinds the namespace backend can build: FRR routers and Linux hosts (or routers)."""
    registry = KindRegistry()
    registry.register(FrrKind(), "frrouting")
    registry.register(LinuxKind())
    return registry


def planned(kind: str, role: str) -> Kind:
    """The behaviour of a node of a lab's saved plan, whose JSON keeps the kind's name and
    the role it had (so labs brought up by any earlier runner still load)."""
    return FrrKind(kind) if is_router(role) else LinuxKind(kind)
