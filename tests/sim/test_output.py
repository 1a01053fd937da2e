"""What a person reads during and after a large run, on 60 simulated devices: one live bar
on a terminal (counts per status, a rate), and a table that lists every failure and counts
the rest (`--all` lists every device)."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.base import ROOT
from tests.support.fleet import Fleet, FleetSpec, start_fleet

DEVICES = 60
REFUSED = 3


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with start_fleet(tmp_path_factory.mktemp("sim-out"),
                     FleetSpec(DEVICES, "127.113.0.1", faults=(f"refuse={REFUSED}",))) as fleet:
        yield fleet


def run_on_a_terminal(sim: Fleet, tmp_path: Path, *args: str,
                      columns: int = 120) -> tuple[int, str, str]:
    """`runner run` with stderr on a pseudo-terminal of `columns` (as in an interactive
    shell) and stdout piped; returns (exit code, stdout, everything on the terminal)."""
    job = tmp_path / "clock.yml"
    job.write_text(yaml.safe_dump({"name": "clock", "driver": "asyncssh",
                                   "retries": {"count": 0},
                                   "steps": [{"command": "show clock"}]}), encoding="utf-8")
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # the terminal's other side closed
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "runner", "--db", f"sqlite:///{tmp_path / 'r.db'}", "run",
             str(job), "-i", str(sim.inventory), "--templates", str(ROOT / "templates"),
             *args], stdout=subprocess.PIPE, stderr=slave, text=True, timeout=300,
            check=False, cwd=tmp_path)
    finally:
        os.close(slave)
        reader.join(10)
        os.close(master)
    # the terminal turns each newline into CR LF (onlcr): back to the program's newlines
    return proc.returncode, proc.stdout, b"".join(chunks).decode().replace("\r\n", "\n")


def test_a_large_run_shows_one_live_bar_and_a_table_of_its_failures(
        sim: Fleet, tmp_path: Path) -> None:
    code, out, terminal = run_on_a_terminal(sim, tmp_path)
    assert code == 1  # some devices refused the login
    refused = sorted(sim.faults)
    assert len(refused) == REFUSED
    # the bar is redrawn in place: one line, many carriage returns, no line per device
    redraws = terminal.split("\r")
    assert len(redraws) > DEVICES // 2, terminal[:500]
    assert terminal.count("\n") <= 1, terminal[:500]
    final = redraws[-1]
    bar = re.match(r"\[=+\] 60/60  ok (\d+)  auth_failed (\d+)  (\d+\.\d)/s\x1b\[K\n$",
                   final)
    assert bar, repr(final)
    assert int(bar[1]) == DEVICES - REFUSED and int(bar[2]) == REFUSED and float(bar[3]) > 0
    assert any(re.match(r"\[=*>? *\] \d+/60  ", r) for r in redraws[1:-1])
    # the table: every failure, the rest counted; the summary counts them all
    lines = out.splitlines()
    listed = [line.split()[0] for line in lines[2:2 + REFUSED]]
    assert lines[1].split() == ["DEVICE", "STATUS", "CHANGED", "DURATION", "ERROR"]
    assert sorted(listed) == refused
    assert all(" auth_failed " in line for line in lines[2:2 + REFUSED])
    assert lines[2 + REFUSED] == (f"... and {DEVICES - REFUSED} more not listed "
                                  f"({DEVICES - REFUSED} ok; --all lists every device)")
    assert f"ok {DEVICES - REFUSED}" in out and f"auth_failed {REFUSED}" in out


def test_all_lists_every_device_and_a_log_gets_a_line_per_device(
        sim: Fleet, tmp_path: Path) -> None:
    code, out, _ = run_on_a_terminal(sim, tmp_path, "--all")
    assert code == 1
    hosts = sim.hosts
    rows = [line.split()[0] for line in out.splitlines()[2:2 + DEVICES]]
    assert sorted(rows) == sorted(hosts)
    assert "more not listed" not in out
    # not a terminal (a log file, CI): one line per device as it finishes, with its status
    proc = subprocess.run(
        [sys.executable, "-m", "runner", "--db", f"sqlite:///{tmp_path / 'r.db'}", "run",
         str(tmp_path / "clock.yml"), "-i", str(sim.inventory), "--templates",
         str(ROOT / "templates")], capture_output=True, text=True, timeout=300,
        check=False, cwd=tmp_path)
    assert proc.returncode == 1
    progress = proc.stderr.splitlines()
    assert len(progress) == DEVICES and "\r" not in proc.stderr
    assert progress[-1].startswith(f"[{DEVICES}/{DEVICES}] done {DEVICES}  failed {REFUSED}")


def test_the_bar_never_wraps_on_a_narrow_terminal(sim: Fleet, tmp_path: Path) -> None:
    # a wrapped line could not be redrawn in place: the bar is cut to the width
    code, _, terminal = run_on_a_terminal(sim, tmp_path, columns=30)
    assert code == 1
    redraws = [r.replace("\x1b[K", "").rstrip("\n") for r in terminal.split("\r")[1:]]
    assert redraws and all(len(r) <= 29 for r in redraws), redraws
    assert redraws[-1].startswith("[========================]")
