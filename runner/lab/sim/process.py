"""Running the simulator: the foreground serve loop behind `runner lab sim`, and a handle
that starts it as a child process (tests, benchmarks) and waits until it is ready."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import math
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
from runner.lab.sim import limits
from runner.lab.sim.server import FleetConfig, serve

_REPEAT_S = 10.0  # the out-of-descriptors message, at most this often


def memory_mib(pid: int | str = "self") -> tuple[float, float]:
    """(current RSS, peak RSS) of a process in MiB, from /proc."""
    fields: dict[str, float] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024
    return fields.get("VmRSS", 0.0), fields.get("VmHWM", 0.0)


def write_state(directory: Path, state: dict[str, Any]) -> Path:
    """The state file, written whole then renamed: whoever waits for it never reads half."""
    state_file = directory / fleet_files.STATE
    partial = state_file.with_suffix(".tmp")
    partial.write_text(json.dumps(state, indent=1), encoding="utf-8")
    partial.replace(state_file)
    return state_file


def check_free(directory: Path) -> None:
    """One simulator per directory."""
    running = fleet_files.read_state(directory)
    if running is not None:
        raise LabError(f"a simulator already serves {directory} (pid {running['pid']}); "
                       f"stop it first (kill {running['pid']})")


def part_state(fleet: FleetConfig, started: float) -> dict[str, Any]:
    """What one serving process reports: its pid, devices and memory."""
    rss, _ = memory_mib()
    return {"pid": os.getpid(), "devices": len(fleet.devices),
            "first": fleet.devices[0].name, "last": fleet.devices[-1].name,
            "start_s": round(time.monotonic() - started, 3), "rss_mib": round(rss, 1)}


def watch_descriptors(loop: asyncio.AbstractEventLoop, fleet: FleetConfig,
                      label: str) -> None:
    """Say so when a login cannot be accepted for want of descriptors (asyncio retries the
    accept a second later, and would only log a bare 'out of system resource')."""
    last = [-math.inf]

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE):
            if time.monotonic() - last[0] >= _REPEAT_S:
                last[0] = time.monotonic()
                print(limits.accept_error(exc, label, len(fleet.devices), fleet.connections),
                      file=sys.stderr, flush=True)
            return
        loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


async def run(directory: Path, fleet: FleetConfig,
              on_ready: Callable[[dict[str, Any]], None], budget: limits.Budget) -> None:
    """Serve the fleet in this one process until SIGINT or SIGTERM; the state file exists
    while it serves."""
    started = time.monotonic()
    directory.mkdir(parents=True, exist_ok=True)
    check_free(directory)
    key = fleet_files.host_key(directory)
    loop = asyncio.get_running_loop()
    watch_descriptors(loop, fleet, "the simulator")
    acceptors = await serve(fleet, key)
    inventory = fleet_files.write_files(directory, fleet.devices, fleet, key)
    part = part_state(fleet, started)
    first, last = fleet.devices[0], fleet.devices[-1]
    state = {"pid": os.getpid(), "devices": len(fleet.devices), "port": first.port,
             "first": first.address, "last": last.address, "inventory": str(inventory),
             "known_hosts": str(directory / fleet_files.KNOWN_HOSTS),
             "start_s": part["start_s"], "rss_mib": part["rss_mib"],
             "faults": {d.name: d.fault for d in fleet.devices if d.fault},
             "open_files": budget.limit, "processes": [part]}
    state_file = write_state(directory, state)
    stop = asyncio.Event()
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
    """`runner lab sim` as a child process; a context manager that always stops it. Its
    stderr goes to DIR.stderr (read it with `errors()`): a pipe nobody drains could fill and
    stall it. `open_files` lowers its RLIMIT_NOFILE (both, or (soft, hard)), as on a
    machine with that limit."""

    def __init__(self, directory: Path, devices: int, *, address: str = "127.100.0.1",
                 port: int = 2022, faults: Sequence[str] = (), slow_delay: float = 2.0,
                 password: str | None = None, cpus: str | None = None,
                 extra: Sequence[str] = (),
                 open_files: int | tuple[int, int] | None = None,
                 new_session: bool = False) -> None:
        self.directory = directory
        self.stderr_path = directory.with_name(directory.name + ".stderr")
        self.new_session = new_session
        args = [sys.executable, "-m", "runner", "lab", "sim", "--devices", str(devices),
                "--dir", str(directory), "--address", address, "--port", str(port),
                "--slow-delay", str(slow_delay), *extra]
        for fault in faults:
            args += ["--fault", fault]
        if cpus is not None:
            args = ["taskset", "-c", cpus, *args]
        if open_files is not None:
            soft, hard = open_files if isinstance(open_files, tuple) else (open_files,) * 2
            args = ["prlimit", f"--nofile={soft}:{hard}", "--", *args]
        self.args = args
        self.env = {**os.environ, **({"RUNNER_SIM_PASSWORD": password} if password else {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.state: dict[str, Any] = {}

    def start(self, timeout: float = 60) -> dict[str, Any]:
        with contextlib.suppress(FileNotFoundError):
            (self.directory / fleet_files.STATE).unlink()  # a stale one from a killed run
        self.directory.parent.mkdir(parents=True, exist_ok=True)
        with self.stderr_path.open("wb") as stderr:
            self.proc = subprocess.Popen(self.args, env=self.env, stdout=subprocess.DEVNULL,
                                         stderr=stderr, start_new_session=self.new_session)
        proc = self.proc
        state_file = self.directory / fleet_files.STATE
        try:
            wait_for(lambda: state_file.exists() or proc.poll() is not None, timeout,
                     "the simulator to start")
        except LabError:
            self.stop()  # not ready in time: no simulator is left behind
            raise
        if proc.poll() is not None:
            raise LabError(f"the simulator exited with {proc.returncode}: "
                           f"{self.errors().strip()}")
        self.state = json.loads(state_file.read_text(encoding="utf-8"))
        return self.state

    def errors(self) -> str:
        """What the simulator wrote to stderr so far."""
        try:
            return self.stderr_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

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
