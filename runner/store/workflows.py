"""Workflow runs in the schedule store: one row per occurrence (or event) of a job that
others follow, made in the same transaction as that occurrence's claim, with the graph as
it was then; its steps are events (runner.store.events, source workflow) keyed by the
workflow, so each child starts once however many servers look. What a step's run came to
is read from the results store (an approved preview follows the run that carried it out)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import JSON, Column, MetaData, String, Table, insert, select, update
from sqlalchemy.engine import Connection, Engine

from runner.store.events import events
from runner.store.results import ResultsStore, runs
from runner.store.schedule import occurrences
from runner.vocab import OccurrenceStatus, RunStatus, WorkflowStatus

metadata = MetaData()
workflows = Table(
    "workflows", metadata,
    Column("id", String(32), primary_key=True),
    Column("origin", String(300), nullable=False, unique=True),  # ROOT@OCCURRENCE-or-EVENT
    Column("root", String(200), nullable=False, index=True),
    # the root's claim: an occurrence (its UTC time) or an event's key
    Column("root_key", String(200), nullable=False),
    Column("root_run", String(32)),
    Column("graph", JSON, nullable=False),  # runner.job.workflow.Graph.to_json()
    Column("status", String(20), nullable=False, index=True),  # a WorkflowStatus
    Column("started", String(40), nullable=False, index=True),
    Column("finished", String(40)),
)
# A step whose claim row ended so, with no run of its own to read.
_NOT_RUN: dict[str, str] = {OccurrenceStatus.SKIPPED: "not run", OccurrenceStatus.MISSED: "not run",
            OccurrenceStatus.FAILED: "failed", OccurrenceStatus.INTERRUPTED: "interrupted"}


def new_workflow_id() -> str:
    return "wf" + uuid.uuid4().hex[:10]


def insert_workflow(conn: Connection, workflow_id: str, root: str, root_key: str,
                    root_run: str | None, graph: dict[str, Any], started: str) -> None:
    """Record a workflow run (inside the root's claim transaction)."""
    conn.execute(insert(workflows).values(
        id=workflow_id, origin=f"{root}@{root_key}"[:300], root=root, root_key=root_key,
        root_run=root_run, graph=graph, status=WorkflowStatus.RUNNING, started=started))


class Workflows:
    """The schedule store's workflow runs (`engine`: ScheduleStore.engine)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def running(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(
                select(workflows).where(workflows.c.status == WorkflowStatus.RUNNING)
                .order_by(workflows.c.started))]

    def finish(self, workflow_id: str, status: WorkflowStatus, finished: str) -> bool:
        with self.engine.begin() as conn:
            return bool(conn.execute(update(workflows).where(
                workflows.c.id == workflow_id,
                workflows.c.status == WorkflowStatus.RUNNING).values(
                status=status, finished=finished)).rowcount)

    def get(self, workflow_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(workflows).where(
                workflows.c.id.startswith(workflow_id, autoescape=True)).limit(2)).all()
        return dict(row[0]._mapping) if len(row) == 1 else None

    def root_claim(self, workflow: dict[str, Any]) -> dict[str, Any] | None:
        """The row that claimed the workflow's root: its event, or its occurrence."""
        job, key = workflow["root"], workflow["root_key"]
        with self.engine.connect() as conn:
            row = conn.execute(select(events).where(events.c.job == job,
                                                    events.c.key == key)).first()
            if row is None:
                row = conn.execute(select(occurrences).where(
                    occurrences.c.job == job, occurrences.c.occurrence == key)).first()
        return dict(row._mapping) if row is not None else None

    def recent(self, limit: int = 50, root: str | None = None) -> list[dict[str, Any]]:
        query = select(workflows).order_by(workflows.c.started.desc()).limit(limit)
        if root is not None:
            query = query.where(workflows.c.root == root)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]


def run_outcomes(results: ResultsStore, run_ids: Iterable[str]) -> dict[str, str | None]:
    """What each run came to, for a workflow: ok, failed, interrupted; rejected or expired
    (a preview nobody carried out); None while it goes on (running, awaiting approval, an
    approved change being carried out). Runs not (yet) recorded are left out."""
    ids = [r for r in run_ids if r]
    if not ids:
        return {}
    with results.engine.connect() as conn:
        found = {r.run_id: r.status for r in conn.execute(
            select(runs.c.run_id, runs.c.status).where(runs.c.run_id.in_(ids)))}
        carried = {r.approves: r.status for r in conn.execute(
            select(runs.c.approves, runs.c.status).where(runs.c.approves.in_(ids)))}
    out: dict[str, str | None] = {}
    for run_id, stored in found.items():
        status: str | None = stored
        if stored == RunStatus.APPROVED:
            later = carried.get(run_id)
            status = later if later not in (None, RunStatus.RUNNING) else None
        elif stored in (RunStatus.RUNNING, RunStatus.AWAITING_APPROVAL):
            status = None
        out[run_id] = None if status is None else str(status)
    return out


def step_outcome(status: str, run_id: str | None, reason: str | None,
                 outcomes: dict[str, str | None]) -> str | None:
    """A step's (or the root's) outcome from its claim row and its run: None while it may
    still run; 'blacked out' or 'not run' when it never ran."""
    if run_id and run_id in outcomes:
        return outcomes[run_id]
    if status in (OccurrenceStatus.PENDING, OccurrenceStatus.RUNNING,
                  OccurrenceStatus.AWAITING_APPROVAL):
        return None  # going, or its run not recorded yet
    if status == OccurrenceStatus.DEFERRED:
        return None  # its deferred run is an event of its own; the workflow waits
    if reason and reason.startswith("blackout"):
        return "blacked out"
    return _NOT_RUN.get(status, "not run")


def runs_brief(results: ResultsStore, run_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Each run's status, start and end, and for an approved preview the status of the
    run that carried it out (`carried`)."""
    ids = [r for r in run_ids if r]
    if not ids:
        return {}
    with results.engine.connect() as conn:
        found = {r.run_id: {"status": r.status, "started": r.started, "finished": r.finished,
                            "carried": None} for r in conn.execute(
            select(runs.c.run_id, runs.c.status, runs.c.started, runs.c.finished)
            .where(runs.c.run_id.in_(ids)))}
        for approves, status in conn.execute(select(runs.c.approves, runs.c.status)
                                             .where(runs.c.approves.in_(ids))):
            found[approves]["carried"] = status
    return found
