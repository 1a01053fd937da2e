"""The REST API under /api/: runs, devices, jobs, schedules, backups and labs as the CLI's
--json documents; starting, cancelling, approving and rejecting runs (operators)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field

from runner.errors import AccessDenied, InputError, NotFound, RoleTooLow
from runner.schedule.listing import schedule_list, workflow_document, workflow_documents
from runner.store import compliance as store_compliance
from runner.store.occurrences import recent_occurrences
from runner.store.queries import (
    RunFilter,
    count_runs,
    device_document,
    device_rows,
    run_document_page,
    run_head,
    run_rows,
    status_counts,
)
from runner.vocab import ComplianceState, DeviceStatus, RunStatus
from runner.web.auth import Principal, identify, operator, viewer
from runner.web.labs import lab_statuses
from runner.web.launcher import job_files
from runner.web.services import services

router = APIRouter(prefix="/api")
Viewer = Annotated[Principal, Depends(viewer)]
Operator = Annotated[Principal, Depends(operator)]
MAX_PAGE = 500
RUN_DEVICES_PAGE = 100  # devices (with their steps) of GET /api/runs/ID unless asked
MAX_RUN_DEVICES = 1000
MAX_OFFSET = 10**9  # past any table runner keeps; larger numbers overflow the database's


class RunRequest(BaseModel):
    """A run to start now."""

    model_config = ConfigDict(extra="forbid")
    job: str = Field(description="The job's name (or its file's name) in the jobs directory.")
    dry_run: bool = Field(False, description="Render and diff, send nothing.")
    limit: str | None = Field(None, description="Only these hosts or groups (comma-separated, "
                                                "globs), as `runner run --limit`.")
    rerun: str | None = Field(None, description=(
        "Only the devices of this earlier run of the job that did not end ok or changed "
        "(`runner run --rerun`); an empty or unknown id is an error."))
    statuses: list[DeviceStatus] | None = Field(None, description=(
        "With rerun: only its devices that ended with these statuses."))
    no_approval: bool = Field(False, description=(
        "For a job that needs approval: send the change without an approved preview (admin "
        "tokens only; recorded with the token's name and `reason`). Without it a real run "
        "of such a job is a preview awaiting approval."))
    reason: str | None = Field(None, max_length=1000, description="Why (with no_approval).")
    override_blackout: str | None = Field(None, max_length=1000, description=(
        "Run even inside a blackout window: why (admin tokens only; recorded with the "
        "token's name and the windows it overrode). Without it such a run is refused "
        "(400) naming the window."))


class RemediateRequest(BaseModel):
    """A compliance run's drift to remediate (`runner remediate`)."""

    model_config = ConfigDict(extra="forbid")
    run_id: str = Field(description="The compliance run whose drift to fix.")
    features: list[str] | None = Field(None, description=(
        "Only these features (default: every non-compliant one)."))
    hosts: list[str] | None = Field(None, description=(
        "Only these devices (default: every non-compliant one)."))
    dry_run: bool = Field(False, description="Preview the remediation, send nothing.")


class RejectRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(None, max_length=1000)


# -- runs ---------------------------------------------------------------------------------


@router.get("/runs", summary="Runs, newest first (`runner history --json`)")
def list_runs(request: Request, response: Response, _who: Viewer,
              job: str | None = None, status: RunStatus | None = None,
              since: Annotated[str | None, Query(description="date or ISO date-time")] = None,
              until: Annotated[str | None, Query(description="date or ISO date-time")] = None,
              limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
              offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0) -> list[dict[str, Any]]:
    store = services(request).results
    where = RunFilter(job, status, since, until)
    response.headers["X-Total-Count"] = str(count_runs(store, where))
    return run_rows(store, where, limit, offset)


@router.post("/runs", status_code=202, summary="Start a run of a job now (operators); a "
             "real run of a job that needs approval is a preview awaiting approval")
def start_run(request: Request, response: Response, body: RunRequest,
              who: Operator) -> dict[str, Any]:
    if body.no_approval and not who.admin:
        raise RoleTooLow(f"token {who.name!r} is an {who.role}: running a change without "
                         "its approval (no_approval) needs an admin token")
    if body.reason is not None and not body.no_approval:
        raise InputError("reason goes with no_approval", field="reason")
    if body.override_blackout is not None and not who.admin:
        raise RoleTooLow(f"token {who.name!r} is an {who.role}: running inside a blackout "
                         "window (override_blackout) needs an admin token")
    started = services(request).launcher.start(
        body.job, dry_run=body.dry_run, by=who.label, limit=body.limit, rerun_of=body.rerun,
        statuses=body.statuses, no_approval=body.no_approval, reason=body.reason,
        override_blackout=body.override_blackout)
    response.headers["Location"] = f"/api/runs/{started.run_id}"
    return {"run_id": started.run_id, "job": body.job, "dry_run": started.dry_run,
            "awaiting_approval": started.preview, "status": RunStatus.RUNNING,
            "started_by": who.label, "url": f"/api/runs/{started.run_id}"}


