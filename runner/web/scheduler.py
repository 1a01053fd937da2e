"""Schedules kept honestly on the web: whether a scheduler (`runner serve`) is running,
pausing and resuming a schedule (every server obeys it), and the invalid job files with
what serve does with each (`GET /api/scheduler`, the schedules page's buttons)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, ConfigDict, Field

from runner.schedule import health
from runner.web.auth import Principal, operator, viewer
from runner.web.pages import FormOperator
from runner.web.services import services

api = APIRouter(prefix="/api")
pages = APIRouter(include_in_schema=False)
Viewer = Annotated[Principal, Depends(viewer)]
Operator = Annotated[Principal, Depends(operator)]


class PauseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(None, max_length=1000, description="Why (recorded, shown "
                               "with each occurrence skipped while paused).")


def scheduler_document(request: Request) -> dict[str, Any]:
    svc = services(request)
    state = health.scheduler_status(svc.schedule)
    return {**state, "paused": list(svc.schedule.paused().values()),
            "invalid": health.invalid_files(svc.config.jobs_dir, svc.schedule, state)}


@api.get("/scheduler", summary="Whether a scheduler (`runner serve`) is running: `running`, "
         "the lease `holder`, its last `heartbeat`; paused schedules; invalid job files "
         "(`runner schedule status --json`)")
def scheduler(request: Request, _who: Viewer) -> dict[str, Any]:
    return scheduler_document(request)


@api.post("/schedules/{job}/pause", summary="Pause a schedule: every `runner serve` skips "
          "its occurrences, recording who paused it and why (operators)")
def pause(request: Request, job: str, who: Operator,
          body: PauseRequest | None = None) -> dict[str, Any]:
    svc = services(request)
    return health.pause(svc.config.jobs_dir, svc.schedule, job, who.label,
                        body.reason if body else None)


@api.post("/schedules/{job}/resume", summary="Resume a paused schedule (operators)")
def resume(request: Request, job: str, _who: Operator) -> dict[str, Any]:
    return health.resume(services(request).schedule, job)


@pages.post("/schedules/{job}/pause")
def pause_action(request: Request, job: str, who: FormOperator,
                 reason: Annotated[str, Form(max_length=1000)] = "") -> Response:
    svc = services(request)
    health.pause(svc.config.jobs_dir, svc.schedule, job, who.label, reason or None)
    return RedirectResponse(f"/schedules#{job}", status_code=303)


@pages.post("/schedules/{job}/resume")
def resume_action(request: Request, job: str, _who: FormOperator) -> Response:
    health.resume(services(request).schedule, job)
    return RedirectResponse(f"/schedules#{job}", status_code=303)
