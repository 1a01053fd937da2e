"""Whether the process that controls a run is still there, and what follows when it is not.

A process is known by its pid and its start time (clock ticks after boot, from /proc), so
a pid the kernel gave to another process does not pass for it. From that:

- a run's owner (`host:pid:start`, stored with the run): a run left `running` whose owner
  is gone (on this host by pid and start, elsewhere by a heartbeat older than STALE_S) is
  finished as interrupted by the next runner that opens the store (reap), every device
  without a record recorded;
- an engine process's tie to the run's process, so a run whose `runner` was killed
  (SIGKILL, the OOM killer) contacts no device after that. Three ties, each enough where
  it applies: the kernel's parent-death signal (prctl PR_SET_PDEATHSIG, SIGKILL), which
  fires when the engine's parent exits, the run's process with the fork start method; a
  lifeline pipe whose only writer the run's process holds, read by a thread of the
  engine: its end of file comes the moment that process is gone, whatever started the
  engine (from `runner serve` and `runner web` engines start from multiprocessing's
  forkserver, which outlives the run's process as long as its children live); and a look
  at the controller in /proc before each device and each config push."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
import socket
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from runner.errors import Interrupted
from runner.execution.tally import Tally
from runner.records import DeviceResult, RunResult, now_iso

if TYPE_CHECKING:  # multiprocessing loads with engine processes, not with every run
    from multiprocessing.connection import Connection

log = logging.getLogger(__name__)
STALE_S = 600.0  # a run on another machine whose heartbeat is this old is taken for dead
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
GONE_EXIT = 70  # an engine process that found its controller gone exits with this
ORPHANED_RUN = "its runner process ended without finishing it"
ORPHANED_DEVICE = ("the runner process running this run ended without recording this "
                   "device (killed?); its configuration may be partly changed")


def _stat(pid: int | str) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state first), or None."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def start_ticks(pid: int | str) -> str | None:
    """When the process started (clock ticks after boot): a reused pid has another."""
    fields = _stat(pid)
    return fields[19] if fields is not None and len(fields) > 19 else None


@dataclass(frozen=True)
class Controller:
    """A process on this host by its pid and start time (the one that controls a run)."""

    pid: int
    started: str | None

    @classmethod
    def this_process(cls) -> Controller:
        return cls(os.getpid(), start_ticks("self"))

    def alive(self) -> bool:
        """Running (not a zombie waiting for its parent to reap it), and the same process
        that started the run."""
        fields = _stat(self.pid)
        return fields is not None and len(fields) > 19 and fields[0] not in ("Z", "X") \
            and fields[19] == self.started


# -- a run's owner, stored with it ----------------------------------------------------------

def process_identity() -> str:
    """This process as a run's owner: `host:pid:start`."""
    me = Controller.this_process()
    return f"{socket.gethostname()}:{me.pid}:{me.started}"


def owner_alive(owner: str | None, heartbeat: str | None) -> bool:
    """Whether the process that owns a running run still runs: on this host, by its pid
    and start time; elsewhere (or unknown), by a heartbeat newer than STALE_S."""
    host, _, rest = (owner or "").partition(":")
    pid, _, started = rest.partition(":")
    if not owner or host != socket.gethostname():
        return heartbeat is not None and _age(heartbeat) < STALE_S
    return pid.isdigit() and Controller(int(pid), started).alive()


def _age(moment: str) -> float:
    try:
        return (datetime.now(UTC) - datetime.fromisoformat(moment)).total_seconds()
    except ValueError:
        return float("inf")


class Running(NamedTuple):
    """A run its store has as running, with what says whether its owner lives."""

    run_id: str
    owner: str | None
    heartbeat: str | None
    hosts: list[str] | None


class RunTable(Protocol):
    """What reap needs of the results store (runner.store.results.ResultsStore)."""

    def running(self) -> list[Running]: ...

    def get_run(self, run_id: str) -> tuple[dict[str, Any], RunResult]: ...

    def record_devices(self, run_id: str, batch: list[DeviceResult],
                       positions: dict[str, int] | None = None) -> None: ...

    def interrupt(self, run_id: str | None, finished: str, *,
                  summary: dict[str, Any] | None = None, error: str | None = None) -> bool: ...


def reap(runs: RunTable) -> list[str]:
    """Runs left running by a process that is gone: finished as interrupted, each device
    without a record given one (by the run's Tally, as any engine's lost devices). Their
    ids."""
    reaped = []
    for row in runs.running():
        if owner_alive(row.owner, row.heartbeat):
            continue
        _, run = runs.get_run(row.run_id)
        hosts = row.hosts or []
        tally = Tally(hosts)
        for record in run.devices:
            tally.finished(record)
        lost = tally.missing(hosts)
        tally.lost(lost, Interrupted(ORPHANED_DEVICE), progress_known=False)
        if lost:
            runs.record_devices(run.run_id, [tally.records[h] for h in lost],
                                {h: i for i, h in enumerate(hosts)})
        run.devices += [tally.records[h] for h in lost]
        if runs.interrupt(run.run_id, now_iso(), summary=run.summary, error=ORPHANED_RUN):
            reaped.append(run.run_id)
    return reaped


# -- an engine process's lifeline ---------------------------------------------------------

@cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name or "libc.so.6", use_errno=True)
    except OSError:
        return None


def die_with_parent(sig: int = signal.SIGKILL) -> bool:
    """Ask the kernel to send `sig` to this process when its parent exits (Linux
    prctl(PR_SET_PDEATHSIG)); False where that is not available."""
    libc = _libc()
    if libc is None:
        return False
    if libc.prctl(PR_SET_PDEATHSIG, ctypes.c_ulong(sig), 0, 0, 0) != 0:
        log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
        return False
    return True


_BOUND: list[Controller] = []  # this engine process's controller, once bound


def bind(controller: Controller, pipe: Connection | None = None) -> None:
    """Tie this engine process to `controller`: it dies with its parent, at the end of
    file of `pipe` (the read end of a pipe only the controller writes to), and check()
    ends it when the controller is gone. Checked at once: it may be gone already."""
    _BOUND[:] = [controller]
    die_with_parent()
    check()
    if pipe is not None:
        threading.Thread(target=_watch, args=(pipe, controller), name="runner-lifeline",
                         daemon=True).start()


def _watch(pipe: Connection, controller: Controller) -> None:
    """Block on the lifeline: nothing is ever written to it, so a read returns only when
    the controller's end closed (it exited or was killed), or it says the run is over."""
    with contextlib.suppress(EOFError, OSError):
        pipe.recv_bytes()
    log.error("the process controlling this run (pid %d) is gone: engine process %d stops "
              "at once", controller.pid, os.getpid())
    os._exit(GONE_EXIT)


def check() -> None:
    """Called before each device and each config push: when the controlling process is
    gone, this process exits at once, without another word to any device. (In the run's
    own process, and Celery's, nothing is bound: there is nothing to look at.)"""
    for controller in _BOUND:
        if not controller.alive():
            log.error("the process controlling this run (pid %d) is gone: engine process "
                      "%d stops without contacting another device", controller.pid,
                      os.getpid())
            os._exit(GONE_EXIT)
