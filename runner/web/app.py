"""The FastAPI application: the stores and services it shares, sessions, security headers,
runner's errors mapped to HTTP (JSON under /api/, a page or the login form elsewhere)."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware

from runner import __version__
from runner.errors import (
    AccessDenied,
    BackupError,
    Conflict,
    InputError,
    LabError,
    NotFound,
    RoleTooLow,
    RunnerError,
)
from runner.store.metrics import registry
from runner.store.results import ResultsStore
from runner.store.schedule import ScheduleStore
from runner.store.tokens import TokenStore
from runner.web.config import WebConfig
from runner.web.launcher import Launcher
from runner.web.limits import BodyLimit
from runner.web.services import Services

log = logging.getLogger("runner.web")
SESSION_COOKIE = "runner_session"
SESSION_MAX_AGE = 12 * 3600
PAGE_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
# Swagger UI starts itself with an inline script (its files are vendored, not from a CDN).
DOCS_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
            "script-src 'self' 'unsafe-inline'; frame-ancestors 'none'")


def _status_of(exc: RunnerError) -> int:
    if isinstance(exc, RoleTooLow):
        return 403
    if isinstance(exc, AccessDenied):
        return 401
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, Conflict):
        return 409
    if isinstance(exc, InputError):
        return 400
    if isinstance(exc, BackupError | LabError):
        return 502
    return 500


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith(("/api/", "/metrics"))


def error_body(exc: RunnerError) -> dict[str, Any]:
    body: dict[str, Any] = {"error": str(exc), "kind": type(exc).__name__}
    if isinstance(exc, InputError) and exc.field:
        body["field"] = exc.field
    return body


async def bad_request(request: Request, exc: RequestValidationError) -> Response:
    problems = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
        problems.append({"field": where, "error": str(error.get("msg", ""))})
    first = problems[0] if problems else {"field": "", "error": "invalid request"}
    if not _wants_json(request):  # a page: the error page, never the API's JSON
        from runner.web.pages import error_page

        where = first["field"].removeprefix("query.").removeprefix("path.")
        return error_page(request, InputError(f"{where}: {first['error']}"), 400)
    return JSONResponse({"error": f"{first['field']}: {first['error']}",
                         "field": first["field"], "problems": problems},
                        status_code=422)


async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
    """The framework's own answers (no such path, a method a path does not take) in
    runner's forms: a JSON document under /api/, the error page elsewhere."""
    reason = {404: f"nothing at {request.url.path}",
              405: f"{request.method} is not answered at {request.url.path}"}.get(
        exc.status_code, str(exc.detail))
    error: RunnerError = NotFound(reason) if exc.status_code == 404 else \
        InputError(reason)
    if _wants_json(request) or exc.status_code not in (404, 405):
        return JSONResponse(error_body(error) if exc.status_code in (404, 405)
                            else {"error": str(exc.detail), "kind": "HTTPError"},
                            status_code=exc.status_code, headers=exc.headers)
    from runner.web.pages import error_page

    return error_page(request, error, exc.status_code)


def create_app(config: WebConfig) -> FastAPI:
    config = config.with_secret()
    results = ResultsStore(config.settings.database_url())
    schedule = ScheduleStore(config.store_url or results.url)
    shared = Services(config, results, schedule, TokenStore(results.engine),
                      Launcher(config, results))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        shared.launcher.close()  # runs started here end as interrupted, each device recorded

    app = FastAPI(title="runner", version=__version__, lifespan=lifespan, docs_url=None,
                  redoc_url=None, description="runner's REST API: runs, devices, schedules, "
                  "backups, labs. Authenticate with `Authorization: Bearer TOKEN` "
                  "(`runner token create --role viewer|operator|admin`).")
    app.state.services = shared
    app.state.metrics = registry(results, schedule, config.settings)
    app.add_middleware(SessionMiddleware, secret_key=config.secret_key,
                       session_cookie=SESSION_COOKIE, max_age=SESSION_MAX_AGE,
                       same_site="lax", https_only=config.secure_cookies)

    @app.middleware("http")
    async def headers(request: Request,
                      call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        began = time.perf_counter()
        response = await call_next(request)
        # the server's own time for the answer (browsers' dev tools and bench/web.py show it)
        response.headers["Server-Timing"] = \
            f"app;dur={(time.perf_counter() - began) * 1000:.1f}"
        docs = request.url.path == "/docs"
        response.headers.setdefault("Content-Security-Policy", DOCS_CSP if docs else PAGE_CSP)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "same-origin"
        if not request.url.path.startswith("/static/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.exception_handler(RunnerError)
    async def runner_error(request: Request, exc: RunnerError) -> Response:
        status = _status_of(exc)
        if status >= 500:
            log.error("%s %s: %s", request.method, request.url.path, exc)
        if _wants_json(request):
            headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
            return JSONResponse(error_body(exc), status_code=status, headers=headers)
        if status == 401:
            return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
        from runner.web.pages import error_page

        return error_page(request, exc, status)

    app.add_exception_handler(RequestValidationError, bad_request)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, http_error)  # type: ignore[arg-type]

    swagger = Path(str(resources.files("fastapi_offline") / "static"))
    app.mount("/static/docs", StaticFiles(directory=swagger), name="docs-static")
    static = Path(str(resources.files("runner.web") / "static"))
    app.mount("/static", StaticFiles(directory=static), name="static")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="runner API",
                                   swagger_js_url="/static/docs/swagger-ui-bundle.js",
                                   swagger_css_url="/static/docs/swagger-ui.css",
                                   swagger_favicon_url="/static/docs/favicon.png")

    from runner.web import api, backups, devices, jobs, pages, runs_live, scheduler

    # issue 27's views before api and pages: /api/backups/HOST/config is more specific
    # than their routes, and so are the others' catch-alls
    for module in (devices, backups, runs_live, scheduler, jobs):
        app.include_router(module.api)
        app.include_router(module.pages)
    app.include_router(api.router)
    app.include_router(api.metrics_router)
    app.include_router(pages.router)
    app.add_middleware(BodyLimit, max_bytes=config.max_body)  # outermost: before all else
    return app
