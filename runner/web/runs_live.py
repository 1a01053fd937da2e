"""A run as it goes, and its reruns: the JSON document the run page polls (its device
grid, the devices that did not end ok, those at work with how long each has been at it,
how many wait for their turn), and rerunning a finished run's failed devices (or those
of chosen statuses) from the run page or `POST /api/runs/ID/rerun`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, ConfigDict, Field

from runner.errors import InputError
from runner.store.queries import device_rows, run_head, status_counts
from runner.store.results import ResultsStore
from runner.store.runlinks import reruns_of, still_working
from runner.vocab import DeviceStatus, RunStatus
from runner.web.auth import Principal, operator, viewer
from runner.web.pages import FormOperator
from runner.web.services import services

api = APIRouter(prefix="/api")
pages = APIRouter(include_in_schema=False)
Viewer = Annotated[Principal, Depends(viewer)]
Operator = Annotated[Principal, Depends(operator)]
LIVE_DEVICES = 500  # the grid's devices in one answer (the page's first page)
LIVE_FAILED = 100
LIVE_WORKING = 200


class RerunRequest(BaseModel):
    """Which devices of a finished run to run again."""

    model_config = ConfigDict(extra="forbid")
    status: list[DeviceStatus] | None = Field(None, description=(
        "Only its devices that ended with these statuses (default: every device that did "
        "not end ok or changed)."))
    dry_run: bool = Field(False, description="Render and diff, send nothing.")


def _elapsed(started: str | None, now: datetime) -> float | None:
    try:
        return round((now - datetime.fromisoformat(started or "")).total_seconds(), 1)
    except ValueError:
        return None


def live_document(store: ResultsStore, run_id: str) -> dict[str, Any]:
    """What the run page shows, now: counts, the grid (failed first), the devices that did
    not end ok, the devices still in progress with their elapsed time, the reruns."""
    # counts and the first page of devices from the database; of the devices without a
    # record, those at work (at most MAX_WORKING); the rest is a count: a run of 100,000
    # devices is never read whole (neither its targets nor its records) per poll
    head = run_head(store, run_id, hosts=False)
    full = head["run_id"]
    counts = status_counts(store, [full])[full]
    done = sum(counts.values())
    total = head["host_count"] or done
    rows = device_rows(store, full, None, LIVE_DEVICES, 0)
    now = datetime.now(UTC)
    working: list[dict[str, Any]] = []
    waiting = 0
    if head["status"] == RunStatus.RUNNING and total > done:
        at_work = still_working(store, full)  # host -> when it started, in that order
        working = [{"host": h, "started": started, "elapsed_s": _elapsed(started, now)}
                   for h, started in at_work.items()]
        waiting = max(0, total - done - len(working))
    return {
        "run_id": full, "job": head["job"], "status": head["status"],
        "dry_run": head["dry_run"], "started": head["started"], "finished": head["finished"],
        "elapsed_s": _elapsed(head["started"], now) if not head["finished"] else None,
        "total": total, "done": done, "summary": counts,
        "devices": [{k: r[k] for k in ("host", "status", "error_class", "changed")}
                    for r in rows],
        "more_devices": max(0, done - len(rows)),
        "failed": [{k: r[k] for k in ("host", "status", "error_class", "error", "duration_s")}
                   for r in rows if not DeviceStatus(r["status"]).worked][:LIVE_FAILED],
        "in_progress": working[:LIVE_WORKING], "in_progress_total": len(working),
        "waiting": waiting,
        "reruns": reruns_of(store, full)}


@api.get("/runs/{run_id}/live", summary="A run as it goes: counts, its devices (failed "
         "first), those that did not end ok, those still in progress and for how long")
def live(request: Request, run_id: str, _who: Viewer) -> dict[str, Any]:
    return live_document(services(request).results, run_id)


def _rerun(request: Request, run_id: str, by: str, statuses: list[DeviceStatus] | None,
           dry_run: bool) -> Any:
    svc = services(request)
    head = run_head(svc.results, run_id, hosts=False)
    if head["status"] in (RunStatus.RUNNING, RunStatus.AWAITING_APPROVAL):
        raise InputError(f"run {head['run_id']} is {head['status']}: only a finished run's "
                         "devices can be run again", field="run_id")
    if statuses is not None and not statuses:
        raise InputError("status: name at least one device status (or leave it out for "
                         "every device that did not end ok or changed)", field="status")
    return head, svc.launcher.start(head["job"], dry_run=dry_run, by=by,
                                    rerun_of=head["run_id"], statuses=statuses)


@api.post("/runs/{run_id}/rerun", status_code=202, summary="Run a finished run's failed "
          "devices again (or those that ended with the given statuses) (operators)")
def rerun(request: Request, response: Response, run_id: str, who: Operator,
          body: RerunRequest | None = None) -> dict[str, Any]:
    body = body or RerunRequest()
    head, started = _rerun(request, run_id, who.label, body.status, body.dry_run)
    response.headers["Location"] = f"/api/runs/{started.run_id}"
    return {"run_id": started.run_id, "rerun_of": head["run_id"], "job": head["job"],
            "dry_run": started.dry_run, "awaiting_approval": started.preview,
            "status": RunStatus.RUNNING, "started_by": who.label,
            "url": f"/api/runs/{started.run_id}"}


@pages.post("/runs/{run_id}/rerun")
def rerun_action(request: Request, run_id: str, who: FormOperator,
                 status: Annotated[list[str] | None, Form()] = None) -> Response:
    """The run page's rerun: its failed devices, or those of the statuses ticked."""
    chosen = None
    if status:
        try:
            chosen = [DeviceStatus(s) for s in status]
        except ValueError:
            raise InputError(f"{status!r}: not device statuses", field="status") from None
    _, started = _rerun(request, run_id, who.label, chosen, False)
    return RedirectResponse(f"/runs/{started.run_id}", status_code=303)
