"""The server-rendered pages (runs, a run, a device, jobs, schedules, backups, labs), the
login form, and the operators' form actions (each post checked against the session's CSRF
token)."""

from __future__ import annotations

import json
import math
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from runner import __version__
from runner.errors import InputError, NotFound, RoleTooLow, RunnerError
from runner.schedule.listing import schedule_list, workflow_document, workflow_documents
from runner.store import compliance as store_compliance
from runner.store.occurrences import recent_occurrences
from runner.store.queries import (
    RunFilter,
    count_runs,
    device_document,
    device_rows,
    device_steps,
    job_names,
    run_head,
    run_links,
    run_rows,
    status_counts,
)
from runner.vocab import ComplianceState, DeviceStatus, RunStatus
from runner.web import labs as lab_data
from runner.web.auth import CSRF_FIELD, Principal, check_csrf, csrf_token, identify, log_in, viewer
from runner.web.services import services
from runner.web.svg import render as render_svg

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(str(resources.files("runner.web") / "templates")))
RUNS_PER_PAGE = 50
DEVICES_PER_PAGE = 500
DIFFS_PER_PAGE = 50
MAX_PAGES = 10**6  # a page number past any table runner keeps (larger ones overflow)
Viewer = Annotated[Principal, Depends(viewer)]
FAILURES = [str(s) for s in DeviceStatus if not s.worked and s is not DeviceStatus.SKIPPED]


def _when(value: str | None) -> str:
    """A stored UTC time as people read it: 2026-11-23 01:30:05Z."""
    if not value:
        return ""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    return moment.strftime("%Y-%m-%d %H:%M:%S") + ("Z" if moment.utcoffset() is not None
                                                  and not moment.utcoffset() else "")


def _zoned(value: str, zone: str) -> str:
    """A UTC time in a schedule's time zone: 2026-11-24 02:30 CET."""
    try:
        moment = datetime.fromisoformat(value).astimezone(ZoneInfo(zone))
    except (ValueError, KeyError):
        return value
    return moment.strftime("%Y-%m-%d %H:%M:%S %Z")


def _took(start: str | None, end: str | None) -> str:
    if not start or not end:
        return ""
    try:
        seconds = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    except ValueError:
        return ""
    return _seconds(seconds)


def _seconds(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(seconds), 60)
    return f"{minutes}m{sec:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def _diff_lines(text: str | None) -> list[tuple[str, str]]:
    """(css class, line) for each line of a unified diff."""
    out = []
    for line in (text or "").splitlines():
        if line.startswith(("+++", "---")):
            css = "meta"
        elif line.startswith("@@"):
            css = "hunk"
        elif line.startswith("+"):
            css = "add"
        elif line.startswith("-"):
            css = "del"
        else:
            css = "ctx"
        out.append((css, line))
    return out


templates.env.filters["when"] = _when
templates.env.filters["seconds"] = _seconds
templates.env.filters["zoned"] = _zoned
templates.env.filters["diff_lines"] = _diff_lines
templates.env.filters["pretty"] = lambda v: json.dumps(v, indent=2, sort_keys=False)
templates.env.globals["took"] = _took
templates.env.globals["version"] = __version__
templates.env.globals["failures"] = FAILURES


def _pending_approvals(request: Request) -> int:
    """Previews awaiting approval (the navigation's count)."""
    from runner.store.runlinks import pending_approvals

    return pending_approvals(services(request).results)


templates.env.globals["pending_approvals"] = _pending_approvals


def render(request: Request, name: str, who: Principal | None, http_status: int = 200,
           **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, name, {
        "who": who, "csrf": csrf_token(request) if who else "", "csrf_field": CSRF_FIELD,
        **context}, status_code=http_status)


def error_page(request: Request, exc: RunnerError, status: int) -> HTMLResponse:
    return render(request, "error.html", identify(request), http_status=status,
                  error=str(exc), code=status)


def _pages(rows: int, per_page: int, page: int, what: str) -> int:
    """How many pages `rows` make; a page past the last is NotFound (not the last page
    shown as if it were the one asked for)."""
    pages = max(1, math.ceil(rows / per_page))
    if page > pages:
        raise NotFound(f"page {page} of {what} does not exist: there "
                       f"{'is 1 page' if pages == 1 else f'are {pages} pages'}", field="page")
    return pages


