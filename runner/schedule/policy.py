"""Firing policies as pure functions of (trigger, state, now): which occurrences run, which
are missed and why; the overlap rule for one job; what a blackout window makes of a start;
which devices a freshness job backs up next. Tested with literal date-times."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from runner.job.blackouts import HORIZON, Calendar
from runner.job.triggers import Trigger
from runner.vocab import OnBlackout, Overlap


def is_occurrence(trigger: Trigger, moment: datetime | None) -> bool:
    """Whether `moment` is one of the trigger's fire times (None: the trigger is done)."""
    if moment is None:
        return True
    return trigger.next_after(moment - timedelta(microseconds=1)) == moment


@dataclass
class Decision:
    run: list[datetime] = field(default_factory=list)
    missed: list[tuple[datetime, str]] = field(default_factory=list)
    next_fire: datetime | None = None


def due(trigger: Trigger, next_fire: datetime | None, now: datetime, misfire_grace: float,
        coalesce: bool, limit: int = 10_000) -> Decision:
    """Occurrences from `next_fire` up to `now`: run the ones within grace (only the last
    when coalescing), record the others with the reason they did not run."""
    decision = Decision()
    occurrences: list[datetime] = []
    moment = next_fire
    while moment is not None and moment <= now and len(occurrences) < limit:
        occurrences.append(moment)
        moment = trigger.next_after(moment)
    decision.next_fire = moment
    fresh = []
    for occurrence in occurrences:
        late = (now - occurrence).total_seconds()
        if late > misfire_grace:
            decision.missed.append((occurrence, f"misfired: {late:.0f}s late, more than "
                                                f"misfire_grace {misfire_grace:g}s"))
        else:
            fresh.append(occurrence)
    if coalesce and len(fresh) > 1:
        keep = fresh[-1]
        decision.missed += [(o, f"coalesced into {keep.isoformat()}") for o in fresh[:-1]]
        fresh = [keep]
    decision.run = fresh
    decision.missed.sort()
    return decision


@dataclass
class Slot:
    """One job's runs: at most one at a time; overlap 'skip' or 'queue' (one waiting)."""

    overlap: Overlap
    running: datetime | None = None
    queued: datetime | None = None

    def offer(self, occurrence: datetime) -> str:
        """'start', 'queued', or 'skipped: <reason>'."""
        if self.running is None:
            self.running = occurrence
            return "start"
        if self.overlap == Overlap.QUEUE and self.queued is None:
            self.queued = occurrence
            return "queued"
        waiting = f", and {self.queued.isoformat()} is queued" if self.queued else ""
        return f"skipped: the run of {self.running.isoformat()} is still going{waiting}"

    def finished(self) -> datetime | None:
        """The queued occurrence to start now, if any."""
        self.running, self.queued = self.queued, None
        return self.running


# -- blackout windows -----------------------------------------------------------------------


@dataclass(frozen=True)
class Held:
    """An occurrence (or event) due inside a blackout window: skipped, or deferred to
    `until` (None: skipped, also when no end comes within the horizon)."""

    windows: tuple[str, ...]
    reason: str
    until: datetime | None = None


def blackout_fate(calendar: Calendar, job: str, changes: bool, moment: datetime,
                  on_blackout: OnBlackout) -> Held | None:
    """What a fleet-wide blackout window makes of a start due at `moment` (None: it
    starts). Device-scoped windows do not hold a start: its run skips those devices."""
    held = calendar.fleet_hold(moment, job, changes)
    if not held:
        return None
    names = tuple(a.name for a in held)
    text = "blackout " + "; ".join(a.text() for a in held)
    if on_blackout is OnBlackout.DEFER:
        until = calendar.clear_at(moment, job, changes)
        if until is not None:
            return Held(names, f"{text}: deferred to {until.isoformat()}", until)
        return Held(names, f"{text}: no end within {HORIZON.days} days to defer it to")
    return Held(names, text)


