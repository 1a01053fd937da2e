"""Files a topology names: regular files under its own directory, at most 1 MiB, read once."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from runner.errors import TopologyError

MAX_BYTES = 1 << 20
ALLOW_FLAG = "--allow-outside-files"
_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"),
          (stat.S_ISSOCK, "a socket"))


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def resolve(text: str, base: Path) -> Path:
    """Where `text` (relative to the topology's directory `base`) really is: symlinks
    followed, so a link inside the directory to a file outside it counts as outside."""
    return Path(os.path.realpath(base / text))


def check_inside(what: str, text: str, real: Path, base: Path, allow_outside: bool) -> None:
    """Refuse a path outside the topology's directory unless the user allowed it."""
    if allow_outside or real.is_relative_to(os.path.realpath(base)):
        return
    via = "" if str(real) == text else f" (resolves to {real})"
    raise TopologyError(
        f"{what} {text!r}{via} is outside the topology's directory {base}; a topology reads "
        f"only files under its own directory (`runner lab up {ALLOW_FLAG}` allows others)")


def read_text(what: str, text: str, base: Path, allow_outside: bool) -> tuple[Path, str]:
    """The file `text` names, as (real path, UTF-8 text): only a regular file of at most
    MAX_BYTES, and only under `base` unless allow_outside. TopologyError (without a
    location) otherwise."""
    real = resolve(text, base)
    looked = f"{what} {text!r}"
    try:
        mode = os.stat(real).st_mode
    except FileNotFoundError:
        raise TopologyError(f"{looked} does not exist (looked for {base / text})") from None
    except OSError as exc:
        raise TopologyError(f"{looked} cannot be read: {exc.strerror}") from None
    # Before opening: opening a FIFO blocks, and opening some devices acts on them.
    if not stat.S_ISREG(mode):
        raise TopologyError(f"{looked} is {_kind(mode)} ({real}); expected a regular file")
    check_inside(what, text, real, base, allow_outside)
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise TopologyError(f"{looked} cannot be read: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as fh:
        opened = os.fstat(fh.fileno())
        # The directory may be writable by others: check what was opened, not the name.
        if not stat.S_ISREG(opened.st_mode):
            raise TopologyError(f"{looked} is {_kind(opened.st_mode)}; expected a regular file")
        check_inside(what, text, Path(os.readlink(f"/proc/self/fd/{fh.fileno()}")), base,
                     allow_outside)
        data = fh.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise TopologyError(f"{looked} is larger than {MAX_BYTES >> 20} MiB; a startup "
                            "config or FRR file is far smaller (is it the right file?)")
    try:
        return real, data.decode("utf-8")
    except UnicodeDecodeError:
        raise TopologyError(f"{looked} is not UTF-8 text ({real})") from None
