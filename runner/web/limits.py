"""A bound on request bodies, outermost (raw ASGI, before sessions, auth or FastAPI read
anything): a declared Content-Length past it is answered 413 without reading a byte of the
body, and a body streamed without one (chunked) is counted as it arrives and cut off
there. runner's own requests are a few hundred bytes of JSON or form fields."""

from __future__ import annotations

import contextlib
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # `runner web --help` reads DEFAULT_MAX_BODY without loading Starlette
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_MAX_BODY = 1024 * 1024


class _TooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: at most `max_bytes` of request body, else 413 (400 for a
    Content-Length that is not a number)."""

    def __init__(self, app: ASGIApp, max_bytes: int = DEFAULT_MAX_BODY) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = [v for k, v in scope["headers"] if k == b"content-length"]
        if declared:
            try:
                length = int(declared[0])
                if length < 0 or len(set(declared)) > 1:
                    raise ValueError(length)
            except ValueError:
                await _answer(send, 400, "Content-Length is not one number of bytes")
                return
            if length > self.max_bytes:
                await _answer(send, 413, self._message(length))
                return
        started = answered = False
        seen = 0

        async def counted() -> Message:
            nonlocal seen, answered
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # Answered here and now: whatever the app makes of the cut-off body
                    # (FastAPI calls it unparsable, 400) is not sent.
                    if not started and not answered:
                        answered = True
                        await _answer(send, 413, self._message(None))
                    raise _TooLarge
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            if answered:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        with contextlib.suppress(_TooLarge):  # answered already
            await self.app(scope, counted, watched)

    def _message(self, length: int | None) -> str:
        size = f" ({length:,} bytes)" if length is not None else ""
        return (f"request body{size} larger than the {self.max_bytes:,} bytes this server "
                "accepts (runner web --max-body)")


async def _answer(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message, "kind": "PayloadTooLarge" if status == 413
                       else "BadRequest"}).encode()
    headers: list[Any] = [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"), (b"cache-control", b"no-store"),
        (b"x-content-type-options", b"nosniff")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
