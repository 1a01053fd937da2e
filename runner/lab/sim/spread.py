"""A fleet spread over several simulator processes behind one `runner lab sim`: starts the
parts, waits until every one listens, writes the one inventory and state file, stops them
all on SIGINT/SIGTERM, and when one dies stops the rest and exits saying which died."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import LabError
from runner.lab.sim import fleet as fleet_files
from runner.lab.sim import limits
from runner.lab.sim.process import check_free, memory_mib, write_state
from runner.lab.sim.server import FleetConfig

_GRACE_S = 15.0  # a part's time to close its listeners after SIGTERM, before SIGKILL
# A part that ended may have had the same SIGTERM as this process (`kill -- -PGID`): a
# moment for that signal to land here before the part is called dead.
_SETTLE_S = 0.3


@dataclass
class _Part:
    number: int
    of: int
    slots: list[fleet_files.Slot]
    proc: asyncio.subprocess.Process | None = None
    state: dict[str, Any] | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def label(self) -> str:
        return (f"process {self.number} of {self.of} ({self.slots[0].name}.."
                f"{self.slots[-1].name})")

    def death(self, code: int) -> str:
        pid = self.proc.pid if self.proc else "?"
        how = (f"was killed by {signal.Signals(-code).name}" if code < 0
               else f"exited with status {code}")
        if self.state is None:
            return (f"simulator {self.label}, pid {pid}, {len(self.slots)} devices, {how} "
                    f"before it listened (its own message, if any, is above), so the fleet "
                    f"was not started")
        return (f"simulator {self.label}, pid {pid}, {len(self.slots)} devices, {how}: "
                f"its devices no longer answer, so the whole fleet was stopped")


async def run_spread(directory: Path, slots: list[fleet_files.Slot], parts: list[range],
                     fleet: FleetConfig, on_ready: Callable[[dict[str, Any]], None],
                     budget: limits.Budget) -> None:
    """Serve `slots` in one process per range of `parts` until SIGINT or SIGTERM."""
    started = time.monotonic()
    directory.mkdir(parents=True, exist_ok=True)
    check_free(directory)
    key = fleet_files.host_key(directory)  # before the parts start: they all read it
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    members = [_Part(n, len(parts), slots[r.start:r.stop]) for n, r in enumerate(parts, 1)]
    failure: asyncio.Future[str] = loop.create_future()
    stopping = [False]
    state_file: Path | None = None
    watchers: list[asyncio.Task[None]] = []
    try:
        for member in members:
            await _start(member, directory, fleet)
            watchers.append(asyncio.create_task(_watch(member, stop, failure, stopping)))
        everyone = asyncio.ensure_future(asyncio.gather(*(m.ready.wait() for m in members)))
        halted = asyncio.ensure_future(stop.wait())
        waits: list[asyncio.Future[Any]] = [everyone, halted, failure]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        if everyone.done() and not failure.done() and not stop.is_set():
            inventory = fleet_files.write_files(directory, slots, fleet, key)
            state = _state(directory, slots, members, inventory, started, budget)
            state_file = write_state(directory, state)
            on_ready(state)
            await asyncio.wait(waits[1:], return_when=asyncio.FIRST_COMPLETED)
        for waiter in (everyone, halted):
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiter
    finally:
        stopping[0] = True
        await _stop_all(members)
        for watcher in watchers:
            watcher.cancel()
        if state_file is not None:
            with contextlib.suppress(FileNotFoundError):
                state_file.unlink()
    if failure.done():
        raise LabError(failure.result())


async def _start(member: _Part, directory: Path, fleet: FleetConfig) -> None:
    member.proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "runner.lab.sim.part",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert member.proc.stdin is not None
    # The credentials go down the pipe, never on a command line (`ps` shows those).
    config = {"directory": str(directory), "label": member.label,
              "username": fleet.username, "password": fleet.password,
              "enable_secret": fleet.enable_secret, "slow_delay": fleet.slow_delay,
              # A seeded device's config goes with it: the part that serves it starts it so.
              "slots": [[s.index, s.name, s.address, s.port, s.fault, s.config]
                        for s in member.slots]}
    member.proc.stdin.write(json.dumps(config).encode() + b"\n")
    with contextlib.suppress(ConnectionError):  # it died at once: its watcher says so
        await member.proc.stdin.drain()
    # stdin stays open: the part stops when it closes, i.e. when this process is gone.


async def _watch(member: _Part, stop: asyncio.Event, failure: asyncio.Future[str],
                 stopping: list[bool]) -> None:
    """Wait for the part's ready line, then for its end; an end nobody asked for fails the
    fleet."""
    proc = member.proc
    assert proc is not None and proc.stdout is not None
    line = await proc.stdout.readline()
    if line:
        with contextlib.suppress(ValueError):
            member.state = {"number": member.number, **json.loads(line)}
            member.ready.set()
    code = await proc.wait()
    if stopping[0]:
        return
    await asyncio.sleep(_SETTLE_S)
    if not stop.is_set() and not stopping[0] and not failure.done():
        failure.set_result(member.death(code))


async def _stop_all(members: list[_Part]) -> None:
    procs = [m.proc for m in members if m.proc is not None and m.proc.returncode is None]
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()

    async def reap(proc: asyncio.subprocess.Process) -> None:
        try:
            await asyncio.wait_for(proc.wait(), _GRACE_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    await asyncio.gather(*(reap(p) for p in procs))
    for member in members:
        if member.proc is not None and member.proc.stdin is not None:
            member.proc.stdin.close()


def _state(directory: Path, slots: list[fleet_files.Slot], members: list[_Part],
           inventory: Path, started: float, budget: limits.Budget) -> dict[str, Any]:
    parts = [m.state for m in members if m.state is not None]
    rss, _ = memory_mib()
    return {"pid": os.getpid(), "devices": len(slots), "port": slots[0].port,
            "first": slots[0].address, "last": slots[-1].address,
            "inventory": str(inventory),
            "known_hosts": str(directory / fleet_files.KNOWN_HOSTS),
            "start_s": round(time.monotonic() - started, 3),
            "rss_mib": round(rss + sum(p["rss_mib"] for p in parts), 1),
            "faults": {s.name: s.fault for s in slots if s.fault},
            "open_files": budget.limit, "processes": parts}
