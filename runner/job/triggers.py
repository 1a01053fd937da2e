"""Schedule triggers with standard cron semantics on top of APScheduler 3's calendar math.

Standard cron differs from APScheduler's CronTrigger in three ways this module fixes:
weekdays count from Sunday=0 (7 is Sunday too), a job restricting both day-of-month and
day-of-week runs when *either* matches, and across DST changes fixed-time jobs run once
(a time repeated by the autumn change fires the first time only; a time skipped by the
spring change fires right after the gap), while jobs with a wildcard hour follow real time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

if TYPE_CHECKING:  # APScheduler loads when a schedule is computed, not with every job file
    from apscheduler.triggers.cron import CronTrigger

MACROS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
DAY_NAMES = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
MONTH_NAMES = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov",
               "dec"]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class Trigger(Protocol):
    def next_after(self, moment: datetime) -> datetime | None:
        """The first fire time strictly after `moment` (aware), or None when done."""

    def describe(self) -> str: ...


@dataclass(frozen=True)
class Window:
    """A trigger limited to [start, end], both inclusive, the same way for cron, interval
    and at. (APScheduler's CronTrigger ignores its start_date once given a previous fire
    time, which is how runner walks occurrences: so the window is applied here.)"""

    inner: Trigger
    start: datetime | None = None
    end: datetime | None = None

    def next_after(self, moment: datetime) -> datetime | None:
        if self.start is not None and moment < self.start:
            moment = self.start - timedelta(microseconds=1)  # the start itself may fire
        found = self.inner.next_after(moment)
        if found is None or (self.end is not None and found > self.end):
            return None
        return found

    def describe(self) -> str:
        text = self.inner.describe()
        fmt = "%Y-%m-%d %H:%M %Z"
        if self.start is not None:
            text += f", from {self.start.strftime(fmt)}"
        if self.end is not None:
            text += f", until {self.end.strftime(fmt)}"
        return text


def _expand(field: str, low: int, high: int, names: list[str] | None, base: int) -> set[int]:
    """Values of one cron field (numbers, names, ranges, steps, lists)."""
    values: set[int] = set()
    for item in field.split(","):
        step = 1
        part = item
        if "/" in item:
            part, step_text = item.split("/", 1)
            if not step_text.isdigit() or int(step_text) == 0:
                raise ValueError(f"bad step {step_text!r}")
            step = int(step_text)

        def number(token: str) -> int:
            token = token.lower()
            if names and token in names:
                return names.index(token) + base
            if not token.isdigit():
                raise ValueError(f"{token!r} is not a number"
                                 + (f" or a name ({', '.join(names)})" if names else ""))
            return int(token)

        if part == "*":
            start, end = low, high
        elif "-" in part:
            a, b = part.split("-", 1)
            start, end = number(a), number(b)
        else:
            start = end = number(part)
            if step != 1:
                end = high
        if not (low <= start <= high and low <= end <= high) or start > end:
            raise ValueError(f"{part!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return values


def _aps_field(values: set[int], low: int, high: int) -> str:
    return "*" if values == set(range(low, high + 1)) else ",".join(map(str, sorted(values)))


@dataclass(frozen=True)
class CronSchedule:
    expression: str
    timezone: ZoneInfo

    def __post_init__(self) -> None:
        self._triggers()  # validate early

    def _triggers(self) -> list[CronTrigger]:
        from apscheduler.triggers.cron import CronTrigger

        expr = MACROS.get(self.expression.strip().lower(), self.expression)
        fields = expr.split()
        if len(fields) != 5:
            raise ValueError("a cron expression has 5 fields: minute hour day-of-month month "
                             "day-of-week (or @daily, @hourly, ...)")
        minute, hour, dom, month, dow = fields
        specs = (("minute", minute, 0, 59, None, 0), ("hour", hour, 0, 23, None, 0),
                 ("day-of-month", dom, 1, 31, None, 1),
                 ("month", month, 1, 12, MONTH_NAMES, 1),
                 # Standard cron: Sunday is 0 and 7; APScheduler counts Monday=0..Sunday=6.
                 ("day-of-week", dow, 0, 7, DAY_NAMES, 0))
        sets = []
        for label, text, low, high, names, base in specs:
            try:
                sets.append(_expand(text.lower(), low, high, names, base))
            except ValueError as exc:
                raise ValueError(f"cron {label} field {text!r}: {exc}") from None
        std = sets[4]
        aps_dow = {(d - 1) % 7 for d in std}
        common = {"minute": _aps_field(sets[0], 0, 59), "hour": _aps_field(sets[1], 0, 23),
                  "month": _aps_field(sets[3], 1, 12), "timezone": self.timezone}
        dom_f, dow_f = _aps_field(sets[2], 1, 31), _aps_field(aps_dow, 0, 6)
        if dom != "*" and dow != "*":  # either may match: two triggers
            return [CronTrigger(day=dom_f, **common), CronTrigger(day_of_week=dow_f, **common)]
        return [CronTrigger(day=dom_f, day_of_week=dow_f, **common)]

    @property
    def fixed_hour(self) -> bool:
        expr = MACROS.get(self.expression.strip().lower(), self.expression)
        return expr.split()[1] != "*"

    def _raw_next(self, moment: datetime) -> datetime | None:
        found: list[datetime | None] = [t.get_next_fire_time(moment, moment)
                                        for t in self._triggers()]
        times = [f for f in found if f is not None]
        return min(times, key=lambda d: d.astimezone(UTC)) if times else None

    def next_after(self, moment: datetime) -> datetime | None:
        moment = moment.astimezone(self.timezone)
        while True:
            candidate = self._raw_next(moment)
            if candidate is None:
                return None
            utc = candidate.astimezone(UTC)
            wall = candidate.replace(tzinfo=None)
            back = utc.astimezone(self.timezone)
            if back.replace(tzinfo=None) != wall:
                # The wall time does not exist (spring gap): fire right after the gap.
                return self._gap_end(utc, wall)
            if self.fixed_hour and back.fold == 1:
                # Repeated hour (autumn): a fixed-time job already ran at fold 0.
                moment = back
                continue
            return utc

    def _gap_end(self, utc: datetime, wall: datetime) -> datetime:
        step = timedelta(minutes=1)
        while (utc - step).astimezone(self.timezone).replace(tzinfo=None) > wall:
            utc -= step
        return utc

    def describe(self) -> str:
        expr = MACROS.get(self.expression.strip().lower(), self.expression)
        words = {"0 0 * * *": "every day at 00:00", "0 * * * *": "every hour",
                 "0 0 * * 0": "every Sunday at 00:00", "0 0 1 * *": "monthly on day 1"}
        minute, hour, dom, month, dow = expr.split()
        if expr in words:
            text = words[expr]
        elif minute.isdigit() and hour.isdigit():
            when = f"at {int(hour):02d}:{int(minute):02d}"
            days = "every day"
            if dow != "*":
                names = sorted(_expand(dow, 0, 7, DAY_NAMES, 0), key=lambda d: (d - 1) % 7)
                days = "on " + ", ".join(DAY_NAMES[d % 7].capitalize() for d in names)
            if dom != "*":
                days = f"on day {dom} of the month" + ("" if dow == "*" else f" or {days[3:]}")
            text = f"{days} {when}" + ("" if month == "*" else f" in month {month}")
        else:
            text = f"cron '{expr}'"
        return f"{text} ({self.timezone.key})"


@dataclass(frozen=True)
class IntervalSchedule:
    seconds: float
    anchor: datetime  # occurrences are anchor + k*interval: the same on every server

    def next_after(self, moment: datetime) -> datetime | None:
        from apscheduler.triggers.interval import IntervalTrigger

        trigger = IntervalTrigger(seconds=self.seconds, start_date=self.anchor, timezone=UTC)
        found: datetime | None = trigger.get_next_fire_time(
            None, moment.astimezone(UTC) + timedelta(microseconds=1))
        return found.astimezone(UTC) if found else None

    def describe(self) -> str:
        n = self.seconds
        for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
            if n >= size and n % size == 0:
                count = int(n // size)
                return f"every {count} {unit}{'s' if count > 1 else ''}"
        return f"every {n:g} second{'s' if n != 1 else ''}"


@dataclass(frozen=True)
class AtSchedule:
    when: datetime

    def next_after(self, moment: datetime) -> datetime | None:
        from apscheduler.triggers.date import DateTrigger

        trigger = DateTrigger(run_date=self.when)
        found: datetime | None = trigger.get_next_fire_time(None, moment)
        if found is None or found <= moment:
            return None
        return found.astimezone(UTC)

    def describe(self) -> str:
        return f"once at {self.when.isoformat()}"


def parse_interval(text: str) -> float:
    """'30s', '5m', '2h', '1d' or '1h30m' -> seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([smhd])", text.strip().lower())
    if not parts or "".join(f"{n}{u}" for n, u in parts) != re.sub(r"\s", "", text.lower()):
        raise ValueError(f"{text!r} is not an interval like 30s, 5m, 2h, 1d or 1h30m")
    return sum(float(n) * UNITS[u] for n, u in parts)


def checked_zone(value: str) -> str:
    """A `timezone:` field's value, if it names an IANA zone (pydantic names the field)."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not an IANA time zone such as "
                         "Europe/Amsterdam") from None
    return value


def checked_cron(value: str | None) -> str | None:
    """A `cron:` field's value, if it parses (ValueError naming the bad part otherwise)."""
    if value is not None:
        CronSchedule(value, ZoneInfo("UTC"))
    return value
