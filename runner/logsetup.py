"""How every runner process logs: the level -v asks for, the SSH libraries kept quiet, and
Python warnings routed through logging so a library's deprecation notice (cryptography's
DSA warning through asyncssh, say) never lands above a progress bar: shown with -vv only."""

from __future__ import annotations

import logging
import os
import re
import sys
import warnings
from typing import TextIO

# The SSH libraries log what they send and receive at INFO and DEBUG (enable secrets,
# whole configs): their warnings only, whatever -v asks for.
SSH_LIBRARIES = ("netmiko", "paramiko", "scrapli", "asyncssh")
FORMAT = "%(levelname)s %(name)s: %(message)s"

log = logging.getLogger("runner.warnings")
# Control characters a terminal would obey: C0 but tab and newline, DEL, C1. Device output,
# exercise files and topologies are printed through terminal_safe(), never raw: an escape
# sequence in a banner must not retitle, clear or rewrite the operator's terminal.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def terminal_safe(text: str) -> str:
    r"""`text` with each control character shown as its escape (`\x1b`); CRLF line ends
    become newlines (a lone CR, which would overwrite the line, is escaped)."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text.replace("\r\n", "\n"))


class SafeFormatter(logging.Formatter):
    """Log lines as the terminal may show them (see terminal_safe)."""

    def format(self, record: logging.LogRecord) -> str:
        return terminal_safe(super().format(record))


def _handler(stream: TextIO) -> logging.Handler:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(SafeFormatter(FORMAT))
    return handler


_RUNNER_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def level_for(verbose: int) -> int:
    """-v: INFO, -vv (or more): DEBUG, else WARNING."""
    return logging.WARNING - 10 * min(verbose, 2)


def configure(verbose: int, stream: TextIO | None = None) -> None:
    """The logging of a `runner` command (its engine processes inherit it or call
    `route_warnings` with the same level)."""
    level = level_for(verbose)
    logging.basicConfig(level=level, handlers=[_handler(stream or sys.stderr)])
    for library in SSH_LIBRARIES:
        logging.getLogger(library).setLevel(logging.WARNING)
    # Alembic says "Context impl ..." at every start; runner's migrations log what they do.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    route_warnings()


def is_deprecation(category: type[Warning]) -> bool:
    """Any deprecation notice, whatever its library calls it (DeprecationWarning,
    PendingDeprecationWarning, CryptographyDeprecationWarning, SADeprecationWarning...)."""
    return any("Deprecat" in klass.__name__ for klass in category.__mro__)


def _show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
          file: TextIO | None = None, line: str | None = None) -> None:
    text = f"{category.__name__}: {message} ({filename}:{lineno})"
    if is_deprecation(category) and not os.path.abspath(filename).startswith(_RUNNER_DIR):
        log.debug("%s", text)  # a library's business, shown with -vv
    else:
        log.warning("%s", text)


def route_warnings() -> None:
    """Every warning becomes a log line: deprecations from libraries at DEBUG, others at
    WARNING. Deprecations are let through the filters so -vv can show them."""
    warnings.showwarning = _show
    warnings.filterwarnings("default", category=DeprecationWarning)
    warnings.filterwarnings("default", category=PendingDeprecationWarning)


def inherit(level: int) -> None:
    """A process started from scratch (a forkserver engine) logs as its parent does; a
    forked one already does, and this changes nothing there."""
    logging.basicConfig(level=level, handlers=[_handler(sys.stderr)])
    route_warnings()
