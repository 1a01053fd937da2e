"""Whether schedules are being kept, as the CLI, the web and the API tell it: is a scheduler
running (its lease, its last heartbeat; stale when it lapsed), which occurrences came due
with no scheduler to fire them, which schedules are paused (and pausing or resuming one),
and which job files are invalid with what `runner serve` does with each."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runner.errors import InputError, NotFound
from runner.schedule.jobsdir import JobsDir, Scheduled
from runner.schedule.policy import is_occurrence
from runner.store.schedule import ScheduleStore

MAX_OVERDUE = 20  # occurrences listed as missed while no scheduler runs, per job


def _iso(epoch: float | None) -> str | None:
    return datetime.fromtimestamp(epoch, UTC).isoformat() if epoch is not None else None


def scheduler_status(store: ScheduleStore, now: datetime | None = None) -> dict[str, Any]:
    """`GET /api/scheduler`: `running` (a scheduler holds an unexpired lease), its
    `holder` (host:pid), its last `heartbeat` and when the lease `expires` (UTC ISO),
    `stale` (a lease left behind that lapsed: its holder stopped without releasing it)."""
    now = now or datetime.now(UTC)
    found = store.lease_state()
    if found is None:
        return {"running": False, "holder": None, "heartbeat": None, "expires": None,
                "stale": False, "heartbeat_age_s": None,
                "detail": "no scheduler holds the lease: runner serve is not running "
                          "(or stopped cleanly)"}
    running = found["expires"] >= now.timestamp()
    beat = found.get("renewed")
    age = round(now.timestamp() - beat, 1) if beat is not None else None
    return {"running": running, "holder": found["owner"], "heartbeat": _iso(beat),
            "expires": _iso(found["expires"]), "stale": not running,
            "heartbeat_age_s": age,
            "detail": f"{found['owner']} is the active scheduler" if running else
            f"the lease of {found['owner']} lapsed at {_iso(found['expires'])}: no scheduler "
            "is running"}


def overdue(sched: Scheduled, store: ScheduleStore, now: datetime,
            status: dict[str, Any]) -> list[dict[str, Any]]:
    """Occurrences of a scheduled job that came due with no scheduler running to fire
    them (from its stored next fire time up to now): `runner serve` records them as
    missed (or runs them within misfire_grace) when it starts."""
    if status["running"]:
        return []
    known, moment = store.next_fire(sched.name, sched.key)
    if not known or moment is None or not is_occurrence(sched.trigger, moment):
        return []
    why = status["detail"]
    out: list[dict[str, Any]] = []
    while moment is not None and moment <= now and len(out) < MAX_OVERDUE:
        out.append({"occurrence": moment.astimezone(UTC).isoformat(), "status": "missed",
                    "reason": f"due with no scheduler running ({why})"})
        moment = sched.trigger.next_after(moment)
    return list(reversed(out))


def invalid_files(jobs_dir: Path, store: ScheduleStore,
                  status: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Each invalid job file: `file`, its `error` (file:line: field: problem), and what
    `runner serve` does with it (`serve`: keeps firing its previous version of `kept`, or
    leaves it out), as the active scheduler recorded it."""
    jobs = JobsDir(jobs_dir)
    jobs.reload()
    recorded = store.invalid_files()
    status = status or scheduler_status(store)
    out = []
    for path, error, _ in jobs.invalid():
        seen = recorded.get(str(path.resolve()))
        if not status["running"]:
            effect = "not scheduled: no scheduler is running"
            kept = None
        elif seen is not None and seen.get("kept"):
            kept = seen["kept"]
            effect = (f"runner serve ({seen['server']}) keeps firing the previous version "
                      f"of {kept} until the file is valid again")
        elif seen is not None:
            kept = None
            effect = f"runner serve ({seen['server']}) leaves it out: not scheduled"
        else:
            kept = None
            effect = "runner serve has not read this version yet (it reloads within seconds)"
        out.append({"file": str(path), "error": error, "kept": kept, "serve": effect})
    return out


def _scheduled(jobs_dir: Path, name: str) -> str:
    jobs = JobsDir(jobs_dir)
    jobs.reload()
    if not name.strip():
        raise InputError("an empty name names no schedule", field="job")
    if name in jobs.jobs:
        return name
    for sched in jobs.jobs.values():
        if sched.job.path.stem == name:
            return sched.name
    known = ", ".join(sorted(jobs.jobs)) or "none"
    raise NotFound(f"no scheduled job named {name!r} in {jobs_dir} (scheduled: {known})",
                   field="job")


def pause(jobs_dir: Path, store: ScheduleStore, name: str, by: str,
          reason: str | None = None) -> dict[str, Any]:
    """Pause a scheduled job: every `runner serve` on this store records its occurrences
    as skipped (who paused it, why) until it is resumed."""
    job = _scheduled(jobs_dir, name)
    row = store.pause(job, by, datetime.now(UTC), (reason or "").strip() or None)
    return {"job": job, "paused": True, "paused_by": row["paused_by"],
            "paused_at": row["paused_at"], "reason": row["reason"]}


def resume(store: ScheduleStore, name: str) -> dict[str, Any]:
    """Resume a paused schedule: its next occurrence fires as usual."""
    if name not in store.paused():
        raise NotFound(f"schedule {name!r} is not paused", field="job")
    store.resume(name)
    return {"job": name, "paused": False}
