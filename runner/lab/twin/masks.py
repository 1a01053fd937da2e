"""Masked secrets in backups (runner writes `********` in their place) replaced by one lab
value, the same on every router so both ends of a keyed session (BGP, OSPF) still agree."""

from __future__ import annotations

from dataclasses import dataclass

from runner.redact import MASK

# Said in `twin up`'s output: a lab's secret, never production's.
LAB_SECRET = "twin-lab-secret"  # noqa: S105


@dataclass(frozen=True)
class Replaced:
    """One config line whose masked secret was replaced: its number and its text up to the
    mask (the command, never a value)."""

    line: int
    command: str


def unmask(config: str, value: str = LAB_SECRET) -> tuple[str, list[Replaced]]:
    """The config with every mask replaced by `value`, and the lines that had one."""
    out: list[str] = []
    replaced: list[Replaced] = []
    for number, line in enumerate(config.splitlines(keepends=True), 1):
        if MASK in line:
            replaced.append(Replaced(number, line[:line.index(MASK)].strip()))
        out.append(line.replace(MASK, value))
    return "".join(out), replaced
