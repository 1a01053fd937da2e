"""An engine process's tie to the process that controls its run, so a run whose `runner`
was killed (SIGKILL, the OOM killer) contacts no device after that. Three ties, each
enough where it applies:

- the kernel's parent-death signal (prctl PR_SET_PDEATHSIG, SIGKILL): fires when the
  engine's parent exits, which is the run's process with the fork start method;
- a lifeline pipe whose only writer the run's process holds, read by a thread of the
  engine: its end of file comes the moment that process is gone, whatever started the
  engine (from `runner serve` and `runner web` engines start from multiprocessing's
  forkserver, which outlives the run's process as long as its children live);
- a look at the controller's pid and start time in /proc before each device and each
  config push (a pid reused by another process does not pass for it)."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
import threading
from dataclasses import dataclass
from functools import cache
from multiprocessing.connection import Connection

log = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
GONE_EXIT = 70  # an engine process that found its controller gone exits with this


@dataclass(frozen=True)
class Controller:
    """The process that controls a run: its pid and its start time (clock ticks)."""

    pid: int
    started: str | None

    @classmethod
    def this_process(cls) -> Controller:
        return cls(os.getpid(), _start_ticks(os.getpid()))

    def alive(self) -> bool:
        """Running (not a zombie waiting for its parent to reap it), and the same process
        that started the run."""
        try:
            with open(f"/proc/{self.pid}/stat", encoding="ascii") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return False
        return fields[0] not in ("Z", "X") and fields[19] == self.started


def _start_ticks(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


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
