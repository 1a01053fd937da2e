"""A twin's simulated devices: one `runner lab sim --configs` process per twin, serving the
twin's seeded configs on loopback; started detached (it outlives `twin up`), found again by
its state file, stopped by `twin down` or `sync`."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from runner.errors import LabError
from runner.lab.netns import wait_for
from runner.lab.sim.cli import Device
from runner.lab.system import pid_alive
from runner.lab.twin.plan import SIM_CONFIG_DIR

SIM_DIR = "sim"
STATE = "sim.json"  # runner.lab.sim.fleet.STATE, which imports asyncssh
LOG = "sim.log"
ADDRESS = "127.77.0.1"  # twins' simulated devices: apart from `runner lab sim`'s default
START_TIMEOUT = 60.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((ADDRESS, 0))
        port: int = sock.getsockname()[1]
        return port


def running(directory: Path) -> dict[str, Any] | None:
    """The state of the twin's simulator if it serves, else None."""
    from runner.lab.sim import fleet as fleet_files  # asyncssh: only when a twin has one

    if not (directory / SIM_DIR).is_dir():
        return None
    return fleet_files.read_state(directory / SIM_DIR)


def start(directory: Path) -> dict[str, Any]:
    """Serve directory/sim-configs; the simulator's state (inventory, pid, addresses)."""
    sim_dir = directory / SIM_DIR
    sim_dir.mkdir(mode=0o700, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        (sim_dir / STATE).unlink()  # a stale one: its process is gone
    argv = [sys.executable, "-m", "runner", "lab", "sim", "--configs",
            str(directory / SIM_CONFIG_DIR), "--dir", str(sim_dir), "--address", ADDRESS,
            "--port", str(_free_port())]
    env = {**os.environ, "RUNNER_SIM_PASSWORD": secrets.token_urlsafe(12)}
    with open(directory / LOG, "ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    state_file = sim_dir / STATE
    try:
        wait_for(lambda: state_file.exists() or proc.poll() is not None, START_TIMEOUT,
                 "the twin's simulator to start")
    except LabError:
        proc.kill()
        proc.wait()
        raise
    if proc.poll() is not None:
        tail = (directory / LOG).read_text(encoding="utf-8", errors="replace").strip()
        raise LabError(f"the twin's simulator exited with {proc.returncode}: "
                       f"{tail.splitlines()[-1] if tail else 'no output'}")
    state: dict[str, Any] = json.loads(state_file.read_text(encoding="utf-8"))
    return state


def stop(directory: Path, timeout: float = 15) -> bool:
    """Stop the twin's simulator (SIGTERM, then SIGKILL); False when none served. Only a
    process whose command line names this twin's directory is signalled."""
    state = running(directory)
    if state is None:
        return False
    pid = int(state["pid"])
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    if str(directory / SIM_DIR).encode() not in cmdline:
        raise LabError(f"pid {pid} in {directory / SIM_DIR} is not this twin's simulator; "
                       "not stopping it")
    os.kill(pid, signal.SIGTERM)
    try:
        wait_for(lambda: not pid_alive(pid), timeout, "the twin's simulator to stop")
    except LabError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not pid_alive(pid), timeout, "the twin's simulator to die")
    with contextlib.suppress(FileNotFoundError):
        (directory / SIM_DIR / STATE).unlink()
    return True


def served_config(host: str, config: str) -> str:
    """The running config the simulator serves for a device seeded with `config`."""
    return Device.from_config(host, 1, config).running_config()
