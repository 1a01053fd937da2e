"""Production's own routing, read-only over runner's drivers (the session `runner run` opens
for each host), and compared with its twin router's: OSPF neighbours (router-id and
interface, Full or not) and BGP peers (Established or not)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.drivers.base import Timeouts
from runner.drivers.sessions import close_quietly, open_session
from runner.errors import CommandRejected, DeviceError, InternalError
from runner.inventory.fleet import FleetInventory
from runner.inventory.secretref import SecretResolver, roots
from runner.job.spec import JobSpec
from runner.lab.converge import RouterRouting, bgp_peers, ospf_neighbors
from runner.redact import Redactor

# Read-only, and one attempt: an unreachable production host is said, not waited for.
TIMEOUTS = Timeouts(connect=15, command=30)
CONCURRENCY = 20
DEFAULT_DRIVER = str(JobSpec.model_fields["driver"].default)  # `runner run`'s
COMMANDS = {"ospfd": "show ip ospf neighbor json", "bgpd": "show bgp summary json"}
SIMULATED = "simulated: routing not compared (the fleet simulator runs no routing protocols)"
NOT_ASKED = "production's routing not compared (--no-production)"
OUTSIDE = "no twin router has this address: it never comes up in the twin"


@dataclass(frozen=True)
class Difference:
    """One neighbour or peer whose state class differs (None: the side lacks it)."""

    protocol: str  # "OSPF" or "BGP"
    key: str  # OSPF router-id@interface, BGP peer
    production: str | None
    twin: str | None
    expected: str | None = None  # why this difference is no fault of the twin

    def __str__(self) -> str:
        noun = "neighbour" if self.protocol == "OSPF" else "peer"
        prod = self.production if self.production is not None else f"has no such {noun}"
        twin = self.twin if self.twin is not None else f"has no such {noun}"
        text = f"{self.protocol} {self.key} production {prod}, twin {twin}"
        return f"{text} (expected: {self.expected})" if self.expected else text

    def to_json(self) -> dict[str, Any]:
        return {"protocol": self.protocol, "key": self.key, "production": self.production,
                "twin": self.twin, "expected": self.expected}


@dataclass
class Comparison:
    """One twin node against production: compared, or why not."""

    node: str
    compared: bool
    differences: list[Difference] = field(default_factory=list)
    error: str | None = None  # production could not be read: class and message
    note: str | None = None  # why it was not compared, when that is no fault

    @property
    def faults(self) -> list[Difference]:
        return [d for d in self.differences if d.expected is None]

    @property
    def expected(self) -> list[Difference]:
        return [d for d in self.differences if d.expected is not None]

    @property
    def same(self) -> bool | None:
        return not self.faults if self.compared else None

    @property
    def failed(self) -> bool:
        """A difference with production, or production unread: `twin up` exits 1."""
        return self.error is not None or bool(self.faults)

    def lines(self) -> list[str]:
        """What the CLI prints for it, first line first."""
        if self.error is not None:
            return [f"{self.node}: NOT COMPARED: production could not be read: {self.error}"]
        if not self.compared:
            return [f"{self.node}: {self.note}"]
        head = f"{self.node}: same as production" if not self.faults else \
            f"{self.node}: DIFFERS from production:"
        if not self.faults and self.expected:
            head += f" (apart from {len(self.expected)} expected difference(s))"
        return [head, *(f"  {d}" for d in self.faults), *(f"  {d}" for d in self.expected)]

    def to_json(self) -> dict[str, Any]:
        return {"compared": self.compared, "same": self.same,
                "differences": [d.to_json() for d in self.faults],
                "expected_differences": [d.to_json() for d in self.expected],
                "error": self.error, "note": self.note}


def _full(state: str | None) -> bool:
    return state is not None and state.startswith("Full")


def _established(state: str | None) -> bool:
    return state == "Established"


def compare(production: RouterRouting, twin: RouterRouting,
            outside: Collection[str] = ()) -> list[Difference]:
    """Every neighbour or peer one side has and the other lacks, or whose state class
    differs (Full or not, Established or not: a DR election may go either way). A BGP
    peer in `outside` (no twin router has its address) never comes up in the twin: its
    state differing is expected; a peer only one side has is not."""
    out: list[Difference] = []
    for protocol, prod, mine, up in (("OSPF", production.ospf, twin.ospf, _full),
                                     ("BGP", production.bgp, twin.bgp, _established)):
        for key in sorted(set(prod) | set(mine)):
            p, t = prod.get(key), mine.get(key)
            if p is not None and t is not None and up(p) == up(t):
                continue
            why = OUTSIDE if protocol == "BGP" and key in outside and p is not None and \
                t is not None and not up(t) else None
            out.append(Difference(protocol, key, p, t, why))
    return out


async def _read_one(inventory: FleetInventory, host: str, daemons: Collection[str],
                    resolver: SecretResolver, pool: ThreadPoolExecutor,
                    gate: asyncio.Semaphore) -> RouterRouting:
    """One production host's routing, as a twin router's is read; an error (its class and
    message, the session's secrets masked) when it cannot be read."""
    result = RouterRouting(host)
    secrets: tuple[str, ...] = ()
    async with gate:
        try:
            driver = inventory.driver_for(host, DEFAULT_DRIVER)
            params = inventory.connect_params(host, driver, resolver)
            secrets = params.secrets
            session = await open_session(driver, params, TIMEOUTS, pool)
            try:
                for daemon, command in COMMANDS.items():
                    if daemon in daemons:
                        data = _json(command, await session.command(command,
                                                                    TIMEOUTS.command))
                        if daemon == "ospfd":
                            result.ospf = ospf_neighbors(data)
                        else:
                            result.bgp = bgp_peers(data)
            finally:
                await asyncio.shield(close_quietly(session))
        except DeviceError as exc:
            result.error = Redactor(secrets).text(f"{exc.error_class}: {exc}")
        except TimeoutError:
            result.error = f"DeviceTimeout: no answer within {TIMEOUTS.command:g}s"
        except Exception as exc:  # a bug must cost one host's comparison, not the twin
            error = InternalError(f"{type(exc).__name__}: {exc}")
            result.error = Redactor(secrets).text(f"{error.error_class}: {error}")
    return result


def _json(command: str, text: str) -> Mapping[str, Any]:
    start = text.find("{")
    try:
        data = json.loads(text[start:]) if start >= 0 else None
    except ValueError:
        data = None
    if not isinstance(data, dict):
        first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "nothing")
        raise CommandRejected(f"`{command}` answered no JSON object: {first[:200]}")
    return data


