"""`runner serve --listen HOST:PORT`: `POST /hooks/JOB` starts a job whose `trigger.webhook`
names a secret, when the request is signed with it: GitHub's `X-Hub-Signature-256:
sha256=<hex HMAC-SHA256 of the body>`, Gitea's or Forgejo's `X-Gitea-Signature` (the hex
HMAC), or Standard Webhooks' `webhook-id` / `webhook-timestamp` / `webhook-signature: v1,
<base64>` (GitLab's signing token; the timestamp must be within 5 minutes). Compared in
constant time; bodies bounded; a delivery id seen before starts nothing (a redelivery or a
replay). Errors are JSON with a 4xx status."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
import socket
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from runner.errors import AccessDenied, InputError, NotFound, SecretUnavailable
from runner.job.events import MAX_VAR_CHARS, WebhookSpec

log = logging.getLogger("runner.serve")
MAX_BODY = 1024 * 1024  # bytes of a webhook's body, at most (GitHub caps theirs at 25 MB)
TOLERANCE_S = 300  # Standard Webhooks: a timestamp further from now is refused
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DELIVERY = re.compile(r"^[A-Za-z0-9_.:@=+/-]{1,150}$")


@dataclass(frozen=True)
class Verified:
    """A request whose signature holds: who signed it how, its delivery id and event."""

    scheme: str  # github | gitea | standard-webhooks
    delivery: str | None
    event: str | None


def sign_github(secret: str, body: bytes) -> str:
    """The X-Hub-Signature-256 value a sender computes (for tests and senders' docs)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _key(secret: str) -> bytes:
    """Standard Webhooks' key: a `whsec_` secret is base64 of the key's bytes."""
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except (binascii.Error, ValueError):
            pass
    return secret.encode()


def sign_standard(secret: str, delivery: str, timestamp: int, body: bytes) -> str:
    signed = f"{delivery}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(_key(secret), signed, hashlib.sha256)
                                    .digest()).decode()


def verify(headers: Mapping[str, str], body: bytes, secret: str, now: float) -> Verified:
    """The request's signature checked against `secret` (headers by lower-case name);
    AccessDenied (401) saying what is wrong, never what was expected."""
    github = headers.get("x-hub-signature-256")
    gitea = headers.get("x-gitea-signature") or headers.get("x-forgejo-signature")
    standard = headers.get("webhook-signature")
    if github is not None:
        if not github.startswith("sha256="):
            raise AccessDenied("X-Hub-Signature-256 is not sha256=<hex digest>")
        if not hmac.compare_digest(github.encode(), sign_github(secret, body).encode()):
            raise AccessDenied("X-Hub-Signature-256 does not match the body and the "
                               "hook's secret")
        return Verified("github", headers.get("x-github-delivery"),
                        headers.get("x-github-event"))
    if gitea is not None:
        digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(gitea.strip().encode(), digest.encode()):
            raise AccessDenied("X-Gitea-Signature does not match the body and the hook's "
                               "secret")
        return Verified("gitea", headers.get("x-gitea-delivery")
                        or headers.get("x-forgejo-delivery"),
                        headers.get("x-gitea-event") or headers.get("x-forgejo-event"))
    if standard is not None:
        delivery = headers.get("webhook-id", "")
        stamp = headers.get("webhook-timestamp", "")
        if not delivery or not stamp.isdigit():
            raise AccessDenied("webhook-signature needs webhook-id and a numeric "
                               "webhook-timestamp")
        if abs(now - int(stamp)) > TOLERANCE_S:
            raise AccessDenied(f"webhook-timestamp is more than {TOLERANCE_S}s from this "
                               "server's time (a replay, or a clock off)")
        expected = sign_standard(secret, delivery, int(stamp), body).encode()
        if not any(hmac.compare_digest(part.encode(), expected)
                   for part in standard.split() if part.startswith("v1,")):
            raise AccessDenied("webhook-signature does not match the body and the hook's "
                               "secret")
        return Verified("standard-webhooks", delivery, headers.get("x-gitlab-event"))
    raise AccessDenied("the request is not signed: expected X-Hub-Signature-256 (GitHub), "
                       "X-Gitea-Signature, or webhook-signature (Standard Webhooks, GitLab)")


def _walk(data: Any, path: str) -> Any:
    node = data
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise KeyError(path)
    return node


