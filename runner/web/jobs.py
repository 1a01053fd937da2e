"""A job's own page and document (`/jobs/NAME`, `GET /api/jobs/NAME`): its file as written
(values of keys that name a secret masked), the devices it targets now, its variables,
its schedule as `runner serve` keeps it (paused or not, the scheduler's state), and its
last runs with links to their previews, approvals and reruns."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from runner.errors import InputError
from runner.job.run import prepare_job
from runner.redact import MASK, SECRET_KEY, Redactor
from runner.schedule import health
from runner.schedule.listing import schedule_list
from runner.store.queries import RunFilter, run_rows
from runner.web.auth import Principal, viewer
from runner.web.pages import render
from runner.web.services import services

api = APIRouter(prefix="/api")
pages = APIRouter(include_in_schema=False)
Viewer = Annotated[Principal, Depends(viewer)]
LAST_RUNS = 20
_KEY_LINE = re.compile(r"^(\s*(?:-\s+)?)([\w-]+)(\s*:\s+)(\S.*)$")


def masked_yaml(text: str) -> str:
    """A job file as written, each `key: value` whose key names a secret masked."""
    out = []
    for line in text.splitlines():
        found = _KEY_LINE.match(line)
        out.append(f"{found.group(1)}{found.group(2)}{found.group(3)}{MASK}"
                   if found and SECRET_KEY.match(found.group(2)) else line)
    return "\n".join(out)


def job_document(request: Request, name: str) -> dict[str, Any]:
    svc = services(request)
    job = svc.launcher.find(name)
    spec = job.spec
    try:
        hosts: list[str] = prepare_job(job, svc.config.inventory, svc.config.templates).hosts
        targets_error = None
    except InputError as exc:
        hosts, targets_error = [], str(exc)
    scheduled = [s for s in schedule_list(svc.config.jobs_dir, svc.schedule, svc.results, 5)
                 if s["job"] == spec.name]
    return {
        "job": spec.name, "file": str(job.path), "description": spec.description,
        "changes_config": spec.changes_config, "needs_approval": spec.needs_approval,
        "yaml": masked_yaml(job.path.read_text(encoding="utf-8")),
        "targets": spec.targets.model_dump(mode="json", exclude_defaults=True),
        "hosts": hosts, "targets_error": targets_error,
        "vars": Redactor().value(spec.vars),
        "schedule": scheduled[0] if scheduled else None,
        "scheduler": health.scheduler_status(svc.schedule) if scheduled else None,
        "runs": run_rows(svc.results, RunFilter(job=spec.name), LAST_RUNS, 0)}


@api.get("/jobs/{name}", summary="One job: its file (secret values masked), the devices it "
         "targets, its variables, its schedule, its last runs")
def job_api(request: Request, name: str, _who: Viewer) -> dict[str, Any]:
    return job_document(request, name)


@pages.get("/jobs/{name}")
def job_page(request: Request, name: str, who: Viewer) -> HTMLResponse:
    return render(request, "job.html", who, job=job_document(request, name))