def _back(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def form_operator(request: Request, csrf: Annotated[str, Form()] = "") -> Principal:
    """An operator's session posting a form with this session's CSRF token."""
    who = viewer(request)
    check_csrf(request, csrf)
    if not who.operator:
        raise RoleTooLow(f"token {who.name!r} is a viewer: this needs an operator token")
    return who


FormOperator = Annotated[Principal, Depends(form_operator)]


# -- login ----------------------------------------------------------------------------------


def _safe_next(target: str | None) -> str:
    return target if target and target.startswith("/") and not target.startswith("//") \
        else "/runs"


@router.get("/login")
def login_form(request: Request, next: str | None = None) -> HTMLResponse:
    return render(request, "login.html", None, next=_safe_next(next),
                  login_csrf=csrf_token(request))


@router.post("/login")
def login(request: Request, token: Annotated[str, Form()] = "",
          csrf: Annotated[str, Form()] = "", next: Annotated[str, Form()] = "/runs",
          ) -> Response:
    check_csrf(request, csrf)
    if log_in(request, token) is None:
        return render(request, "login.html", None, http_status=401, next=_safe_next(next),
                      login_csrf=csrf_token(request),
                      error="That token is not valid (or was revoked).")
    return _back(_safe_next(next))


@router.post("/logout")
def logout(request: Request, _who: Viewer, csrf: Annotated[str, Form()] = "") -> Response:
    check_csrf(request, csrf)
    request.session.clear()
    return _back("/login")


@router.get("/")
def home() -> Response:
    return _back("/runs")


# -- runs -----------------------------------------------------------------------------------


@router.get("/runs")
def runs_page(request: Request, who: Viewer, job: str | None = None,
              status: str | None = None, since: str | None = None, until: str | None = None,
              page: Annotated[int, Query(ge=1, le=MAX_PAGES)] = 1) -> HTMLResponse:
    store = services(request).results
    try:
        run_status = RunStatus(status) if status else None
    except ValueError:
        raise InputError(f"{status!r} is not a run status (one of "
                         f"{', '.join(RunStatus)})", field="status") from None
    where = RunFilter(job or None, run_status, since or None, until or None)
    total = count_runs(store, where)
    pages = _pages(total, RUNS_PER_PAGE, page, "runs")
    rows = run_rows(store, where, RUNS_PER_PAGE, (page - 1) * RUNS_PER_PAGE)
    live = status_counts(store, [r["run_id"] for r in rows if r["status"] == RunStatus.RUNNING])
    for row in rows:
        row["counts"] = live.get(row["run_id"]) or row["summary"] or {}
    query = {k: v for k, v in (("job", job), ("status", status), ("since", since),
                               ("until", until)) if v}
    return render(request, "runs.html", who, rows=rows, total=total, page=page,
                  pages=pages, jobs=job_names(store), statuses=list(RunStatus),
                  filters=query, query=urlencode(query))


def _diffs(request: Request, run_id: str, hosts: list[str]) -> list[dict[str, Any]]:
    """The config diffs (and dry-run rollback previews) of these devices, in their order,
    devices with the same diffs grouped (`hosts`: each group's devices)."""
    if not hosts:
        return []
    found = device_steps(services(request).results, run_id, hosts)
    groups: dict[str, dict[str, Any]] = {}
    for host in hosts:
        steps = [s for s in found.get(host) or [] if s.get("diff")]
        if not steps:
            continue
        same = json.dumps([(s.get("name"), s.get("kind"), s["diff"]) for s in steps])
        if same in groups:
            groups[same]["hosts"].append(host)
        elif len(groups) < DIFFS_PER_PAGE:
            groups[same] = {"host": host, "hosts": [host], "steps": steps}
    return list(groups.values())


@router.get("/runs/{run_id}")
def run_page(request: Request, run_id: str, who: Viewer, status: str | None = None,
             page: Annotated[int, Query(ge=1, le=MAX_PAGES)] = 1) -> HTMLResponse:
    svc = services(request)
    pending = svc.launcher.rehearsing(run_id)
    if pending is not None:  # its record comes after the rehearsal
        return render(request, "run_rehearsing.html", who, pending=pending)
    store = svc.results
    head = run_head(store, run_id, hosts=False)
    full = head["run_id"]
    try:
        device_status = DeviceStatus(status) if status else None
    except ValueError:
        raise InputError(f"{status!r} is not a device status", field="status") from None
    counts = status_counts(store, [full])[full]
    done = sum(counts.values())
    total = head["host_count"] or done
    shown = counts[device_status] if device_status else done
    pages = _pages(shown, DEVICES_PER_PAGE, page, f"run {full}'s devices")
    rows = device_rows(store, full, device_status, DEVICES_PER_PAGE,
                       (page - 1) * DEVICES_PER_PAGE, counts)
    diffs = _diffs(request, full, [r["host"] for r in rows if r["changed"]
                                   or r["status"] == DeviceStatus.ROLLED_BACK])
    failed = [r for r in rows if not DeviceStatus(r["status"]).worked][:100]
    needs_approval = svc.launcher.needs_approval(head["job"])
    from runner.store.runlinks import reruns_of

    return render(request, "run.html", who, run=head, by_status=counts, done=done, total=total,
                  rows=rows, diffs=diffs, failed=failed, page=page, pages=pages,
                  reruns=reruns_of(store, full),
                  status=status or "",
                  actions=svc.launcher.actions(head, counts, needs_approval),
                  links=run_links(store, head), needs_approval=needs_approval,
                  again=(run_head(store, full)["hosts"] or []) if head["host_count"] <= 500
                  else None)


@router.get("/runs/{run_id}/devices/{host:path}")
def device_page(request: Request, run_id: str, host: str, who: Viewer) -> HTMLResponse:
    document = device_document(services(request).results, run_id, host)
    return render(request, "device.html", who, run=document, device=document["devices"][0])


@router.post("/runs/{run_id}/cancel")
def cancel_action(request: Request, run_id: str, who: FormOperator) -> Response:
    full = services(request).launcher.cancel(run_id, by=who.label)
    return _back(f"/runs/{full}")


@router.post("/runs/{run_id}/approve")
def approve_action(request: Request, run_id: str, who: FormOperator) -> Response:
    new_id = services(request).launcher.approve(run_id, by=who.label)
    return _back(f"/runs/{new_id}")


@router.post("/runs/{run_id}/reject")
def reject_action(request: Request, run_id: str, who: FormOperator,
                  reason: Annotated[str, Form(max_length=1000)] = "") -> Response:
    from runner.job.approval import reject

    full = reject(services(request).results, run_id, reason or None, by=who.label)
    return _back(f"/runs/{full}")


# -- jobs -----------------------------------------------------------------------------------


@router.get("/jobs")
def jobs_page(request: Request, who: Viewer) -> HTMLResponse:
    from runner.schedule.health import invalid_files

    svc = services(request)
    return render(request, "jobs.html", who, jobs=svc.launcher.jobs(),
                  invalid=invalid_files(svc.config.jobs_dir, svc.schedule))


@router.post("/jobs/run")
def run_action(request: Request, who: FormOperator, job: Annotated[str, Form()],
               limit: Annotated[str, Form()] = "",
               mode: Annotated[str, Form()] = "dry-run",
               rerun: Annotated[str | None, Form()] = None,
               reason: Annotated[str, Form(max_length=1000)] = "") -> Response:
    """Start a run: a dry run, a run (a preview awaiting approval for a job that needs
    approval), or (admins) a run without approval, recorded with its reason; `rerun`: only
    that run's devices that did not end ok or changed."""
    if mode not in ("dry-run", "run", "no-approval"):
        raise InputError(f"mode {mode!r}: expected dry-run, run or no-approval", field="mode")
    if mode == "no-approval" and not who.admin:
        raise RoleTooLow(f"token {who.name!r} is an {who.role}: running a change without "
                         "its approval needs an admin token")
    started = services(request).launcher.start(
        job, dry_run=mode == "dry-run", by=who.label, limit=limit.strip() or None,
        rerun_of=rerun, no_approval=mode == "no-approval", reason=reason.strip() or None)
    return _back(f"/runs/{started.run_id}")


# -- compliance -----------------------------------------------------------------------------


@router.get("/compliance")
def compliance_page(request: Request, who: Viewer, feature: str | None = None,
                    status: str | None = None, host: str | None = None,
                    page: Annotated[int, Query(ge=1, le=MAX_PAGES)] = 1) -> HTMLResponse:
    """The matrix: a row per device, a column per feature, each cell its latest state."""
    store = services(request).results
    try:
        state = ComplianceState(status) if status else None
    except ValueError:
        raise InputError(f"{status!r} is not a compliance state (one of "
                         f"{', '.join(ComplianceState)})", field="status") from None
    rows = store_compliance.latest(store, store_compliance.StateFilter(
        feature or None, None, None))
    matrix: dict[str, dict[str, dict[str, Any]]] = {}
    for row in rows:
        if host and host.lower() not in row["host"].lower():
            continue
        matrix.setdefault(row["host"], {})[row["feature"]] = row
    if state is not None:  # devices with at least one feature in that state
        matrix = {h: cells for h, cells in matrix.items()
                  if any(c["status"] == state for c in cells.values())}
    shown = [feature] if feature else store_compliance.features(store)
    hosts = sorted(matrix)
    pages = _pages(len(hosts), DEVICES_PER_PAGE, page, "the compliance matrix")
    query = {k: v for k, v in (("feature", feature), ("status", status), ("host", host)) if v}
    return render(request, "compliance.html", who, matrix=matrix, features=shown,
                  all_features=store_compliance.features(store),
                  hosts=hosts[(page - 1) * DEVICES_PER_PAGE:page * DEVICES_PER_PAGE],
                  total=len(hosts), summary=store_compliance.compliance_document(
                      [r for r in rows if r["host"] in matrix])["summary"],
                  states=list(ComplianceState), filters=query, query=urlencode(query),
                  page=page, pages=pages)


@router.get("/compliance/cell")
def compliance_cell(request: Request, who: Viewer, host: str, feature: str) -> HTMLResponse:
    """One device's feature: its missing and extra lines, the remediation, its history."""
    store = services(request).results
    found = store_compliance.latest(store, store_compliance.StateFilter(feature, None, host))
    if not found:
        raise NotFound(f"no compliance check of {host!r} for feature {feature!r}")
    return render(request, "compliance_cell.html", who, cell=found[0],
                  history=store_compliance.history(store, host, feature, 100))


@router.post("/compliance/remediate")
def remediate_action(request: Request, who: FormOperator, run_id: Annotated[str, Form()],
                     host: Annotated[str, Form()], feature: Annotated[str, Form()],
                     mode: Annotated[str, Form()] = "dry-run") -> Response:
    """Remediate one device's feature as its latest check found it: a preview (dry run) or
    the change (a preview awaiting approval when its job needs approval)."""
    if mode not in ("dry-run", "run"):
        raise InputError(f"mode {mode!r}: expected dry-run or run", field="mode")
    started = services(request).launcher.remediate(
        run_id, by=who.label, features=[feature], hosts=[host], dry_run=mode == "dry-run")
    return _back(f"/runs/{started.run_id}")


# -- schedules, workflows, labs ------------------------------------------------------------


@router.get("/schedules")
def schedules_page(request: Request, who: Viewer) -> HTMLResponse:
    svc = services(request)
    listed = schedule_list(svc.config.jobs_dir, svc.schedule, svc.results, 5)
    for item in listed:
        item["occurrences"] = recent_occurrences(svc.schedule, svc.results, item["job"], 30)
    from runner.schedule.health import invalid_files, scheduler_status

    state = scheduler_status(svc.schedule)
    return render(request, "schedules.html", who, schedules=listed,
                  jobs_dir=svc.config.jobs_dir, scheduler=state,
                  invalid=invalid_files(svc.config.jobs_dir, svc.schedule, state))


@router.get("/workflows")
def workflows_page(request: Request, who: Viewer) -> HTMLResponse:
    svc = services(request)
    return render(request, "workflows.html", who,
                  workflows=workflow_documents(svc.schedule, svc.results, 50))


@router.get("/workflows/{workflow_id}")
def workflow_page(request: Request, workflow_id: str, who: Viewer) -> HTMLResponse:
    svc = services(request)
    return render(request, "workflow.html", who,
                  flow=workflow_document(svc.schedule, svc.results, workflow_id))


@router.get("/workflows/{workflow_id}/graph.svg")
def workflow_svg(request: Request, workflow_id: str, _who: Viewer) -> Response:
    from runner.web.flowgraph import render as render_flow

    svc = services(request)
    drawn = render_flow(workflow_document(svc.schedule, svc.results, workflow_id))
    return Response(drawn, media_type="image/svg+xml", headers={
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"})


@router.get("/labs")
def labs_page(request: Request, who: Viewer) -> HTMLResponse:
    return render(request, "labs.html", who,
                  labs=lab_data.lab_statuses(services(request).config.settings))


@router.get("/labs/{name}/topology.svg")
def topology_svg(request: Request, name: str, _who: Viewer) -> Response:
    drawn = lab_data.topology(services(request).config.settings, name)
    return Response(render_svg(drawn), media_type="image/svg+xml", headers={
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"})
