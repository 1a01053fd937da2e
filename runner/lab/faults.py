"""Faults a person injected into a running lab (links down, netem, stopped daemons), as data."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from runner.errors import LabError

# tc's forms: 50ms, 1.5s, 200us; 2%, 0.5; 10mbit, 512kbit, 1gbit, 100bit (also *bps: bytes)
_TIME_RE = re.compile(r"^\d+(\.\d+)?(us|ms|s)$")
_RATE_RE = re.compile(r"^\d+(\.\d+)?(bit|kbit|mbit|gbit|bps|kbps|mbps|gbps)$")
ROUTER = "router"  # in Faults.stopped: the whole router is stopped, not one daemon


def split_endpoint(text: str) -> tuple[str, str]:
    """NODE:IF -> (node, interface); LabError for anything else."""
    node, sep, iface = text.partition(":")
    if not sep or not node or not iface or ":" in iface:
        raise LabError(f"{text!r} is not NODE:INTERFACE (such as r1:eth1)")
    return node, iface


@dataclass(frozen=True)
class Netem:
    """Link impairments on one interface's egress, as `tc qdisc ... netem` takes them."""

    delay: str | None = None
    jitter: str | None = None
    loss: float | None = None  # percent
    rate: str | None = None
    method: str | None = None  # a NetemMethod, once applied

    def __post_init__(self) -> None:
        for name, value in (("delay", self.delay), ("jitter", self.jitter)):
            if value is not None and not _TIME_RE.match(value):
                raise LabError(f"--{name} {value!r} is not a duration such as 50ms, 1s, 200us")
        if self.jitter is not None and self.delay is None:
            raise LabError("--jitter needs --delay (jitter is the delay's variation)")
        if self.loss is not None and not 0 <= self.loss <= 100:
            raise LabError(f"--loss {self.loss} is not a percentage from 0 to 100")
        if self.rate is not None and not _RATE_RE.match(self.rate):
            raise LabError(f"--rate {self.rate!r} is not a rate such as 10mbit, 512kbit")
        if self.empty:
            raise LabError("give at least one of --delay, --loss, --rate (or --clear)")

    @property
    def empty(self) -> bool:
        return self.delay is None and self.loss is None and self.rate is None

    def tc_args(self) -> list[str]:
        """The arguments after `netem`."""
        args: list[str] = []
        if self.delay is not None:
            args += ["delay", self.delay, *([self.jitter] if self.jitter else [])]
        if self.loss is not None:
            args += ["loss", f"{self.loss:g}%"]
        if self.rate is not None:
            args += ["rate", self.rate]
        return args

    def __str__(self) -> str:
        parts = []
        if self.delay is not None:
            parts.append(f"delay {self.delay}" + (f" ±{self.jitter}" if self.jitter else ""))
        if self.loss is not None:
            parts.append(f"loss {self.loss:g}%")
        if self.rate is not None:
            parts.append(f"rate {self.rate}")
        via = f" (by {self.method})" if self.method else ""
        return ", ".join(parts) + via


@dataclass
class Faults:
    """What was broken on purpose, kept in the lab's state: `status` shows it."""

    links_down: list[str] = field(default_factory=list)  # NODE:IF set down
    netem: dict[str, Netem] = field(default_factory=dict)  # NODE:IF -> impairments
    stopped: dict[str, list[str]] = field(default_factory=dict)  # node -> daemons (or ROUTER)

    def to_json(self) -> dict[str, Any]:
        return {"links_down": sorted(self.links_down),
                "netem": {k: asdict(v) for k, v in sorted(self.netem.items())},
                "stopped": {k: sorted(v) for k, v in sorted(self.stopped.items()) if v}}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Faults:
        data = data or {}
        return cls(list(data.get("links_down", [])),
                   {k: Netem(**v) for k, v in data.get("netem", {}).items()},
                   {k: list(v) for k, v in data.get("stopped", {}).items()})

    def describe(self) -> list[str]:
        """One line per fault, for `lab status`."""
        lines = [f"link {end} down" for end in sorted(self.links_down)]
        lines += [f"netem on {end}: {spec}" for end, spec in sorted(self.netem.items())]
        for node, daemons in sorted(self.stopped.items()):
            if ROUTER in daemons:
                lines.append(f"router {node} stopped")
            lines += [f"{d} stopped on {node}" for d in sorted(daemons) if d != ROUTER]
        return lines

    def router_stopped(self, node: str) -> bool:
        return ROUTER in self.stopped.get(node, [])
