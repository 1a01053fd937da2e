"""Kept forms of large hosts files: the hosts a file held, once loaded and checked, read
again without YAML while the file's text is unchanged (10,000 hosts: ~0.6 s of YAML and
checks, ~0.05 s kept). Keyed by a digest of the text and of the code and libraries that
read it; never written for a file that holds a credential."""

from __future__ import annotations

import functools
import hashlib
import logging
import marshal
import os
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

log = logging.getLogger(__name__)

FORMAT = b"runner kept hosts 1"
KEEP_HOSTS = 1000  # smaller files load in tens of milliseconds: nothing to keep
KEPT_FILES = 8  # kept forms in one directory; the least recently used go
DIGEST = 32  # bytes of sha256 before the payload: a torn or edited file reads as absent


class KeptOptions(NamedTuple):
    """`connection_options.<driver>` of one host, without credentials (it has none)."""

    hostname: str | None
    port: int | None
    platform: str | None
    extras: dict[str, Any] | None


class KeptHost(NamedTuple):
    """One host as the hosts file gave it, with where its entry and platform were written."""

    name: str
    groups: list[str]
    hostname: str | None
    port: int | None
    platform: str | None
    data: dict[Any, Any] | None
    options: dict[str, KeptOptions]
    line: int | None
    field: str
    platform_line: int | None
    platform_field: str | None


@functools.cache
def _readers() -> bytes:
    """What decides how a hosts file reads: the modules that load and check it, and the
    versions of PyYAML and pydantic (a kept form from other code is not used)."""
    import pydantic
    import yaml

    here = Path(__file__).resolve().parent
    digest = hashlib.sha256(f"{yaml.__version__} {pydantic.VERSION}".encode())
    for module in (here / "files.py", here / "loading.py", here / "kept.py",
                   here / "secretref.py", here.parent / "source" / "yamlsrc.py",
                   here.parent / "source" / "validation.py"):
        digest.update(module.read_bytes())
    return digest.digest()


def key(text: str, flat: bool) -> str:
    """The kept form's name for a hosts file of this text (`flat`: containerlab's one file,
    whose hosts' groups need no groups file)."""
    digest = hashlib.sha256(FORMAT + _readers() + (b"flat" if flat else b"directory"))
    digest.update(text.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def plain(value: Any) -> Any:
    """`value` with YAML's line-keeping mappings and lists as plain ones (what marshal
    writes; lines are read only while the file is checked)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def read(directory: Path, name: str) -> list[KeptHost] | None:
    """The kept hosts named `name`, or None (none kept, or not readable as written)."""
    path = directory / name
    try:
        if not _private(directory):
            return None
        blob = path.read_bytes()
        if hashlib.sha256(blob[DIGEST:]).digest() != blob[:DIGEST]:
            return None
        # written by this user into a directory only it may write (_private)
        tag, rows = marshal.loads(blob[DIGEST:])  # noqa: S302
        if tag != FORMAT:
            return None
        hosts = [KeptHost._make((*row[:6], {d: KeptOptions._make(o) for d, o in row[6].items()},
                                  *row[7:])) for row in rows]
        os.utime(path)  # recently used: pruned last
    except (OSError, ValueError, EOFError, TypeError):
        return None
    return hosts


def _private(directory: Path) -> bool:
    """The directory is this user's and no one else may write in it (as ssh asks of
    ~/.ssh): what is read there was written by this user."""
    st = directory.stat()
    return st.st_uid == os.geteuid() and not st.st_mode & 0o022


def write(directory: Path, name: str, hosts: list[KeptHost]) -> bool:
    """Keep `hosts` as `name` (atomically: readers see the old form or the new, whole);
    False when a value cannot be kept (a date in a host's data) or the directory cannot be
    written: the file is then read as YAML each time."""
    try:
        payload = marshal.dumps((FORMAT, [(*h[:6], {d: tuple(o) for d, o in h.options.items()},
                                           *h[7:]) for h in hosts]))
    except ValueError:
        return False
    temporary: Path | None = None
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        # a name of its own (0600): runs of `runner serve` may keep the same file at once
        fd, made = tempfile.mkstemp(prefix=f".{name}.", dir=directory)
        temporary = Path(made)
        with os.fdopen(fd, "wb") as fh:
            fh.write(hashlib.sha256(payload).digest() + payload)
        os.replace(temporary, directory / name)
        _prune(directory)
    except OSError as exc:
        log.debug("inventory: cannot keep the hosts file's loaded form in %s: %s",
                  directory, exc)
        if temporary is not None:
            temporary.unlink(missing_ok=True)
        return False
    return True


def _prune(directory: Path) -> None:
    """Remove the least recently used kept forms past KEPT_FILES, and temporaries an hour
    old."""
    kept, stale = [], time.time() - 3600
    for entry in os.scandir(directory):
        if not entry.is_file():
            continue
        mtime = entry.stat().st_mtime
        if not entry.name.startswith("."):
            kept.append((mtime, entry.path))
        elif mtime < stale:  # a writer's temporary, left by a process that died
            Path(entry.path).unlink(missing_ok=True)
    for _, path in sorted(kept)[:-KEPT_FILES]:
        Path(path).unlink(missing_ok=True)
