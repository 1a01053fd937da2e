"""asyncssh's log lines are built only when they are logged (runner.drivers.sshlog), and
when they are logged they are asyncssh's own: real sessions against the simulator."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import asyncssh
import pytest
from asyncssh import packet as ssh_packet

from runner.drivers.base import Timeouts
from runner.drivers.sessions import open_session
from runner.inventory.loading import load_inventory
from tests.support.fleet import Fleet

_PACKET = re.compile(r"(Sent|Received) (.+ \(\d+\)|packet type \d+), \d+ bytes?")


def _show_version(fleet: Fleet) -> str:
    inventory = load_inventory(fleet.inventory)
    params = inventory.connect_params(fleet.healthy(1)[0], "asyncssh")

    async def session() -> str:
        s = await open_session("asyncssh", params, Timeouts(connect=20, command=20), None)
        try:
            return await s.command("show version", 20)
        finally:
            await s.close()

    return asyncio.run(session())


def _asyncssh_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("asyncssh")]


def test_packet_lines_are_built_only_at_debug_level_3(fleet: Fleet,
                                                      caplog: pytest.LogCaptureFixture,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[int] = []  # each packet line's byte count, as asyncssh words it
    plural = ssh_packet.plural

    def counting(n: int, word: str) -> str:
        built.append(n)
        return str(plural(n, word))

    monkeypatch.setattr(ssh_packet, "plural", counting)
    caplog.set_level(logging.WARNING, logger="asyncssh")
    assert "Cisco IOS" in _show_version(fleet)
    assert built == [] and _asyncssh_lines(caplog) == []

    asyncssh.set_debug_level(3)
    try:
        caplog.set_level(logging.DEBUG, logger="asyncssh")
        assert "Cisco IOS" in _show_version(fleet)
    finally:
        asyncssh.set_debug_level(1)
    # asyncssh puts its context first: `[conn=3, pktid=0] Sent MSG_KEXINIT (20), ...`
    lines = [line.split("] ", 1)[-1] for line in _asyncssh_lines(caplog)]
    packets = [line for line in lines if _PACKET.match(line)]
    assert len(packets) == len(built) > 20  # kex, auth, channel, data: every packet
    # with asyncssh's hex dump of the payload
    assert all("\n  00000000:" in line for line in packets if " 0 bytes" not in line)
    assert any(line.startswith("Sent MSG_KEXINIT (20), ") for line in packets)
    # info lines keep asyncssh's own argument text: (host, port) as `host, port N`
    assert any(line.startswith("Connected to SSH server at ") and ", port " in line
               for line in lines)


class _Arg:
    def __init__(self, seen: list[str]) -> None:
        self.seen = seen

    def __str__(self) -> str:
        self.seen.append("converted")
        return "the-arg"


def test_log_arguments_are_converted_only_for_a_logged_level(
        caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str] = []
    logger: Any = asyncssh.logging.logger
    caplog.set_level(logging.WARNING, logger="asyncssh")
    logger.info("value %s", [_Arg(seen), b"raw\x01"])
    assert seen == [] and _asyncssh_lines(caplog) == []
    caplog.set_level(logging.INFO, logger="asyncssh")
    logger.info("value %s", [_Arg(seen), b"raw\x01"])
    # asyncssh's own conversion: list items joined by commas, unprintable bytes escaped
    assert seen == ["converted"] and _asyncssh_lines(caplog) == ["value the-arg,raw\\x01"]
