"""Packet capture on a lab node's interface: tcpdump inside the node's network namespace."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import BinaryIO

from runner.errors import BackendUnavailable, LabError
from runner.lab.faults import split_endpoint
from runner.lab.state import LabState
from runner.lab.system import require_root

PCAP_MAGIC = (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4")  # little- and big-endian pcap


def tcpdump_argv(lab: LabState, endpoint: str, count: int | None, pcap: bool,
                 expression: list[str] | None = None) -> list[str]:
    """tcpdump in the node's namespace (containerlab names its containers' namespaces the
    same way, so this serves both backends): pcap on stdout, or decoded lines."""
    name, iface = split_endpoint(endpoint)
    if name not in lab.plan.nodes:
        raise LabError(f"lab {lab.plan.lab} has no node {name!r}")
    node = lab.plan.nodes[name]
    if iface not in ("eth0", "any", *node.interfaces):
        raise LabError(f"{name} has no interface {iface!r} (eth0, any, "
                       f"{', '.join(node.interfaces)})")
    argv = ["ip", "netns", "exec", node.netns, "tcpdump", "-i", iface, "-n"]
    # -U: each packet is written as it arrives, so `| wireshark -k -i -` shows it at once.
    argv += ["-U", "-w", "-"] if pcap else ["-l"]
    if count is not None:
        argv += ["-c", str(count)]
    if expression:
        argv += ["--", *expression]  # a pcap filter: `icmp`, `port 179`, `not arp`
    return argv


def capture(lab: LabState, endpoint: str, count: int | None, out: Path | None,
            to_terminal: bool, expression: list[str] | None = None) -> int:
    """Run tcpdump until --count packets or Ctrl-C: a pcap file (out), pcap on stdout when
    it is a pipe, decoded lines on a terminal. Its exit code."""
    require_root("capturing in a lab")
    if shutil.which("tcpdump") is None:
        raise BackendUnavailable("tcpdump is not installed (./dev setup installs it)")
    pcap = out is not None or not to_terminal
    argv = tcpdump_argv(lab, endpoint, count, pcap, expression)
    if out is None:
        return subprocess.run(argv, check=False).returncode  # straight to our stdout
    # Written by runner, not by tcpdump (which drops privileges to its own user first).
    with out.open("wb") as fh:
        return _copy(argv, fh)


def _copy(argv: list[str], fh: BinaryIO) -> int:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=sys.stderr)
    assert proc.stdout is not None
    try:
        while chunk := os.read(proc.stdout.fileno(), 65536):
            fh.write(chunk)
            fh.flush()
    except KeyboardInterrupt:
        proc.terminate()
        fh.write(proc.stdout.read())
    return proc.wait()
