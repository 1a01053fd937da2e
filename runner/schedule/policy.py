"""Firing policies as pure functions of (trigger, state, now): which occurrences run, which
are missed and why; and the overlap rule for one job. Tested with literal date-times."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from runner.job.triggers import Trigger
from runner.vocab import Overlap


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
