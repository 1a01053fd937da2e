"""Tests read only what the repository carries: a file beside the clone (../shared on a
developer's machine) is missing from a user's clone. An audit hook records every open of
such a file by the test process; the root conftest fails the test that did it."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from tests.support.base import ROOT

_BESIDE = str(ROOT.parent) + os.sep
_INSIDE = (str(ROOT) + os.sep, os.path.realpath(tempfile.gettempdir()) + os.sep,
           str(Path.home()) + os.sep)
OUTSIDE_READS: list[str] = []
_installed: list[bool] = []


def _audit(event: str, args: tuple[object, ...]) -> None:
    if event != "open" or not isinstance(args[0], str | bytes | os.PathLike):
        return
    path = os.path.abspath(os.fsdecode(args[0]))
    if os.sep != _BESIDE and path.startswith(_BESIDE) and not path.startswith(_INSIDE):
        OUTSIDE_READS.append(path)


def watch_reads() -> None:
    """Install the audit hook (once per process: hooks cannot be removed)."""
    if not _installed:
        sys.addaudithook(_audit)
        _installed.append(True)
