"""Thin wrappers around the system tools the lab drives (ip, ssh-keygen, nsenter), and the
writing of a node's files with their owner and mode."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from runner.errors import BackendUnavailable, CommandFailed


def run(argv: Sequence[str], *, input_: str | None = None, check: bool = True,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a command, capture its output; a non-zero exit raises CommandFailed."""
    proc = subprocess.run(list(argv), input=input_, capture_output=True, text=True,
                          timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise CommandFailed(list(argv), proc.returncode, proc.stderr or proc.stdout)
    return proc


def write_file(path: Path, text: str, mode: int = 0o644, uid: int = 0, gid: int = 0) -> None:
    """A node's file with its owner and mode (the lab's files belong to root unless said)."""
    path.write_text(text, encoding="utf-8")
    os.chown(path, uid, gid)
    path.chmod(mode)


def owned_dir(path: Path, uid: int, gid: int, mode: int) -> None:
    """A directory (and its parents) with this owner and mode."""
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, uid, gid)
    path.chmod(mode)


def ip_batch(commands: Sequence[str], *, force: bool = False) -> None:
    """Run many `ip` commands in one process (far faster than one process each)."""
    if not commands:
        return
    argv = ["ip", "-force", "-batch", "-"] if force else ["ip", "-batch", "-"]
    run(argv, input_="\n".join(commands) + "\n", check=not force)


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise BackendUnavailable(f"{what} needs root (network namespaces); run it with sudo")


def require_tools(tools: dict[str, str]) -> None:
    """tools: path or command -> the package that provides it."""
    missing = [pkg for tool, pkg in tools.items()
               if not (os.path.exists(tool) if tool.startswith("/") else shutil.which(tool))]
    if missing:
        raise BackendUnavailable(
            f"missing system packages: {', '.join(sorted(set(missing)))} "
            "(run ./dev setup, or apt-get install them)")


def netns_list() -> set[str]:
    proc = run(["ip", "netns", "list"], check=False)
    return {line.split()[0] for line in proc.stdout.splitlines() if line.strip()}


def netns_pids(netns: str) -> list[int]:
    proc = run(["ip", "netns", "pids", netns], check=False)
    return [int(p) for p in proc.stdout.split() if p.isdigit()]


def interfaces(netns: str) -> dict[str, tuple[str, list[str]]]:
    """Interface -> (oper state, its IPv4 and global IPv6 addresses with prefix length)
    inside a namespace; empty when it cannot be read (not root, gone)."""
    try:
        proc = subprocess.run(["ip", "-n", netns, "-j", "addr", "show"], capture_output=True,
                              text=True, timeout=5, check=False)
        data = json.loads(proc.stdout) if proc.returncode == 0 and proc.stdout else []
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return {}
    out: dict[str, tuple[str, list[str]]] = {}
    for entry in data if isinstance(data, list) else []:
        name = str(entry.get("ifname", ""))
        if name:
            out[name] = (str(entry.get("operstate", "UNKNOWN")), [
                f"{a['local']}/{a['prefixlen']}" for a in entry.get("addr_info", [])
                if a.get("family") == "inet" or (a.get("family") == "inet6"
                                                 and a.get("scope") == "global")])
    return out


def netns_inode(netns: str) -> int | None:
    """The inode of a named network namespace (/run/netns/NAME), None when it is gone."""
    try:
        return os.stat(f"/run/netns/{netns}").st_ino
    except OSError:
        return None


def pid_netns_inode(pid: int) -> int | None:
    """The inode of a process's network namespace, None when it is gone."""
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


def link_exists(name: str) -> bool:
    return os.path.exists(f"/sys/class/net/{name}")


def link_alias(name: str, netns: str | None = None) -> str | None:
    """An interface's alias (`ip link set X alias A`), here or in a namespace; None if unset."""
    argv = ["ip", *(["-n", netns] if netns else []), "-j", "link", "show", "dev", name]
    proc = run(argv, check=False)
    try:
        alias = json.loads(proc.stdout)[0].get("ifalias")
    except (ValueError, IndexError, AttributeError):
        return None
    return str(alias) if alias else None


def process_name(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8") as fh:
            return fh.read().strip()
    except OSError:
        return None


def pid_alive(pid: int) -> bool:
    return process_name(pid) is not None and not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False