@router.get("/runs/{run_id}", summary="One run with a page of its devices (`runner show "
            "--json`: `limit`/`offset` page the devices in target order, `devices_total` "
            "and X-Total-Count count them), its reruns, who did what to it, and what may "
            "be done with it now (`actions`)")
def get_run(request: Request, response: Response, run_id: str, _who: Viewer,
            limit: Annotated[int, Query(ge=1, le=MAX_RUN_DEVICES)] = RUN_DEVICES_PAGE,
            offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0) -> dict[str, Any]:
    svc = services(request)
    pending = svc.launcher.rehearsing(run_id)
    if pending is not None:  # its record comes after the rehearsal
        response.headers["X-Total-Count"] = "0"
        return {**pending.to_json(), "devices": [], "devices_total": 0, "offset": offset,
                "actions": ["cancel"]}
    document, row, counts = run_document_page(svc.results, run_id, limit, offset)
    response.headers["X-Total-Count"] = str(document["devices_total"])
    document["actions"] = svc.launcher.actions(row, counts)
    return document


@router.get("/runs/{run_id}/progress", summary="How far a run is: counts per status")
def progress(request: Request, run_id: str, _who: Viewer) -> dict[str, Any]:
    return run_progress(request, run_id)


def run_progress(request: Request, run_id: str) -> dict[str, Any]:
    pending = services(request).launcher.rehearsing(run_id)
    if pending is not None:
        return pending.to_json()
    store = services(request).results
    head = run_head(store, run_id, hosts=False)
    counts = status_counts(store, [head["run_id"]])[head["run_id"]]
    done = sum(counts.values())
    return {"run_id": head["run_id"], "job": head["job"], "status": head["status"],
            "dry_run": head["dry_run"], "started": head["started"],
            "finished": head["finished"], "total": head["host_count"] or done,
            "done": done, "summary": counts}


@router.get("/runs/{run_id}/devices", summary="A page of a run's devices (no step output), "
            "failed first")
def list_devices(request: Request, response: Response, run_id: str, _who: Viewer,
                 status: DeviceStatus | None = None,
                 limit: Annotated[int, Query(ge=1, le=MAX_PAGE * 4)] = 500,
                 offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0) -> list[dict[str, Any]]:
    store = services(request).results
    full = store.resolve(run_id)
    counts = status_counts(store, [full])[full]
    response.headers["X-Total-Count"] = str(counts[status] if status else
                                            sum(counts.values()))
    return device_rows(store, full, status, limit, offset, counts)


@router.get("/runs/{run_id}/devices/{host:path}",
            summary="One device's record (`runner show RUN --host HOST --json`)")
def get_device(request: Request, run_id: str, host: str, _who: Viewer) -> dict[str, Any]:
    return device_document(services(request).results, run_id, host)


@router.post("/runs/{run_id}/cancel", status_code=202,
             summary="Cancel a run this server started (operators)")
def cancel_run(request: Request, run_id: str, who: Operator) -> dict[str, Any]:
    full = services(request).launcher.cancel(run_id, by=who.label)
    return {"run_id": full, "cancel": "requested"}


@router.post("/runs/{run_id}/approve", status_code=202,
             summary="Carry out a previewed change awaiting approval (operators)")
def approve_run(request: Request, run_id: str, who: Operator) -> dict[str, Any]:
    launcher = services(request).launcher
    preview = services(request).results.resolve(run_id)
    new_id = launcher.approve(preview, by=who.label)
    return {"run_id": new_id, "approves": preview, "approved_by": who.label,
            "url": f"/api/runs/{new_id}"}


@router.post("/runs/{run_id}/reject", summary="Reject a previewed change (operators)")
def reject_run(request: Request, run_id: str, who: Operator,
               body: RejectRequest | None = None) -> dict[str, Any]:
    from runner.job.approval import reject

    full = reject(services(request).results, run_id, body.reason if body else None,
                  by=who.label)
    return {"run_id": full, "status": RunStatus.REJECTED}


# -- compliance ---------------------------------------------------------------------------


@router.get("/compliance", summary="Each device's latest compliance per feature (`runner "
            "compliance --json`): a summary per feature and a row per device and feature")
