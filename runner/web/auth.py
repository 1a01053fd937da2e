"""Who is asking: an API bearer token, or a page session signed into a cookie after logging in
with a token; what their role allows; and the CSRF token every form post must carry."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from runner.errors import AccessDenied, RoleTooLow
from runner.store.tokens import TokenStore
from runner.vocab import Role

SESSION_TOKEN = "token_id"  # noqa: S105 (a session key's name)
SESSION_CSRF = "csrf"
CSRF_FIELD = "csrf"  # the hidden form field
CSRF_HEADER = "x-csrf-token"  # the page's scripts send it on API posts


@dataclass(frozen=True)
class Principal:
    token_id: str
    name: str
    role: Role
    via: str  # "bearer" | "session"

    @property
    def operator(self) -> bool:
        return self.role.allows(Role.OPERATOR)

    @property
    def admin(self) -> bool:
        return self.role.allows(Role.ADMIN)

    @property
    def label(self) -> str:
        """How what this principal does is recorded: the token's name (a token is made
        for a person or a system: `runner token create --name`)."""
        return self.name


def tokens_of(request: Request) -> TokenStore:
    store = request.app.state.services.tokens
    assert isinstance(store, TokenStore)
    return store


def identify(request: Request) -> Principal | None:
    """The bearer token of the request, else its session's token; None if neither is valid
    (a revoked token ends its sessions too)."""
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return None
        token = tokens_of(request).verify(value)
        return None if token is None else Principal(token.id, token.name, token.role,
                                                    "bearer")
    ident = request.session.get(SESSION_TOKEN)
    if not isinstance(ident, str):
        return None
    token = tokens_of(request).active(ident)
    if token is None:
        request.session.clear()
        return None
    return Principal(token.id, token.name, token.role, "session")


BEARER = HTTPBearer(auto_error=False, description="A token from `runner token create`.")


def viewer(request: Request,
           _bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)] = None,
           ) -> Principal:
    """Any valid token (dependency of every read)."""
    who = identify(request)
    if who is None:
        raise AccessDenied("a valid token is needed: `Authorization: Bearer TOKEN` (runner "
                           "token create), or log in at /login")
    return who


def operator(request: Request,
             _bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)] = None,
             ) -> Principal:
    """An operator's token (runs, cancel, approve, reject); a session must also send the
    CSRF token (the page's scripts do, in the X-CSRF-Token header)."""
    who = viewer(request)
    if not who.operator:
        raise RoleTooLow(f"token {who.name!r} is a viewer: this needs an operator token")
    if who.via == "session":
        check_csrf(request, request.headers.get(CSRF_HEADER))
    return who


def check_csrf(request: Request, sent: str | None) -> None:
    expected = request.session.get(SESSION_CSRF)
    if not isinstance(expected, str) or not sent or not hmac.compare_digest(expected, sent):
        raise RoleTooLow("the form's CSRF token is missing or wrong: reload the page and "
                         "try again")


def csrf_token(request: Request) -> str:
    """This session's CSRF token (made on first use)."""
    value = request.session.get(SESSION_CSRF)
    if not isinstance(value, str):
        value = secrets.token_urlsafe(32)
        request.session[SESSION_CSRF] = value
    return value


def log_in(request: Request, token: str) -> Principal | None:
    found = tokens_of(request).verify(token)
    if found is None:
        return None
    request.session.clear()  # a fresh session: nothing carried over from before the login
    request.session[SESSION_TOKEN] = found.id
    request.session[SESSION_CSRF] = secrets.token_urlsafe(32)
    return Principal(found.id, found.name, found.role, "session")
