"""The `schedule:` section of a job file, with defaults chosen for network jobs."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from runner.job import triggers as _t
from runner.vocab import Approval, OnBlackout, Overlap

if TYPE_CHECKING:
    from runner.job.triggers import Trigger

REHEARSE_REQUIRED = "required"  # `rehearse: required`: the default twin
DEFAULT_TWIN = "twin"  # `runner twin up`'s default name
TWIN_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]*$")  # a lab's name (runner.lab.schema)


class IntervalSpec(BaseModel):
    # defer_build: validators built on first use (see runner.job.spec._Model)
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)
    seconds: float = 0
    minutes: float = 0
    hours: float = 0
    days: float = 0

    @property
    def total(self) -> float:
        return self.seconds + 60 * self.minutes + 3600 * self.hours + 86400 * self.days


class ScheduleSpec(BaseModel):
    """When a job runs by itself under `runner serve`."""

    # defer_build: validators built on first use (see runner.job.spec._Model)
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    cron: str | None = Field(None, description="5-field crontab (Sunday = 0 or 7, names "
                                               "allowed) or @daily/@hourly/...")
    interval: str | IntervalSpec | None = Field(
        None, description="Every N: '30s', '5m', '2h', '1d', or {minutes: 5}.")
    at: datetime | None = Field(None, description="Once, at this date-time.")
    timezone: str = Field("UTC", description="IANA time zone for cron, at, start and end.")
    jitter: float = Field(0, ge=0, le=3600,
                          description="Start up to this many seconds late, at random.")
    start: datetime | None = Field(
        None, description="No occurrence before this date-time (inclusive; cron, interval "
                          "and at). An interval counts from it.")
    end: datetime | None = Field(None, description="No occurrence after this date-time "
                                                   "(inclusive).")
    misfire_grace: float = Field(
        300, ge=0, description="Seconds late an occurrence may still start (after downtime); "
                               "later ones are recorded as misfired, not run.")
    coalesce: bool = Field(True, description="After downtime, run once for all the missed "
                                             "occurrences still within grace, not each.")
    approval: Approval = Field(Approval.NONE, description=(
        "required: at each occurrence a dry run previews the change (diffs stored, run "
        "status awaiting_approval); `runner approve RUN` carries out exactly that change."))
    rehearse: str | None = Field(None, description=(
        "Rehearse every run on a twin first (`runner twin up`): the twin's name, or "
        "`required` for the default twin (RUNNER_TWIN, else `twin`; `runner serve --twin "
        "NAME` for that server). Production "
        "is contacted only when every device ended ok or changed on the twin; else the run "
        "ends rehearsal_failed. A twin that is not up fails the occurrence the same way. "
        "With approval: required, the preview shows the rehearsal beside its diff."),
        max_length=100, json_schema_extra={"pattern": TWIN_NAME.pattern})
    approval_timeout: str | float = Field(
        "8h", description="How long a preview waits for approval before it expires: "
                          "seconds, or '90m', '8h', '1d'.")
    supersede: bool = Field(False, description=(
        "With approval: required, a newer preview of the job rejects the older ones still "
        "awaiting approval (recorded: superseded by the newer run), so one decision is "
        "waiting instead of a pile of them."))
    overlap: Overlap = Field(
        Overlap.SKIP, description="A previous run still going when the next is due: skip the new "
                            "occurrence, or queue one to start when it ends.")
    on_blackout: OnBlackout = Field(OnBlackout.SKIP, description=(
        "An occurrence due inside a blackout window: skip it (recorded as skipped: "
        "blackout NAME), or defer it to the window's end (one run, however many were due)."))

    _zone = field_validator("timezone")(_t.checked_zone)
    _cron = field_validator("cron")(_t.checked_cron)

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: str | IntervalSpec | None) -> str | IntervalSpec | None:
        seconds = _t.parse_interval(value) if isinstance(value, str) else \
            value.total if value is not None else 1
        if seconds < 1:
            raise ValueError("the interval must be at least 1 second")
        return value

    @field_validator("rehearse")
    @classmethod
    def _twin(cls, value: str | None) -> str | None:
        if value is not None and not TWIN_NAME.match(value):
            raise ValueError(f"{value!r} is not a twin's name (letters, digits, '.', '_', "
                             "'-') nor `required`")
        return value

    def twin(self, default: str = DEFAULT_TWIN) -> str | None:
        """The twin every run rehearses on: `rehearse:`'s name, `default` for required."""
        return default if self.rehearse == REHEARSE_REQUIRED else self.rehearse

    @field_validator("approval_timeout")
    @classmethod
    def _window(cls, value: str | float) -> str | float:
        seconds = _t.parse_interval(value) if isinstance(value, str) else value
        if seconds < 5:
            raise ValueError("the approval window must be at least 5 seconds")
        return value

    @property
    def approval_seconds(self) -> float:
        window = self.approval_timeout
        return _t.parse_interval(window) if isinstance(window, str) else float(window)

    @model_validator(mode="after")
    def _check(self) -> ScheduleSpec:
        given = [k for k in ("cron", "interval", "at") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of cron, interval, at")
        if self.start and self.end and self.aware(self.start) >= self.aware(self.end):
            raise ValueError("start must be before end")
        if self.at is not None and (
                (self.start and self.aware(self.at) < self.aware(self.start))
                or (self.end and self.aware(self.at) > self.aware(self.end))):
            raise ValueError("at is outside the start/end window: it would never fire")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def aware(self, moment: datetime) -> datetime:
        return moment if moment.tzinfo else moment.replace(tzinfo=self.zone)

    @property
    def interval_seconds(self) -> float:
        if isinstance(self.interval, str):
            return _t.parse_interval(self.interval)
        assert self.interval is not None
        return self.interval.total

    def trigger(self) -> Trigger:
        """The occurrences, limited to start..end (both inclusive) whatever the kind."""
        start = self.aware(self.start) if self.start else None
        end = self.aware(self.end) if self.end else None
        inner: Trigger
        if self.cron is not None:
            inner = _t.CronSchedule(self.cron, self.zone)
        elif self.interval is not None:
            # an interval counts from its start: occurrences are start + k*interval
            inner = _t.IntervalSchedule(self.interval_seconds,
                                        (start or _t.EPOCH).astimezone(UTC))
        else:
            assert self.at is not None
            inner = _t.AtSchedule(self.aware(self.at))
        return _t.Window(inner, start, end) if start or end else inner