def next_clear(trigger: Trigger, calendar: Calendar, job: str, changes: bool,
               on_blackout: OnBlackout, after: datetime,
               count: int) -> tuple[list[datetime], list[tuple[datetime, Held]]]:
    """The next `count` times the job really starts after `after` (occurrences in a window
    skipped, or moved to its end when deferred: several deferred to one end start once),
    and the occurrences held on the way (the first few of each window)."""
    times: list[datetime] = []
    held: list[tuple[datetime, Held]] = []
    moment = trigger.next_after(after)
    steps = 0
    while moment is not None and len(times) < count and steps < 10_000:
        steps += 1
        fate = blackout_fate(calendar, job, changes, moment, on_blackout)
        if fate is None:
            times.append(moment)
            moment = trigger.next_after(moment)
            continue
        if len(held) < 20:
            held.append((moment, fate))
        if fate.until is not None and fate.until not in times:
            times.append(fate.until)
        # the window's end: the next occurrence at or after it (no walk through the window)
        end = calendar.clear_at(moment, job, changes)
        if end is None:
            break
        moment = trigger.next_after(end - timedelta(microseconds=1))
    return sorted(times)[:count], held


# -- backup freshness -----------------------------------------------------------------------


@dataclass(frozen=True)
class FreshPlan:
    """One planning round of a freshness job: the devices to back up now, the next
    round's time, and why the fleet cannot be covered in time, if it cannot."""

    hosts: list[str]
    next_plan: datetime
    warning: str | None = None
    urgent: int = 0  # of `hosts`, those retried after a failure or never backed up


class AgeLike(Protocol):
    @property
    def last_good(self) -> datetime | None: ...

    @property
    def failing(self) -> bool: ...


def round_seconds(freshness_s: float) -> float:
    """How often a freshness job is planned: a twentieth of its freshness, 5 s to 5 min."""
    return min(300.0, max(5.0, freshness_s / 20))


def plan_freshness(hosts: list[str], ages: Mapping[str, AgeLike], now: datetime,
                   freshness_s: float, rate: float | None, busy: set[str] | None = None,
                   since: float | None = None) -> FreshPlan:
    """Which devices to back up now so that none's newest good backup gets older than
    `freshness_s`: failures retried first, then devices never backed up, then those that
    would pass three quarters of the freshness before the next round, then the oldest, up
    to the share of the fleet that keeps the load even over the interval (a fleet all
    backed up at once spreads out again). `rate`: the devices per second the job's runs
    measured; `busy`: devices a run has now; `since`: seconds since the last round (a round
    waits for the previous round's run: a longer gap takes a larger share)."""
    step = max(round_seconds(freshness_s), since or 0.0)
    target = 0.75 * freshness_s
    busy = busy or set()
    failing, never, urgent, rest = [], [], [], []
    for host in hosts:
        if host in busy:
            continue
        age = ages.get(host)
        good = age.last_good if age is not None else None
        old = float("inf") if good is None else (now - good).total_seconds()
        if age is not None and age.failing and old >= target - step:
            failing.append((old, host))
        elif good is None:
            never.append((old, host))
        elif old >= target - step:
            urgent.append((old, host))
        else:
            rest.append((old, host))
    share = math.ceil(len(hosts) * step / target) if hosts else 0
    chosen = [h for _, h in sorted(failing, reverse=True)] + [h for _, h in never] + \
        [h for _, h in sorted(urgent, reverse=True)]
    first = len(failing) + len(never)
    wanted = share + len(failing)  # retries come on top of the fleet's share
    if len(chosen) < wanted:
        chosen += [h for _, h in sorted(rest, reverse=True)[:wanted - len(chosen)]]
    warning = None
    needed = len(hosts) / freshness_s if freshness_s else 0.0
    if rate is not None and hosts and rate < needed:
        warning = (f"{len(hosts)} devices every {freshness_s:g}s needs {needed:.2f} backups/s; "
                   f"the job's runs manage {rate:.2f}/s: raise its concurrency, add workers "
                   f"(--engine celery) or lengthen its freshness")
    return FreshPlan(chosen, now + timedelta(seconds=round_seconds(freshness_s)), warning,
                     first)
