"""One user of a twin at a time: a rehearsal (its run on the twin and the reset after it),
`twin sync` and `twin down` hold an exclusive flock on the twin's lock file, which says who
holds it. The kernel drops the lock when its holder dies, so a killed run never leaves a
twin locked."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from runner.errors import InputError
from runner.records import now_iso

POLL_S = 0.5  # how often a waiting rehearsal looks at its cancel event


def lock_path(home: Path, name: str) -> Path:
    # beside the twin's directory, not in it: `twin down` removes the directory, and a
    # lock on a removed file would exclude nobody
    return home / "twins" / f".{name}.lock"


def _open(home: Path, name: str) -> IO[str]:
    path = lock_path(home, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("a+", encoding="utf-8")


def _holder(fh: IO[str]) -> str:
    fh.seek(0)
    try:
        who = json.loads(fh.read() or "{}")
    except ValueError:
        who = {}
    if not isinstance(who, dict) or not who:
        return "another runner process"
    return f"{who.get('what', 'another runner process')} (pid {who.get('pid')}, since " \
           f"{who.get('since')})"


def _claim(fh: IO[str], what: str) -> None:
    fh.seek(0)
    fh.truncate()
    fh.write(json.dumps({"what": what, "pid": os.getpid(), "since": now_iso()}))
    fh.flush()


@contextlib.contextmanager
def _holding(fh: IO[str], what: str) -> Iterator[None]:
    """The lock is ours (taken on `fh`): say for what while it is held, then let it go."""
    _claim(fh, what)
    try:
        yield
    finally:
        fh.seek(0)
        fh.truncate()
        fcntl.flock(fh, fcntl.LOCK_UN)


def _try(fh: IO[str]) -> bool:
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextlib.contextmanager
def waiting_for(home: Path, name: str, what: str, cancel: threading.Event | None,
                on_wait: Callable[[str], None]) -> Iterator[bool]:
    """Hold twin `name`, waiting while someone else does (`on_wait` told once, with who);
    yields False, holding nothing, when `cancel` is set before the twin is free."""
    fh = _open(home, name)
    try:
        if not _try(fh):
            on_wait(f"twin {name} is in use by {_holder(fh)}: waiting for it")
            while not _try(fh):
                if cancel is None:
                    time.sleep(POLL_S)
                elif cancel.wait(POLL_S):
                    yield False
                    return
        with _holding(fh, what):
            yield True
    finally:
        fh.close()


@contextlib.contextmanager
def held(home: Path, name: str, what: str) -> Iterator[None]:
    """Hold twin `name` for `what` (`twin sync`, `twin down`) or refuse at once, naming who
    holds it: an InputError, nothing touched."""
    fh = _open(home, name)
    try:
        if not _try(fh):
            raise InputError(f"twin {name} is in use by {_holder(fh)}: nothing was done; "
                             "try again when it has finished", field="NAME")
        with _holding(fh, what):
            yield
    finally:
        fh.close()
