"""The work every peer does on every device, and how a peer reads the simulator's inventory."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

# libyaml, as runner reads its inventory: the pure-Python loader takes seconds on 10,000 hosts
LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

SHOW = ["show version", "show running-config"]
PUSH = ["logging host 192.0.2.77", "ntp server 192.0.2.78", "snmp-server location bench-rack-1"]


def fleet(inventory: Path, limit: int | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(hosts with name/hostname/port, defaults) from the simulator's Nornir inventory."""
    hosts = yaml.load((inventory / "hosts.yaml").read_text(encoding="utf-8"),
                      Loader=LOADER)  # noqa: S506 (a safe loader)
    defaults = yaml.load((inventory / "defaults.yaml").read_text(encoding="utf-8"),
                         Loader=LOADER)  # noqa: S506
    rows = [{"name": n, **h} for n, h in hosts.items()]
    return (rows[:limit] if limit else rows), defaults


def report(ok: int, failed: int, errors: dict[str, str]) -> None:
    """The one line a peer prints: the bench checks that every device succeeded."""
    json.dump({"ok": ok, "failed": failed, "errors": dict(list(errors.items())[:5])},
              sys.stdout)
    sys.stdout.write("\n")
