"""Read-side queries for the operator's views (issue 27): a run's reruns, previews waiting
for approval (the count in the web's navigation, older ones of a job to supersede), the
devices of a running run at work now that have no record yet."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from runner.records import now_iso
from runner.store.results import ResultsStore, devices, runs
from runner.vocab import RunStatus


def reruns_of(store: ResultsStore, run_id: str) -> list[dict[str, Any]]:
    """The runs started as reruns of `run_id`, oldest first."""
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(
            select(runs.c.run_id, runs.c.status, runs.c.started, runs.c.started_by)
            .where(runs.c.rerun_of == run_id).order_by(runs.c.started))]


def pending_approvals(store: ResultsStore) -> int:
    """Previews awaiting approval whose window has not passed."""
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(runs).where(
            runs.c.status == RunStatus.AWAITING_APPROVAL,
            runs.c.approval_deadline > now_iso())).scalar() or 0)


def waiting_previews(store: ResultsStore, job: str) -> list[str]:
    """A job's previews awaiting approval, oldest first."""
    with store.engine.connect() as conn:
        return [str(r[0]) for r in conn.execute(
            select(runs.c.run_id).where(runs.c.job == job,
                                        runs.c.status == RunStatus.AWAITING_APPROVAL)
            .order_by(runs.c.started))]


def working(store: ResultsStore, run_id: str) -> dict[str, str]:
    """The devices of a running run at work now, and when each started (in the order they
    started; at most results.MAX_WORKING)."""
    with store.engine.connect() as conn:
        found = conn.execute(select(runs.c.working).where(runs.c.run_id == run_id)).scalar()
    return dict(found or {})


def still_working(store: ResultsStore, run_id: str) -> dict[str, str]:
    """Those of working() that have no record yet: the run's devices at work are read, not
    its targets or its records (a run of 100,000 devices reads at most MAX_WORKING)."""
    at_work = working(store, run_id)
    hosts = list(at_work)
    recorded: set[str] = set()
    with store.engine.connect() as conn:
        for at in range(0, len(hosts), 500):
            recorded.update(str(r[0]) for r in conn.execute(select(devices.c.host).where(
                devices.c.run_id == run_id, devices.c.host.in_(hosts[at:at + 500]))))
    return {h: at_work[h] for h in hosts if h not in recorded}
