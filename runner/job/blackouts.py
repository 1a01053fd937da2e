"""Blackout windows: named calendars (a date range, or a span started by a cron expression,
in a time zone; for the whole fleet or some sites, groups or hosts; for every job or some,
or only for changes) that scheduled occurrences, event starts and ad-hoc runs obey. Read
from `blackouts.yml` beside the job files and from a job's own `blackouts:` section.
Every question is a pure function of an injected time."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from runner.errors import BlackoutActive, JobError
from runner.job import triggers as _t
from runner.source.validation import YamlSource, located
from runner.source.yamlsrc import line_of, load_yaml

# The calendar of a jobs directory: this file beside the job files.
BLACKOUTS_FILES = ("blackouts.yml", "blackouts.yaml")
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
HORIZON = timedelta(days=400)  # how far ahead "when does the blackout end" looks
MAX_STEPS = 10_000  # windows joined end to end, at most


class _Model(BaseModel):
    # defer_build: validators built on first use (see runner.job.spec._Model)
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class BlackoutWindow(_Model):
    """One named window: `start`..`end` (a date range), or `cron` + `duration` (a span
    starting at each fire time), local to `timezone`."""

    name: str = Field(pattern=NAME_PATTERN, description="Named in every refusal and skip.")
    description: str = Field("", description="Why: shown with the name.")
    start: datetime | None = Field(None, description="Start of a date range, e.g. "
                                                     "'2026-12-20 00:00' (inclusive).")
    end: datetime | None = Field(None, description="End of the date range (exclusive).")
    cron: str | None = Field(None, description="A span starts at each fire time of this "
                                               "5-field crontab (Sunday = 0 or 7).")
    duration: str | float | None = Field(None, description="How long each cron span lasts: "
                                                           "seconds, or '90m', '10h', '2d'.")
    timezone: str = Field("UTC", description="IANA time zone of start, end and cron.")
    sites: list[str] = Field(default_factory=list, description=(
        "Only devices whose inventory data `site` is one of these (with groups and hosts: "
        "any of them). None of sites, groups, hosts: the whole fleet."))
    groups: list[str] = Field(default_factory=list, description="Only members of these "
                                                                "inventory groups.")
    hosts: list[str] = Field(default_factory=list, description="Only these hosts.")
    jobs: list[str] = Field(default_factory=list, description=(
        "Only these jobs (names or globs such as 'push-*'); empty: every job."))
    changes_only: bool = Field(False, description=(
        "Hold only runs that change config (jobs with a config step, not dry runs): "
        "backups, audits and previews go on (a change freeze rather than an outage)."))

    _zone = field_validator("timezone")(_t.checked_zone)
    _cron = field_validator("cron")(_t.checked_cron)

    @field_validator("duration")
    @classmethod
    def _duration(cls, value: str | float | None) -> str | float | None:
        if value is None:
            return value
        seconds = _t.parse_interval(value) if isinstance(value, str) else value
        if seconds < 60:
            raise ValueError("a blackout lasts at least 60 seconds")
        return value

    @model_validator(mode="after")
    def _kind(self) -> BlackoutWindow:
        here = type(self).__name__
        dated = self.start is not None or self.end is not None
        cronned = self.cron is not None or self.duration is not None
        if dated and cronned:
            raise located(here, "give start and end (a date range) or cron and duration "
                          "(a span at each fire time), not both", ("cron",))
        if dated and (self.start is None or self.end is None):
            missing = "end" if self.end is None else "start"
            raise located(here, f"a date range needs both start and end ({missing} is "
                          "missing)", (missing,) if missing == "start" else ("start",))
        if cronned and (self.cron is None or self.duration is None):
            raise located(here, "a cron window needs both cron and duration",
                          ("cron",) if self.cron is None else ("duration",))
        if not dated and not cronned:
            raise located(here, "give start and end, or cron and duration", ())
        if self.start is not None and self.end is not None \
                and self.aware(self.start) >= self.aware(self.end):
            raise located(here, "end must be after start", ("end",))
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def aware(self, moment: datetime) -> datetime:
        return (moment if moment.tzinfo else moment.replace(tzinfo=self.zone)).astimezone(UTC)

    @property
    def seconds(self) -> float:
        assert self.duration is not None
        return _t.parse_interval(self.duration) if isinstance(self.duration, str) \
            else float(self.duration)

    @property
    def scoped(self) -> bool:
        """Whether it holds some devices only (sites, groups, hosts), not the fleet."""
        return bool(self.sites or self.groups or self.hosts)

    def applies_to(self, job: str, changes: bool) -> bool:
        """Whether it holds runs of `job`; `changes`: the run would change config."""
        if self.changes_only and not changes:
            return False
        return not self.jobs or any(fnmatch.fnmatchcase(job, p) for p in self.jobs)

    def span_at(self, moment: datetime) -> tuple[datetime, datetime] | None:
        """The span [start, end) covering `moment` (aware), in UTC; None outside."""
        if self.cron is None:
            assert self.start is not None and self.end is not None
            start, end = self.aware(self.start), self.aware(self.end)
            return (start, end) if start <= moment < end else None
        length = timedelta(seconds=self.seconds)
        began = _t.CronSchedule(self.cron, self.zone).next_after(moment - length)
        if began is None or began > moment:
            return None
        return began, began + length

    def next_span(self, after: datetime) -> tuple[datetime, datetime] | None:
        """The first span starting after `after`, in UTC."""
        if self.cron is None:
            assert self.start is not None and self.end is not None
            start = self.aware(self.start)
            return (start, self.aware(self.end)) if start > after else None
        began = _t.CronSchedule(self.cron, self.zone).next_after(after)
        return None if began is None else (began, began + timedelta(seconds=self.seconds))

    def describe(self) -> str:
        if self.cron is not None:
            when = f"{_t.CronSchedule(self.cron, self.zone).describe()} for {self.duration}"
        else:
            assert self.start is not None and self.end is not None
            when = (f"{self.start:%Y-%m-%d %H:%M} to {self.end:%Y-%m-%d %H:%M} "
                    f"({self.timezone})")
        scope = [f"{k} {', '.join(v)}" for k, v in (("sites", self.sites),
                                                     ("groups", self.groups),
                                                     ("hosts", self.hosts)) if v]
        return when + (f", {'; '.join(scope)}" if scope else "") + \
            (", changes only" if self.changes_only else "")


class BlackoutsFile(_Model):
    """blackouts.yml: the jobs directory's calendar."""

    model_config = ConfigDict(extra="forbid", frozen=True,
                              json_schema_extra={"title": "runner blackouts"})
    blackouts: list[BlackoutWindow] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> BlackoutsFile:
        duplicate = first_duplicate(self.blackouts)
        if duplicate is not None:
            raise located(type(self).__name__, f"a window named "
                          f"{self.blackouts[duplicate].name!r} is already given",
                          ("blackouts", duplicate, "name"))
        return self