def payload(body: bytes) -> Any:
    """The body as JSON (InputError when it is not)."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise InputError("the body is not JSON", field="body") from None


def payload_vars(spec: WebhookSpec, data: Any) -> dict[str, Any]:
    """The job variables the hook maps from the payload: each a single line of at most
    MAX_VAR_CHARS (a value flows into config templates), matching its pattern."""
    out: dict[str, Any] = {}
    for name, var in spec.payload_vars().items():
        try:
            value = _walk(data, var.path)
        except KeyError:
            if var.default is None:
                raise InputError(f"the payload has no {var.path!r} (for variable {name})",
                                 field=f"vars.{name}") from None
            value = var.default
        if isinstance(value, str):
            text = value
        elif isinstance(value, bool | int | float):
            text = json.dumps(value)
        else:
            raise InputError(f"{var.path!r} is {type(value).__name__}, not a single value "
                             f"(for variable {name})", field=f"vars.{name}")
        if len(text) > MAX_VAR_CHARS or _CONTROL.search(text):
            raise InputError(f"{var.path!r} is not a single line of at most "
                             f"{MAX_VAR_CHARS} characters (for variable {name})",
                             field=f"vars.{name}")
        if var.pattern is not None and re.fullmatch(var.pattern, text) is None:
            raise InputError(f"{var.path!r} does not match {var.pattern!r} (for variable "
                             f"{name})", field=f"vars.{name}")
        out[name] = value
    return out


def sender(data: Any) -> str | None:
    """Who the payload says sent it (GitHub's sender, GitLab's user, Gitea's pusher)."""
    if not isinstance(data, dict):
        return None
    for path in ("sender.login", "user_username", "user.username", "pusher.login",
                 "pusher.name", "user_name"):
        try:
            value = _walk(data, path)
        except KeyError:
            continue
        if isinstance(value, str) and value and not _CONTROL.search(value):
            return value[:100]
    return None


@dataclass(frozen=True)
class Delivery:
    """A verified request, as the scheduler records it."""

    job: str
    delivery: str
    replay_safe: bool  # the sender gave a delivery id: a repeat of it starts nothing
    event: str | None
    scheme: str
    vars: dict[str, Any]
    by: str | None


# (job name) -> the job's webhook spec, or None when the job has no webhook trigger
FindHook = Callable[[str], WebhookSpec | None]
# a verified delivery -> True: recorded (a run will start), False: seen before
Accept = Callable[[Delivery], bool]


def receive(job: str, headers: Mapping[str, str], body: bytes, find: FindHook,
            accept: Accept, now: float) -> tuple[int, dict[str, Any]]:
    """One request to POST /hooks/JOB: (HTTP status, JSON answer)."""
    spec = find(job)
    if spec is None:
        raise NotFound(f"no job {job!r} with a webhook trigger")
    try:
        secret = spec.secret.ref(field=f"{job}: trigger.webhook.secret").read()
    except SecretUnavailable as exc:
        log.error("webhook %s: %s", job, exc)
        return 503, {"error": "the hook's secret is not available on this server (see "
                              "its log)", "kind": "SecretUnavailable"}
    verified = verify(headers, body, secret, now)
    event = verified.event
    if event == "ping":
        return 200, {"status": "pong", "job": job}
    if spec.events and event not in spec.events:
        return 200, {"status": "ignored", "job": job,
                     "reason": f"event {event!r} is not one of {spec.events}"}
    data = payload(body) if spec.vars or body.strip().startswith((b"{", b"[")) else None
    values = payload_vars(spec, data) if spec.vars else {}
    given = verified.delivery
    if given is not None and not _DELIVERY.match(given):
        raise InputError("the delivery id is not 1-150 letters, digits or ._:@=+/-",
                         field="delivery")
    delivery = Delivery(job, given or uuid.uuid4().hex, given is not None, event,
                        verified.scheme, values, sender(data))
    if accept(delivery):
        return 202, {"status": "accepted", "job": job, "delivery": delivery.delivery,
                     "event": f"webhook:{delivery.delivery}", "vars": values}
    return 200, {"status": "duplicate", "job": job, "delivery": delivery.delivery,
                 "reason": "this delivery was received before: nothing new starts"}


class HookServer:
    """The webhook endpoint on its own thread (uvicorn; the socket bound first, so a
    taken address is an error naming --listen)."""

    def __init__(self, host: str, port: int, find: FindHook, accept: Accept,
                 clock: Callable[[], float]) -> None:
        import uvicorn

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((host, port))
            self.sock.listen(128)  # senders queue until the server thread accepts them
        except OSError as exc:
            self.sock.close()
            raise InputError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                             field="--listen") from None
        self.address = f"{host}:{self.sock.getsockname()[1]}"
        app = _app(find, accept, clock)
        self.server = uvicorn.Server(uvicorn.Config(
            app, log_level="warning", access_log=False, lifespan="off",
            limit_concurrency=64, timeout_keep_alive=5))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       name="hooks", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


def _app(find: FindHook, accept: Accept, clock: Callable[[], float]) -> Any:
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    def error(status: int, exc: Exception) -> JSONResponse:
        body: dict[str, Any] = {"error": str(exc), "kind": type(exc).__name__}
        if isinstance(exc, InputError) and exc.field:
            body["error"], body["field"] = exc.message, exc.field
        return JSONResponse(body, status_code=status)

    async def hook(request: Request) -> JSONResponse:
        job = request.path_params["job"]
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
            return JSONResponse({"error": f"the body is larger than {MAX_BODY} bytes",
                                 "kind": "PayloadTooLarge"}, status_code=413)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                return JSONResponse({"error": f"the body is larger than {MAX_BODY} bytes",
                                     "kind": "PayloadTooLarge"}, status_code=413)
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            status, answer = await run_in_threadpool(receive, job, headers, bytes(body),
                                                     find, accept, clock())
        except NotFound as exc:
            return error(404, exc)
        except AccessDenied as exc:
            return error(401, exc)
        except InputError as exc:
            return error(400, exc)
        except Exception as exc:  # the store away, a bug: the sender retries a 5xx
            log.exception("webhook %s failed", job)
            return JSONResponse({"error": f"not recorded: {type(exc).__name__}",
                                 "kind": "ServerError"}, status_code=503)
        return JSONResponse(answer, status_code=status)

    async def other(request: Request) -> JSONResponse:
        return JSONResponse({"error": "POST /hooks/JOB is the only endpoint here",
                             "kind": "NotFound"}, status_code=404)

    return Starlette(routes=[
        Route("/hooks/{job}", hook, methods=["POST"]),
        Route("/{path:path}", other, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
    ])
