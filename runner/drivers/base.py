"""What every driver offers the steps: commands, config lines, close; errors already ours."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Timeouts:
    connect: float
    command: float


@dataclass(frozen=True)
class ConnectParams:
    """Everything needed to open one session; the password never shows in repr or logs."""

    host: str
    hostname: str
    port: int
    username: str | None
    password: str | None = field(repr=False)
    platform: str  # runner platform (platforms.yaml)
    driver_platform: str  # netmiko device_type or scrapli definition name
    extras: dict[str, Any] = field(default_factory=dict, repr=False)


class Session(Protocol):
    driver: str

    async def command(self, command: str, timeout: float) -> str:
        """Run one exec-mode command; return its output without echo or prompt."""

    async def configure(self, lines: list[str], timeout: float) -> str:
        """Enter config mode, send lines in order, leave config mode; return the transcript."""

    async def close(self) -> None: ...


def classify_connect_error(text: str) -> str:
    """Map a connection failure message to an error kind: auth, hostkey or connect."""
    lowered = text.lower()
    if any(s in lowered for s in ("permission denied", "authentication fail",
                                  "auth fail", "authentication to device failed")):
        return "auth"
    if any(s in lowered for s in ("host key", "known_hosts", "known hosts", "hostkey")):
        return "hostkey"
    return "connect"