async def _read_all(inventory: FleetInventory, hosts: Mapping[str, Collection[str]],
                    resolver: SecretResolver) -> list[RouterRouting]:
    gate = asyncio.Semaphore(CONCURRENCY)
    with ThreadPoolExecutor(max_workers=CONCURRENCY) as pool:
        return list(await asyncio.gather(*(
            _read_one(inventory, h, d, resolver, pool, gate) for h, d in hosts.items())))


def read(inventory: FleetInventory, hosts: Mapping[str, Collection[str]],
         secrets_dirs: tuple[Path, ...] = ()) -> dict[str, RouterRouting]:
    """Production's routing of each host (host -> the daemons its backup runs), read at
    once over the inventory's driver for it; nothing is configured."""
    if not hosts:
        return {}
    resolver = SecretResolver(roots(secrets_dirs, inventory.directory))
    return {r.node: r for r in asyncio.run(_read_all(inventory, hosts, resolver))}


def comparisons(production: Mapping[str, RouterRouting], twin: list[RouterRouting],
                outside: Mapping[str, list[str]],
                simulated: Collection[str]) -> dict[str, Comparison]:
    """Each twin router against production's read of it; each simulated device said."""
    out: dict[str, Comparison] = {}
    for mine in twin:
        prod = production.get(mine.node)
        if prod is None:
            out[mine.node] = Comparison(mine.node, False, error="InternalError: not read")
        elif prod.error is not None:
            out[mine.node] = Comparison(mine.node, False, error=prod.error)
        elif mine.error is not None:
            out[mine.node] = Comparison(mine.node, False,
                                        error=f"the twin's routing could not be read: "
                                              f"{mine.error}")
        else:
            out[mine.node] = Comparison(mine.node, True, compare(
                prod, mine, outside.get(mine.node, [])))
    for host in simulated:
        out[host] = Comparison(host, False, note=SIMULATED)
    return out


def not_asked(nodes: Collection[str], simulated: Collection[str]) -> dict[str, Comparison]:
    """--no-production: every node, said as not compared."""
    return {h: Comparison(h, False, note=NOT_ASKED if h not in simulated else SIMULATED)
            for h in [*nodes, *simulated]}
