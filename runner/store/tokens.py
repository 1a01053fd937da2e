"""API tokens for `runner web`: each created once and shown once, stored only as a SHA-256
hash, with a role (viewer or operator); revoked tokens stop working at once."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Column, MetaData, String, Table, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from runner.errors import InputError, NotFound
from runner.records import now_iso
from runner.store.database import open_engine
from runner.vocab import Role

# In the results database; created by migration 0002 (runner/store/migrations), which every
# runner start applies.
metadata = MetaData()
web_tokens = Table(
    "web_tokens", metadata,
    Column("id", String(16), primary_key=True),  # public: part of the token, shown by list
    Column("name", String(100), nullable=False, unique=True),
    Column("role", String(20), nullable=False),  # a Role
    Column("hash", String(64), nullable=False),  # sha256 of the whole token, hex
    Column("created", String(40), nullable=False),
    Column("last_used", String(40)),
    Column("revoked", String(40)),
)

PREFIX = "runner"
_TOKEN = re.compile(r"runner_([0-9a-f]{12})_[A-Za-z0-9_-]{43}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._@-]{0,99}")
LAST_USED_EVERY = timedelta(minutes=1)  # `last_used` is written at most this often


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Token:
    """A token as stored: never its secret."""

    id: str
    name: str
    role: Role
    created: str
    last_used: str | None
    revoked: str | None

    def to_json(self) -> dict[str, str | None]:
        return {"id": self.id, "name": self.name, "role": str(self.role),
                "created": self.created, "last_used": self.last_used,
                "revoked": self.revoked}


class TokenStore:
    def __init__(self, url_or_engine: str | Engine) -> None:
        """On the results database (its schema brought to head when given a URL)."""
        self.engine = open_engine(url_or_engine) if isinstance(url_or_engine, str) \
            else url_or_engine

    def create(self, role: Role, name: str | None = None) -> tuple[Token, str]:
        """A new token: (its record, the token itself, which is not kept anywhere)."""
        if name is not None and not _NAME.fullmatch(name):
            raise InputError("a token name is 1 to 100 letters, digits, spaces and ._@- "
                             "(starting with a letter or digit)", field="--name")
        ident = secrets.token_hex(6)
        token = f"{PREFIX}_{ident}_{secrets.token_urlsafe(32)}"
        record = Token(ident, name or f"token-{ident}", role, now_iso(), None, None)
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(web_tokens).values(
                    id=record.id, name=record.name, role=record.role, hash=_digest(token),
                    created=record.created))
        except IntegrityError:
            raise InputError(f"a token named {record.name!r} exists already",
                             field="--name") from None
        return record, token

    def list(self) -> list[Token]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(web_tokens).order_by(web_tokens.c.created)).all()
        return [Token(r.id, r.name, Role(r.role), r.created, r.last_used, r.revoked)
                for r in rows]

    def revoke(self, id_or_name: str) -> Token:
        """Revoke a token by its id or name (a revoked one stays listed as revoked)."""
        found = [t for t in self.list() if id_or_name in (t.id, t.name)]
        if not found:
            raise NotFound(f"no token with id or name {id_or_name!r} (see `runner token "
                           "list`)")
        token = found[0]
        if token.revoked is None:
            with self.engine.begin() as conn:
                conn.execute(update(web_tokens).where(web_tokens.c.id == token.id)
                             .values(revoked=now_iso()))
        return self.get(token.id) or token

    def get(self, ident: str) -> Token | None:
        with self.engine.connect() as conn:
            r = conn.execute(select(web_tokens).where(web_tokens.c.id == ident)).first()
        return None if r is None else Token(r.id, r.name, Role(r.role), r.created,
                                            r.last_used, r.revoked)

    def verify(self, token: str) -> Token | None:
        """The token's record when it is one of ours and not revoked, else None."""
        match = _TOKEN.fullmatch(token.strip())
        if match is None:
            return None
        with self.engine.connect() as conn:
            r = conn.execute(select(web_tokens).where(
                web_tokens.c.id == match.group(1))).first()
        if r is None or not hmac.compare_digest(r.hash, _digest(token.strip())) \
                or r.revoked is not None:
            return None
        self._touch(r.id, r.last_used)
        return Token(r.id, r.name, Role(r.role), r.created, r.last_used, r.revoked)

    def active(self, ident: str) -> Token | None:
        """A session's token, if it still exists and is not revoked."""
        found = self.get(ident)
        return found if found is not None and found.revoked is None else None

    def _touch(self, ident: str, last: str | None) -> None:
        now = datetime.now(UTC)
        if last is not None and now - datetime.fromisoformat(last) < LAST_USED_EVERY:
            return
        with self.engine.begin() as conn:
            conn.execute(update(web_tokens).where(web_tokens.c.id == ident)
                         .values(last_used=now_iso()))
