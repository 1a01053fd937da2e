"""Foundations of every test helper: the repository's paths, who the CLI records as the
actor, a free loopback port, a user's environment and a small inventory directory."""

from __future__ import annotations

import getpass
import os
import socket
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
LAB_DIR = ROOT / "lab"
TEMPLATES = ROOT / "templates"
# Who the command line records as having done something (runner.job.approval.who).
ME = f"{getpass.getuser()}@{socket.gethostname()}"


def write_inventory(tmp_path: Path, hosts: str, groups: str = "", defaults: str = "") -> Path:
    """A Nornir SimpleInventory directory (tmp_path/inv) with these three files' texts."""
    inv = tmp_path / "inv"
    inv.mkdir(exist_ok=True)
    for name, text in (("hosts.yaml", hosts), ("groups.yaml", groups),
                       ("defaults.yaml", defaults)):
        (inv / name).write_text(text, encoding="utf-8")
    return inv


def free_port() -> int:
    """A TCP port nothing listens on now (on 127.0.0.1)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def user_env() -> dict[str, str]:
    """The test's environment without its RUNNER_ variables: what a user's shell has."""
    return {k: v for k, v in os.environ.items() if not k.startswith("RUNNER_")}