def first_duplicate(windows: list[BlackoutWindow]) -> int | None:
    seen: set[str] = set()
    for index, window in enumerate(windows):
        if window.name in seen:
            return index
        seen.add(window.name)
    return None


def blackouts_schema() -> dict[str, Any]:
    """`runner schema blackouts`."""
    schema = BlackoutsFile.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def is_calendar(path: Path) -> bool:
    """Whether a file of a jobs directory is its calendar, not a job."""
    return path.name in BLACKOUTS_FILES


# -- the calendar ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Placed:
    """A window and where it is written (`jobs/blackouts.yml:4`), for messages."""

    window: BlackoutWindow
    where: str
    path: Path | None = None
    line: int | None = None
    field: str | None = None


@dataclass(frozen=True)
class Active:
    """A window holding now: which, and the span it holds for."""

    placed: Placed
    start: datetime
    end: datetime

    @property
    def name(self) -> str:
        return self.placed.window.name

    def text(self) -> str:
        """`year-end (jobs/blackouts.yml:2) until 2027-01-04 00:00 CET`"""
        window = self.placed.window
        until = self.end.astimezone(window.zone).strftime("%Y-%m-%d %H:%M %Z")
        why = f": {window.description}" if window.description else ""
        return f"{window.name} ({self.placed.where}) until {until}{why}"


class HostLike(Protocol):
    """What a window asks of an inventory host (a Nornir Host is one)."""

    def has_parent_group(self, group: str) -> bool: ...

    def get(self, item: str, default: Any = None) -> Any: ...


