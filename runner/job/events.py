"""The `trigger:` section of a job file (a signed webhook, a syslog rule) and `freshness:`:
what starts a job besides the clock, as `runner serve --listen/--syslog` reads it."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from runner.inventory.secretref import SecretRefSpec
from runner.job import triggers as _t
from runner.vocab import OnBlackout

MAX_VAR_CHARS = 1000  # a value taken from a webhook's payload, at most
# Who changed the config, as common platforms say it in their config-change messages:
# IOS/IOS-XE/NX-OS "Configured from console by admin on vty0 (192.0.2.9)", EOS "Configured
# from vty3 by admin", Junos "UI_COMMIT: User 'admin' requested 'commit'", FRR/vtysh and
# Linux "user=admin", "User: admin".
DEFAULT_USER_PATTERNS = (
    r"\bby (?P<user>[^\s()]+)",
    r"\bUser '(?P<user>[^']+)'",
    r"\buser[=:] ?(?P<user>[^\s,;]+)",
)


class _Model(BaseModel):
    # defer_build: validators built on first use (see runner.job.spec._Model)
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"{value!r} is not a valid regex: {exc}") from None
    return value


class PayloadVar(_Model):
    """A job variable taken from the webhook's JSON payload."""

    path: str = Field(pattern=r"^[^.\s][^\s]*$", description=(
        "Dotted path into the payload: 'ref', 'repository.name', 'commits.0.id'."))
    pattern: str | None = Field(None, description=(
        "A regex the whole value must match (else 400), e.g. '^refs/heads/[a-z0-9-]+$'."))
    default: str | int | float | bool | None = Field(
        None, description="Used when the payload has no such value (none: 400).")

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        return None if value is None else _regex(value)


class WebhookSpec(_Model):
    """`POST /hooks/JOB` on `runner serve --listen`, signed with the secret: GitHub's
    `X-Hub-Signature-256`, Gitea's `X-Gitea-Signature`, or Standard Webhooks'
    `webhook-signature` (GitLab's signing token)."""

    secret: SecretRefSpec = Field(description=(
        "The shared secret: {env: NAME} or {file: /path}, read by `runner serve`."))
    events: list[str] = Field(default_factory=list, description=(
        "Only these events (X-GitHub-Event, X-Gitea-Event or X-Gitlab-Event), e.g. [push]; "
        "empty: any. A `ping` is answered and starts nothing."))
    vars: dict[str, str | PayloadVar] = Field(default_factory=dict, description=(
        "Job variables from the payload: name -> dotted path, or {path, pattern, default}. "
        "Each must be a variable the job declares in `vars:`; values are single lines."))

    def payload_vars(self) -> dict[str, PayloadVar]:
        return {k: v if isinstance(v, PayloadVar) else PayloadVar(path=v)
                for k, v in self.vars.items()}


class SyslogSpec(_Model):
    """A rule for messages to `runner serve --syslog`: a message from a device the job
    targets that matches starts the job on that device."""

    match: str = Field(description="Regex searched in the message, e.g. '%SYS-5-CONFIG_I'.")
    user: str | None = Field(None, description=(
        "Regex naming who made the change (group `user`, or the first group); default: "
        "IOS's 'by USER', Junos' \"User 'USER'\", 'user=USER'."))
    debounce: str | float = Field("10s", description=(
        "Messages from one device within this time after the first start one run: "
        "seconds, or '30s', '2m'."))

    @field_validator("match", "user")
    @classmethod
    def _regexes(cls, value: str | None) -> str | None:
        return None if value is None else _regex(value)

    @field_validator("debounce")
    @classmethod
    def _debounce(cls, value: str | float) -> str | float:
        seconds = _t.parse_interval(value) if isinstance(value, str) else value
        if not 0 <= seconds <= 3600:
            raise ValueError("the debounce is between 0 and 3600 seconds")
        return value

    @property
    def debounce_seconds(self) -> float:
        value = self.debounce
        return _t.parse_interval(value) if isinstance(value, str) else float(value)

    def who(self, message: str) -> str | None:
        """The user the message names, if any."""
        for pattern in ([self.user] if self.user else DEFAULT_USER_PATTERNS):
            found = re.search(pattern, message)
            if found is None:
                continue
            named: Any = found.groupdict().get("user")
            value = named if named is not None else (found.group(1) if found.groups()
                                                     else found.group(0))
            return str(value)[:100] if value else None
        return None


class TriggerSpec(_Model):
    """What starts the job besides its schedule, under `runner serve`."""

    webhook: WebhookSpec | None = None
    syslog: SyslogSpec | None = None
    on_blackout: OnBlackout = Field(OnBlackout.SKIP, description=(
        "An event (or workflow start) arriving inside a blackout window: skip it, or defer "
        "its run to the window's end."))

    @model_validator(mode="after")
    def _some(self) -> TriggerSpec:
        if self.webhook is None and self.syslog is None:
            raise ValueError("give webhook, syslog or both")
        return self


def freshness_seconds(value: str | float) -> float:
    return _t.parse_interval(value) if isinstance(value, str) else float(value)


def check_freshness(value: str | float | None) -> str | float | None:
    if value is None:
        return value
    seconds = freshness_seconds(value)
    if seconds < 10:
        raise ValueError("freshness is at least 10 seconds")
    return value
