"""asyncssh's logging made free when it would print nothing: its text is built only for a
level that is logged.

asyncssh formats every packet's log line (name, byte count) before asking whether
packets are logged (debug level 3), and converts every log call's arguments to text
before the logger's level is asked: ~55 packet lines and ~25 info/debug calls a session,
3-4 % of a client's CPU per device and ~10 % of the simulator's, for lines nobody sees.
install() puts the level test first; what is logged, when it is, is the same text
(tests/unit/test_sshlog.py compares it with asyncssh's own functions).
"""

from __future__ import annotations

import logging
from typing import Any

from asyncssh import logging as ssh_logging
from asyncssh import packet as ssh_packet

_INSTALLED = "_runner_level_first"


def install() -> None:
    """Level tests first in asyncssh's SSHLogger.log and packet logging (once per
    process; a later asyncssh without these functions is left as it is)."""
    packets = getattr(ssh_packet, "SSHPacketLogger", None)
    logger = getattr(ssh_logging, "SSHLogger", None)
    if packets is None or logger is None or getattr(logger, _INSTALLED, False):
        return
    log_packet = getattr(packets, "_log_packet", None)
    log = getattr(logger, "log", None)
    if log_packet is None or log is None:
        return

    def _log_packet(self: Any, msg: str, pkttype: int, pktid: int | None, packet: Any,
                    note: str) -> None:
        target = self.logger
        # SSHLogger.packet logs only at debug level 3, and then at DEBUG
        if target._debug_level >= 3 and target.isEnabledFor(logging.DEBUG):
            log_packet(self, msg, pkttype, pktid, packet, note)

    def _log(self: Any, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if self.isEnabledFor(level):  # LoggerAdapter.log asks the same, after the text
            log(self, level, msg, *args, **kwargs)

    setattr(packets, "_log_packet", _log_packet)  # noqa: B010 (mypy: no method assign)
    setattr(logger, "log", _log)  # noqa: B010
    setattr(logger, _INSTALLED, True)