@dataclass(frozen=True)
class Calendar:
    """The windows a job obeys: its directory's blackouts.yml and its own section."""

    windows: tuple[Placed, ...] = ()
    source: Path | None = None  # the blackouts file, when there is one

    def __bool__(self) -> bool:
        return bool(self.windows)

    def with_job(self, windows: Iterable[BlackoutWindow], path: Path | None,
                 raw: Any = None) -> Calendar:
        """This calendar and a job file's own `blackouts:` windows."""
        own = []
        for index, window in enumerate(windows):
            line = _line(raw, "blackouts", index)
            where = f"{path}:{line}" if path is not None and line else str(path or "job")
            own.append(Placed(window, where, path, line, f"blackouts[{index}]"))
        return Calendar((*self.windows, *own), self.source) if own else self

    def applying(self, job: str, changes: bool) -> list[Placed]:
        return [p for p in self.windows if p.window.applies_to(job, changes)]

    def active(self, moment: datetime, job: str, changes: bool, *,
               scoped: bool | None = None) -> list[Active]:
        """The windows holding `job` at `moment` (scoped: only device-scoped ones, or only
        fleet-wide ones when False; None: both)."""
        out = []
        for placed in self.applying(job, changes):
            if scoped is not None and placed.window.scoped != scoped:
                continue
            span = placed.window.span_at(moment)
            if span is not None:
                out.append(Active(placed, *span))
        return out

    def fleet_hold(self, moment: datetime, job: str, changes: bool) -> list[Active]:
        """Fleet-wide windows holding `job` at `moment`: it may not start at all."""
        return self.active(moment, job, changes, scoped=False)

    def clear_at(self, moment: datetime, job: str, changes: bool) -> datetime | None:
        """The first moment at or after `moment` that no fleet-wide window holds (windows
        that meet or overlap are joined); None when none comes within the horizon."""
        limit = moment + HORIZON
        for _ in range(MAX_STEPS):
            held = self.fleet_hold(moment, job, changes)
            if not held:
                return moment
            moment = max(a.end for a in held)
            if moment > limit:
                return None
        return None

    def next_window(self, after: datetime, job: str, changes: bool) -> Active | None:
        """The next span of a window applying to `job` (for `schedule list`)."""
        found: list[Active] = []
        for placed in self.applying(job, changes):
            span = placed.window.next_span(after)
            if span is not None:
                found.append(Active(placed, *span))
        return min(found, key=lambda a: a.start) if found else None

    def device_holds(self, moment: datetime, job: str, changes: bool,
                     hosts: Mapping[str, HostLike], names: Iterable[str]) -> dict[str, Active]:
        """Of `names`, the hosts a device-scoped window holds at `moment` (the first such
        window for each)."""
        active = self.active(moment, job, changes, scoped=True)
        if not active:
            return {}
        held = {}
        for name in names:
            for found in active:
                if _holds(found.placed.window, name, hosts[name]):
                    held[name] = found
                    break
        return held

    def check_scopes(self, job: str, changes: bool, hosts: Mapping[str, HostLike],
                     groups: Iterable[str]) -> None:
        """A window that applies to `job` and names a site, group or host this inventory
        does not have would hold nothing: a JobError naming it, before any device is
        touched (a freeze that silently holds nothing is worse than a refusal)."""
        known_groups = set(groups)
        sites = {str(h.get("site")) for h in hosts.values() if h.get("site") is not None}
        for placed in self.applying(job, changes):
            window = placed.window
            for key, names, known, what in (
                    ("sites", window.sites, sites, "no host of the inventory has data site"),
                    ("groups", window.groups, known_groups, "the inventory has no group"),
                    ("hosts", window.hosts, set(hosts), "the inventory has no host")):
                for index, name in enumerate(names):
                    if name not in known:
                        raise JobError(f"blackout {window.name}: {what} {name!r}",
                                       path=placed.path, line=placed.line,
                                       field=f"{placed.field}.{key}[{index}]")


def _holds(window: BlackoutWindow, name: str, host: HostLike) -> bool:
    if name in window.hosts:
        return True
    if any(host.has_parent_group(g) for g in window.groups):
        return True
    site = host.get("site")
    return site is not None and str(site) in window.sites


def _line(raw: Any, key: str, index: int) -> int | None:
    if isinstance(raw, dict) and isinstance(raw.get(key), list) and index < len(raw[key]):
        return line_of(raw[key], index) or line_of(raw, key)
    return None


def calendar_file(jobs_dir: Path) -> Path | None:
    for name in BLACKOUTS_FILES:
        if (jobs_dir / name).is_file():
            return jobs_dir / name
    return None


def load_calendar(jobs_dir: Path) -> Calendar:
    """The calendar of a jobs directory (empty when it has no blackouts.yml); a JobError
    naming file, line and field when the file is not valid."""
    path = calendar_file(jobs_dir)
    if path is None:
        return Calendar()
    return read_calendar(path)


def read_calendar(path: Path) -> Calendar:
    raw = load_yaml(path, JobError)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise JobError("a blackouts file is a mapping with a `blackouts:` list", path=path,
                       line=line_of(raw))
    parsed = YamlSource(path, raw, JobError).validate(BlackoutsFile)
    placed = []
    for index, window in enumerate(parsed.blackouts):
        line = _line(raw, "blackouts", index)
        placed.append(Placed(window, f"{path}:{line}" if line else str(path), path, line,
                             f"blackouts[{index}]"))
    return Calendar(tuple(placed), path)


@dataclass
class Holds:
    """What the calendar says about one run at one moment."""

    fleet: list[Active] = field(default_factory=list)  # the run may not start
    devices: dict[str, Active] = field(default_factory=dict)  # these devices sit it out

    def refusal(self, job: str, hosts: list[str], override: str) -> BlackoutActive | None:
        """The error refusing the run, if it is refused: a fleet-wide window, or every
        device held. `override`: how to override, for the message."""
        if self.fleet:
            names = tuple(a.name for a in self.fleet)
            return BlackoutActive(
                f"job {job!r} is in blackout {'; '.join(a.text() for a in self.fleet)}: not "
                f"started (override with {override} REASON, recorded)", windows=names)
        if hosts and set(hosts) <= set(self.devices):
            names = tuple(dict.fromkeys(a.name for a in self.devices.values()))
            texts = dict.fromkeys(a.text() for a in self.devices.values())
            return BlackoutActive(
                f"every device of job {job!r} is in blackout {'; '.join(texts)}: not started "
                f"(override with {override} REASON, recorded)", windows=names)
        return None
