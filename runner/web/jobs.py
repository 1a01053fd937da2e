"""A job's own page and document (`/jobs/NAME`, `GET /api/jobs/NAME`): its file as written
(values of keys that name a secret, secret config lines of every platform and the
targeted devices' credentials masked), the devices it targets now, its variables,
its schedule as `runner serve` keeps it (paused or not, the scheduler's state), and its
last runs with links to their previews, approvals and reruns."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from runner.errors import InputError
from runner.inventory import platforms
from runner.job.prepare import Prepared, prepare_job
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


def masked_yaml(text: str, redactor: Redactor) -> str:
    """A job file as written, each `key: value` whose key names a secret masked, then what
    `redactor` masks (secret config lines such as `username x secret 0 y` or `snmp-server
    community y`, known credentials, `password=y` inside a string)."""
    out = []
    for line in text.splitlines():
        found = _KEY_LINE.match(line)
        out.append(f"{found.group(1)}{found.group(2)}{found.group(3)}{MASK}"
                   if found and SECRET_KEY.match(found.group(2)) else line)
    return redactor.text("\n".join(out))


def _secrets(prep: Prepared | None) -> Redactor:
    """Every platform's secret-line rules (a job's config lines may be for any of them) and,
    when the targets resolved, those devices' credentials as the inventory writes them
    (secret references are not read by the web server: nothing to mask)."""
    known_platforms = filter(None, map(platforms.get, platforms.names()))
    patterns = {rule.pattern: rule for found in known_platforms for rule in found.secret_lines}
    if prep is None:
        return Redactor((), patterns.values())
    known, usernames = prep.inventory.credentials(prep.hosts, None)
    return Redactor(known, patterns.values(), usernames)


def job_document(request: Request, name: str) -> dict[str, Any]:
    svc = services(request)
    job = svc.launcher.find(name)
    spec = job.spec
    prep: Prepared | None = None
    try:
        prep = prepare_job(job, svc.config.inventory, svc.config.templates,
                           kept=svc.config.settings.kept_inventories)
        targets_error = None
    except InputError as exc:
        targets_error = str(exc)
    hosts = prep.hosts if prep else []
    secrets = _secrets(prep)
    scheduled = [s for s in schedule_list(svc.config.jobs_dir, svc.schedule, svc.results, 5)
                 if s["job"] == spec.name]
    return {
        "job": spec.name, "file": str(job.path), "description": spec.description,
        "changes_config": spec.changes_config, "needs_approval": spec.needs_approval,
        "yaml": masked_yaml(job.path.read_text(encoding="utf-8"), secrets),
        "targets": spec.targets.model_dump(mode="json", exclude_defaults=True),
        "hosts": hosts, "targets_error": targets_error,
        "vars": secrets.value(spec.vars),
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
