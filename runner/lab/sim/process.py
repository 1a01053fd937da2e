"""Running the simulator: the foreground serve loop behind `runner lab sim`, and a handle
that starts it as a child process (tests, benchmarks) and waits until it is ready."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from runner.errors import LabError
from runner.lab.netns import wait_for
from runner.lab.sim import fleet as fleet_files
from runner.lab.sim.server import FleetConfig, serve


def memory_mib(pid: int | str = "self") -> tuple[float, float]:
    """(current RSS, peak RSS) of a process in MiB, from /proc."""
    fields: dict[str, float] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024
    return fields.get("VmRSS", 0.0), fields.get("VmHWM", 0.0)


async def run(directory: Path, fleet: FleetConfig,
              on_ready: Callable[[dict[str, Any]], None]) -> None:
    """Serve the fleet until SIGINT or SIGTERM; the state file exists while it serves."""
    started = time.monotonic()
    directory.mkdir(parents=True, exist_ok=True)
    running = fleet_files.read_state(directory)
    if running is not None:
        raise LabError(f"a simulator already serves {directory} (pid {running['pid']}); "
                       f"stop it first (kill {running['pid']})")
    key = fleet_files.host_key(directory)
    try:
        acceptors = await serve(fleet, key)
    except OSError as exc:
        raise LabError(f"cannot listen for the simulated devices: {exc.strerror or exc} "
                       f"(another simulator on the same --address/--port?)") from None
    inventory = fleet_files.write_files(directory, fleet, key)
    rss, _ = memory_mib()
    first, last = fleet.devices[0], fleet.devices[-1]
    state = {"pid": os.getpid(), "devices": len(fleet.devices), "port": first.port,
             "first": first.address, "last": last.address, "inventory": str(inventory),
             "known_hosts": str(directory / fleet_files.KNOWN_HOSTS),
             "start_s": round(time.monotonic() - started, 3), "rss_mib": round(rss, 1),
             "faults": {d.name: d.fault for d in fleet.devices if d.fault}}
    state_file = directory / fleet_files.STATE
    # Written whole, then renamed: whoever waits for the file never reads half of it.
    partial = state_file.with_suffix(".tmp")
    partial.write_text(json.dumps(state, indent=1), encoding="utf-8")
    partial.replace(state_file)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        on_ready(state)
        await stop.wait()
    finally:
        for acceptor in acceptors:
            acceptor.close()
        with contextlib.suppress(FileNotFoundError):
            state_file.unlink()


class SimProcess:
    """`runner lab sim` as a child process; a context manager that always stops it."""

    def __init__(self, directory: Path, devices: int, *, address: str = "127.100.0.1",
                 port: int = 2022, faults: Sequence[str] = (), slow_delay: float = 2.0,
                 password: str | None = None, cpus: str | None = None,
                 extra: Sequence[str] = ()) -> None:
        self.directory = directory
        args = [sys.executable, "-m", "runner", "lab", "sim", "--devices", str(devices),
                "--dir", str(directory), "--address", address, "--port", str(port),
                "--slow-delay", str(slow_delay), *extra]
        for fault in faults:
            args += ["--fault", fault]
        if cpus is not None:
            args = ["taskset", "-c", cpus, *args]
        self.args = args
        self.env = {**os.environ, **({"RUNNER_SIM_PASSWORD": password} if password else {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.state: dict[str, Any] = {}

    def start(self, timeout: float = 60) -> dict[str, Any]:
        with contextlib.suppress(FileNotFoundError):
            (self.directory / fleet_files.STATE).unlink()  # a stale one from a killed run
        self.proc = subprocess.Popen(self.args, env=self.env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        proc = self.proc
        state_file = self.directory / fleet_files.STATE
        try:
            wait_for(lambda: state_file.exists() or proc.poll() is not None, timeout,
                     "the simulator to start")
        except LabError:
            self.stop()  # not ready in time: no simulator is left behind
            raise
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise LabError(f"the simulator exited with {proc.returncode}: {err.strip()}")
        self.state = json.loads(state_file.read_text(encoding="utf-8"))
        return self.state

    @property
    def inventory(self) -> Path:
        return Path(self.state["inventory"])

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def __enter__(self) -> SimProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stop_process(proc: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    """SIGTERM a simulator (it closes its sessions and removes its state file), SIGKILL if
    it has not exited after `grace` seconds."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