def compliance_latest(request: Request, _who: Viewer, feature: str | None = None,
                      status: ComplianceState | None = None,
                      host: str | None = None) -> dict[str, Any]:
    rows = store_compliance.latest(services(request).results,
                                   store_compliance.StateFilter(feature, status, host))
    return store_compliance.compliance_document(rows)


@router.get("/compliance/history", summary="Compliance changes, newest first: when each "
            "device drifted and was fixed, by which run (`runner compliance --history`)")
def compliance_history(request: Request, _who: Viewer, host: str | None = None,
                       feature: str | None = None,
                       limit: Annotated[int, Query(ge=1, le=10_000)] = 200,
                       ) -> list[dict[str, Any]]:
    return store_compliance.history(services(request).results, host, feature, limit)


@router.post("/compliance/remediate", status_code=202, summary="Remediate a compliance "
             "run's drift through the pipeline (operators; a preview when its job needs "
             "approval)")
def remediate(request: Request, response: Response, body: RemediateRequest,
              who: Operator) -> dict[str, Any]:
    started = services(request).launcher.remediate(
        body.run_id, by=who.label, features=body.features, hosts=body.hosts,
        dry_run=body.dry_run)
    response.headers["Location"] = f"/api/runs/{started.run_id}"
    return {"run_id": started.run_id, "remediates": body.run_id, "dry_run": started.dry_run,
            "awaiting_approval": started.preview, "started_by": who.label,
            "url": f"/api/runs/{started.run_id}"}


# -- jobs, schedules, backups, labs ---------------------------------------------------------


@router.get("/jobs", summary="The jobs of the jobs directory that can be run (`jobs`) and "
            "the invalid job files (`invalid`: each `file:line: field: problem` and what "
            "`runner serve` does with it)")
def list_jobs(request: Request, _who: Viewer) -> dict[str, Any]:
    from runner.schedule.health import invalid_files

    svc = services(request)
    return {"jobs": [{"job": j.name, "file": str(j.path), "description": j.description,
                      "changes_config": j.changes_config, "scheduled": j.scheduled,
                      "needs_approval": j.needs_approval} for j in svc.launcher.jobs()],
            "invalid": invalid_files(svc.config.jobs_dir, svc.schedule)}


@router.get("/schedules", summary="Scheduled jobs (`runner schedule list --json`)")
def schedules(request: Request, _who: Viewer,
              next: Annotated[int, Query(ge=0, le=100)] = 3) -> list[dict[str, Any]]:
    svc = services(request)
    return schedule_list(svc.config.jobs_dir, svc.schedule, svc.results, next)


@router.get("/schedules/{job}/occurrences", summary="A job's last occurrences, newest first")
def occurrences(request: Request, job: str, _who: Viewer,
                limit: Annotated[int, Query(ge=1, le=1000)] = 30) -> list[dict[str, Any]]:
    svc = services(request)
    found = recent_occurrences(svc.schedule, svc.results, job, limit)
    known = {j.name for j in svc.launcher.jobs()} | {p.stem for p in job_files(
        svc.config.jobs_dir)}  # an invalid file's job too (serve keeps what it had)
    if not found and job not in known:
        raise NotFound(f"no job {job!r} in {svc.config.jobs_dir}, and no occurrence of one",
                       field="job")
    return found


@router.get("/workflows", summary="Workflow runs, newest first (`runner workflow list "
            "--json`)")
def workflows(request: Request, _who: Viewer, job: str | None = None,
              limit: Annotated[int, Query(ge=1, le=1000)] = 20) -> list[dict[str, Any]]:
    svc = services(request)
    return workflow_documents(svc.schedule, svc.results, limit, job)


@router.get("/workflows/{workflow_id}", summary="One workflow run and its steps (`runner "
            "workflow show --json`)")
def workflow(request: Request, workflow_id: str, _who: Viewer) -> dict[str, Any]:
    svc = services(request)
    return workflow_document(svc.schedule, svc.results, workflow_id)


@router.get("/labs", summary="Labs up on this machine (`runner lab status --json`)")
def labs(request: Request, _who: Viewer) -> list[dict[str, Any]]:
    return lab_statuses(services(request).config.settings)


@router.get("/whoami", summary="The token this request is authenticated with")
def whoami(who: Viewer) -> dict[str, Any]:
    return {"name": who.name, "role": who.role, "id": who.token_id}


# -- metrics (not under /api/, but answered in JSON on errors like the API) ----------------

metrics_router = APIRouter()


@metrics_router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    svc = services(request)
    if not svc.config.metrics_public and identify(request) is None:
        raise AccessDenied("/metrics needs a token (or runner web --metrics-public)")
    return PlainTextResponse(generate_latest(request.app.state.metrics),
                             media_type=CONTENT_TYPE_LATEST)
