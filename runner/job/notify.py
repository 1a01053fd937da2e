"""Notifications about runs through Apprise URLs: targets, events, the message, delivery."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from runner.errors import RunnerError
from runner.inventory import platforms
from runner.records import HELD_BY_POLICY, RunResult, now_iso
from runner.redact import Redactor
from runner.source.validation import problem
from runner.vocab import SUCCESS, DeviceStatus, NotifyEvent, RunStatus, StepKind

if TYPE_CHECKING:
    from runner.inventory.fleet import FleetInventory
    from runner.inventory.secretlines import LinePattern
    from runner.inventory.secretref import SecretResolver

log = logging.getLogger("runner.job.notify")

# What a target hears about unless it says otherwise: what needs a person.
DEFAULT_EVENTS = (NotifyEvent.FAILED, NotifyEvent.ROLLED_BACK, NotifyEvent.AWAITING_APPROVAL)
TIMEOUT_S = 10.0  # longest a run waits for its notifications, all targets together
DIFF_LINES = 40  # of one device's diff
TOTAL_DIFF_LINES = 300  # of all diffs in one message
LISTED_DEVICES = 50  # failed devices listed by name
ERROR_CHARS = 300  # of one device's error
EXAMPLES = "json://host:port/path (a webhook), mailto://user:password@host or slack://tokens"


class NotifyTarget(BaseModel):
    """Where to send a notification (an Apprise URL) and on which events."""

    # defer_build: validators built on first use (see runner.job.spec._Model)
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    url: str = Field(repr=False,  # it may hold a password
                     description="An Apprise URL: json://host:port/path (a JSON webhook), "
                                 "mailto://user:password@host, slack://..., msteams://...")
    on: list[NotifyEvent] = Field(
        default=list(DEFAULT_EVENTS), json_schema_extra={"minItems": 1},
        description="Events that send it (default: failed, rolled_back, awaiting_approval; "
                    "`always` for every run).")

    @model_validator(mode="before")
    @classmethod
    def _mapping(cls, data: Any) -> Any:
        if not isinstance(data, dict):  # never echo the value: it may hold a password
            raise problem("a notification target is a mapping: {url: <Apprise URL>, "
                          "on: [events]}", "not_a_mapping")
        # YAML 1.1 (PyYAML) reads the key `on` as the boolean true
        return {("on" if key is True else key): value for key, value in data.items()}

    @field_validator("url")
    @classmethod
    def _apprise_url(cls, value: str) -> str:
        trouble = url_problem(value)
        if trouble:
            raise problem(trouble, "notify_url")
        return value

    @field_validator("on")
    @classmethod
    def _some(cls, value: list[NotifyEvent]) -> list[NotifyEvent]:
        if not value:
            raise problem("name at least one event: " + ", ".join(NotifyEvent), "notify_on")
        return list(dict.fromkeys(value))


def _quiet_apprise() -> None:
    """Apprise's log stays its own: its plugins' messages quote URLs and tokens unmasked.
    runner logs each outcome itself, masked."""
    logging.getLogger("apprise").propagate = False


def _url_secrets(url: str, *, tokens: bool = True) -> Redactor:
    """Masks what a URL may carry as a secret: its password and, with `tokens`, every part
    of 8 characters or more that is not a host name or an address (Slack, Discord, Telegram
    keep their tokens in the URL, and Apprise's errors quote them)."""
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    values = [password, unquote(password)] if password else []
    if tokens:
        words = re.split(r"[/:@?&=#]+", url.partition("://")[2])
        values += [unquote(w) for w in words if len(w) >= 8 and "." not in w]
    return Redactor(values)


@cache
def url_problem(url: str) -> str | None:
    """Why Apprise cannot use `url` (credentials masked), or None when it can."""
    import apprise
    from apprise.manager_plugins import NotificationManager

    _quiet_apprise()
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if not scheme:
        return f"expected an Apprise URL such as {EXAMPLES}"
    if scheme not in NotificationManager():  # type: ignore[no-untyped-call]
        hint = " (for a webhook use json:// or jsons://)" if scheme in ("http", "https") \
            else ""
        return f"{scheme}:// is not a service Apprise knows{hint}; expected a URL such as " \
               f"{EXAMPLES}"
    try:
        service = apprise.Apprise.instantiate(url, suppress_exceptions=False)
    except Exception as exc:  # the plugin says why it refused the URL
        return f"not a usable {scheme}:// URL: {_url_secrets(url).text(str(exc))}"
    if service is None:
        return f"not a usable {scheme}:// URL; expected a URL such as {EXAMPLES}"
    return None


def masked_url(url: str) -> str:
    """The URL as it may be logged and stored: Apprise's own privacy form (it knows which
    parts of each service's URL are secret), without the query (which may hold more)."""
    import apprise

    _quiet_apprise()
    try:
        service = apprise.Apprise.instantiate(url)
    except Exception:
        service = None
    if service is None:  # not a URL Apprise can use: only its service is safe to show
        shown = url.partition("://")[0] + "://..." if "://" in url else "..."
    else:
        shown = service.url(privacy=True)  # type: ignore[no-untyped-call]
    return _url_secrets(url, tokens=False).text(str(shown).partition("?")[0])


def targets_for(spec_targets: Sequence[NotifyTarget], explicit: bool,
                defaults: Sequence[NotifyTarget]) -> list[NotifyTarget]:
    """A job's own targets; the defaults (`runner serve --notify`) when it names none.
    `notify: []` written in a job opts out of the defaults."""
    return list(spec_targets) if spec_targets or explicit else list(defaults)


# -- events ---------------------------------------------------------------------------------


def run_status(run: RunResult, status: RunStatus | None = None) -> RunStatus:
    """The status the results store gives a finished run (unless told another)."""
    return status or (RunStatus.OK if run.ok else RunStatus.FAILED)


def events_of(run: RunResult, status: RunStatus | None = None,
              drift: dict[str, list[str]] | None = None) -> set[NotifyEvent]:
    """What happened in a run, as notification events. `status` is the run's status where
    the caller knows more than the records (awaiting_approval, interrupted); `drift` the
    devices newly out of compliance (the compliance store knows which are new)."""
    events = {NotifyEvent.ALWAYS}
    if drift:
        events.add(NotifyEvent.DRIFT)
    # rolled_back is not a success either: the change the job asked for did not happen
    if not run.ok or status in (RunStatus.FAILED, RunStatus.INTERRUPTED,
                                RunStatus.REHEARSAL_FAILED):
        events.add(NotifyEvent.FAILED)
    if any(d.status is DeviceStatus.ROLLED_BACK for d in run.devices):
        events.add(NotifyEvent.ROLLED_BACK)
    if any(d.changed or d.status is DeviceStatus.CHANGED for d in run.devices):
        events.add(NotifyEvent.CHANGED)
    if run.backup_commit and any(s.kind is StepKind.BACKUP and s.changed
                                 for d in run.devices for s in d.steps):
        events.add(NotifyEvent.BACKUP_CHANGED)
    if status is RunStatus.AWAITING_APPROVAL:
        events.add(NotifyEvent.AWAITING_APPROVAL)
    return events


# -- the message ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    title: str
    body: str
    kind: str  # an Apprise NotifyType: info | success | warning | failure


def _lines(text: str, budget: int) -> tuple[list[str], int]:
    """At most `budget` lines of text, and how many were left out."""
    lines = text.rstrip("\n").splitlines()
    shown = lines[:budget]
    return shown, len(lines) - len(shown)


@dataclass
class _DiffSection:
    """Diffs under one heading, sharing the message's line budget with other sections."""

    heading: str
    budget: list[int]  # lines left for diffs in the whole message
    redactor: Redactor
    hosts: dict[str, bool] = field(default_factory=dict)  # host -> its diff was shown
    out: list[str] = field(default_factory=list)

    def add(self, host: str, label: str, diff: str | None) -> None:
        if self.budget[0] <= 0:
            self.hosts.setdefault(host, False)
            return
        self.hosts[host] = True
        self.out.append(f"== {host}: {label}")  # not ---: diffs have their own --- lines
        if diff is None:
            return
        shown, more = _lines(diff, min(DIFF_LINES, self.budget[0]))
        self.budget[0] -= len(shown)
        # masked after the cut: lines are cut whole, never a secret in half
        self.out += self.redactor.text("\n".join(shown)).splitlines()
        if more:
            self.out.append(f"... {more} more lines")

    def text(self) -> list[str]:
        if not self.hosts:
            return []
        left = [h for h, shown in self.hosts.items() if not shown]
        tail = [f"... {len(left)} more devices left out: {', '.join(left[:10])}"
                + (", ..." if len(left) > 10 else "")] if left else []
        return ["", f"{self.heading} ({len(self.hosts)}):", *self.out, *tail]


def _head(run: RunResult, status: RunStatus, counts: str) -> list[str]:
    body = [f"job {run.job}" + (f" ({run.job_file})" if run.job_file else ""),
            f"run {run.run_id}: {status}"]
    if run.dry_run:
        body.append("DRY RUN: nothing was sent to any device; diffs show what would change")
    body.append(f"devices: {counts}")
    body.append(f"started {run.started}, finished {run.finished or '-'}, engine {run.engine}")
    if run.occurrence:
        body.append(f"occurrence {run.occurrence}")
    if run.backup_commit:
        body.append(f"backups: commit {run.backup_commit[:12]}")
    return body


def _drift(run: RunResult, drift: dict[str, list[str]] | None) -> list[str]:
    """The devices newly out of compliance, with each feature's missing/extra counts."""
    if not drift:
        return []
    records = {d.host: d for d in run.devices}
    body = ["", f"New drift ({len(drift)} devices; runner compliance lists all, runner "
                f"remediate {run.run_id} fixes it):"]
    for host, features in list(drift.items())[:LISTED_DEVICES]:
        found = records[host].compliance if host in records else None
        parts = []
        for name in features:
            result = (found or {}).get(name) or {}
            parts.append(f"{name} ({result.get('missing_count', 0)} missing, "
                         f"{result.get('extra_count', 0)} extra)")
        body.append(f"- {host}: {', '.join(parts)}")
    if len(drift) > LISTED_DEVICES:
        body.append(f"... {len(drift) - LISTED_DEVICES} more devices")
    return body


def _error(redactor: Redactor, error: str | None) -> str:
    """A device's error for a message: masked before it is cut (no half secrets)."""
    text = redactor.text(error or "")
    if len(text) > ERROR_CHARS:
        text = text[:ERROR_CHARS] + f"... ({len(text) - ERROR_CHARS} more chars)"
    return text


def _failed(run: RunResult, redactor: Redactor) -> list[str]:
    failed = [d for d in run.devices if not d.status.worked]
    if not failed:
        return []
    body = ["", f"Failed devices ({len(failed)}):"]
    for d in failed[:LISTED_DEVICES]:
        error = _error(redactor, d.error)
        what = f"{d.error_class}: {error}" if d.error_class else error
        body.append(f"- {d.host}: {d.status}" + (f", {what}" if what else ""))
    if len(failed) > LISTED_DEVICES:
        body.append(f"... {len(failed) - LISTED_DEVICES} more failed devices: "
                    f"runner show {run.run_id}")
    return body


def _rehearsal(run: RunResult, redactor: Redactor) -> list[str]:
    """The rehearsal on a twin (`--rehearse`, a schedule's `rehearse:`): its verdict, the
    devices that did not pass there (the reason production was not contacted) and the
    twin's reset."""
    r = run.rehearsal
    if not r:
        return []
    counts = ", ".join(f"{n} {s}" for s, n in (r.get("summary") or {}).items() if n)
    twin_run = f"twin run {r['run_id']}" if r.get("run_id") else "no twin run"
    body = ["", f"Rehearsal on twin {r.get('twin')}: "
                f"{'passed' if r.get('passed') else 'FAILED'} ({twin_run}"
                + (f"; {counts}" if counts else "") + ")"
                + ("" if r.get("passed") else "; production was not contacted")]
    if r.get("error"):
        body.append(f"- {redactor.text(str(r['error']))}")
    bad = [d for d in r.get("devices") or []
           if d.get("status") not in SUCCESS and d.get("error_class") != HELD_BY_POLICY]
    for d in bad[:LISTED_DEVICES]:
        error = _error(redactor, d.get("error"))
        where = f" in {d['failed_check']!r}" if d.get("failed_check") else ""
        what = f"{d['error_class']}{where}: {error}" if d.get("error_class") else error
        body.append(f"- {d['host']} on the twin: {d['status']}" + (f", {what}" if what else ""))
    if len(bad) > LISTED_DEVICES:
        body.append(f"... {len(bad) - LISTED_DEVICES} more devices failed on the twin: "
                    f"runner show {run.run_id}")
    if r.get("reset"):
        body.append(f"twin reset: {r['reset']}")
    return body


def _diffs(run: RunResult, redactor: Redactor,
           backup_diffs: dict[str, str | None] | None) -> list[str]:
    budget = [TOTAL_DIFF_LINES]
    configs = _DiffSection("Config previews" if run.dry_run else "Config diffs", budget,
                           redactor)
    backups = _DiffSection("Backup changes", budget, redactor)
    for d in run.devices:
        for s in d.steps:
            if s.kind in (StepKind.CONFIG, StepKind.ROLLBACK) and s.diff:
                configs.add(d.host, s.name, s.diff)
    for d in run.devices:
        for s in d.steps:
            if s.kind is not StepKind.BACKUP or not s.changed:
                continue
            where = s.output or "backup"
            if configs.hosts.get(d.host):  # the same change, already shown
                backups.add(d.host, f"{where} (its config diff is above)", None)
            elif backup_diffs is None or d.host not in backup_diffs:
                backups.add(d.host, where, None)
            elif backup_diffs[d.host] is None:
                backups.add(d.host, f"{where} (first backup)", None)
            else:
                backups.add(d.host, where, backup_diffs[d.host])
    return configs.text() + backups.text()


def build_message(run: RunResult, status: RunStatus | None, redactor: Redactor,
                  backup_diffs: dict[str, str | None] | None = None,
                  drift: dict[str, list[str]] | None = None) -> Message:
    """Title and plain-text body: the run, its failed devices with their errors, and the
    config diff (or backup change) of each changed device, long diffs cut with a count.
    Records are masked by the engine already; `redactor` masks again, and the backup text
    itself is never read (only `backup_diffs`, from the backup repository)."""
    status = run_status(run, status)
    counts = ", ".join(f"{n} {s}" for s, n in run.summary.items() if n) or "no devices"
    title = f"runner {run.job}: {status}{' (dry run)' if run.dry_run else ''}, {counts}"
    body = [*_head(run, status, counts), *_rehearsal(run, redactor),
            *_failed(run, redactor), *_drift(run, drift),
            *_diffs(run, redactor, backup_diffs)]
    kind = ("failure" if NotifyEvent.FAILED in events_of(run, status)
            else "warning" if status is RunStatus.AWAITING_APPROVAL
            else "success" if status is RunStatus.OK else "info")
    # title and body are masked piece by piece above (diffs line by line); once more whole
    return Message(redactor.text(title), redactor.text("\n".join(body)) + "\n", kind)


# -- delivery -------------------------------------------------------------------------------


@dataclass
class _Send:
    """One target's delivery, on a thread of its own."""

    url: str
    outcome: tuple[bool, str] | None = None  # (delivered, error); None: still going


def _deliver(send: _Send, message: Message, timeout: float) -> None:
    import apprise

    _quiet_apprise()
    try:
        # Deliver on this thread (not Apprise's shared pool, whose threads the interpreter
        # waits for at exit): a hung receiver then holds only this daemon thread.
        asset = apprise.AppriseAsset(async_mode=False, service_timeout=0)
        service = apprise.Apprise.instantiate(send.url, asset=asset)
        if service is None:
            send.outcome = (False, "Apprise could not load the URL")
            return
        # The plugin's own socket timeouts end an abandoned attempt soon, too.
        service.socket_connect_timeout = service.socket_read_timeout = timeout
        result = apprise.Apprise(service, asset=asset).notify(
            body=message.body, title=message.title, notify_type=message.kind,
            body_format=apprise.NotifyFormat.TEXT)
        if result:
            send.outcome = (True, "")
            return
        said = [e.message for e in result.logs() if e.level in ("WARNING", "ERROR")]
        send.outcome = (False, "; ".join(dict.fromkeys(said))
                        or f"not delivered ({result.status.name.lower()})")
    except Exception as exc:  # a plugin bug must not reach the run
        send.outcome = (False, f"{type(exc).__name__}: {exc}")


def deliver(message: Message, targets: Sequence[tuple[NotifyTarget, list[NotifyEvent]]],
            redactor: Redactor, *, status: RunStatus, timeout: float = TIMEOUT_S,
            run_id: str = "") -> list[dict[str, Any]]:
    """Send to every target at once, each on a daemon thread, and wait at most `timeout`
    seconds for all of them: a receiver that is down, slow or hung cannot hold the run
    longer, and one that never answers is recorded as not delivered."""
    sends = [_Send(t.url) for t, _ in targets]
    threads = [threading.Thread(target=_deliver, args=(s, message, timeout), daemon=True,
                                name="runner-notify") for s in sends]
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    outcomes = []
    for (target, events), send in zip(targets, sends, strict=True):
        delivered, error = send.outcome or (False, f"no answer within {timeout:g}s")
        shown = masked_url(target.url)
        error = _url_secrets(target.url).text(redactor.text(error)) if error else ""
        if delivered:
            log.info("run %s: notified %s (%s)", run_id, shown, ", ".join(events))
        else:
            log.warning("run %s: notification to %s not delivered: %s", run_id, shown, error)
        outcomes.append({"url": shown, "events": [str(e) for e in events],
                         "status": str(status), "delivered": delivered,
                         "error": error or None, "at": now_iso()})
    return outcomes


def notify(run: RunResult, status: RunStatus | None, targets: Iterable[NotifyTarget],
           secrets: Redactor, *, backup_dir: Path | None = None,
           timeout: float = TIMEOUT_S,
           drift: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
    """Notify the targets whose events happened in `run` (with the diffs of its backup
    commit, from `backup_dir`); an outcome per target notified (url masked, events,
    delivered, error). Never raises for a delivery problem."""
    status = run_status(run, status)
    happened = events_of(run, status, drift)
    chosen = [(t, [e for e in t.on if e in happened]) for t in targets]
    chosen = [(t, events) for t, events in chosen if events]
    if not chosen:
        return []
    message = build_message(run, status, secrets, backup_changes(run, backup_dir), drift)
    return deliver(message, chosen, secrets, status=status, timeout=timeout,
                   run_id=run.run_id)


def backup_changes(run: RunResult, backup_dir: Path | None) -> dict[str, str | None] | None:
    """Each changed device's diff in the run's backup commit (None: its first backup)."""
    if backup_dir is None or not run.backup_commit:
        return None
    from runner.job.backups import BackupRepo

    try:
        return BackupRepo(backup_dir).changes(run.backup_commit,
                                              [d.host for d in run.devices])
    except RunnerError as exc:
        log.warning("run %s: backup diffs left out of the notification: %s", run.run_id, exc)
        return None


def secrets_of(inventory: FleetInventory, hosts: list[str],
               resolver: SecretResolver | None = None,
               values: Iterable[str] = ()) -> Redactor:
    """The run's hosts' credentials (secret references too, when `resolver` reads them on
    this machine), other secret `values`, and their platforms' secret-line patterns."""
    patterns: dict[str, LinePattern] = {}
    for host in hosts:
        platform = platforms.get(inventory.platform_of(host) or "")
        for pattern in platform.secret_lines if platform else ():
            patterns.setdefault(pattern.pattern, pattern)
    known, usernames = inventory.credentials(hosts, resolver)
    return Redactor(known | set(values), patterns.values(), usernames)
