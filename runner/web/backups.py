"""Backups in the web, as Oxidized-web shows them and more: per repository a table of every
device its jobs target (last backup, last attempt with its error, versions; failed and
never backed up first), a device's versions with the run that made each, its config at
any version (and its download), the diff between any two; the same under /api/backups."""

from __future__ import annotations

import math
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse

from runner.errors import InputError, InventoryError, NotFound
from runner.inventory.fleet import FleetInventory
from runner.job.backup_index import Repo, repository
from runner.job.backups import BackupRepo, file_name
from runner.store import devices as store_devices
from runner.web.auth import Principal, viewer
from runner.web.devices import fleet_of, repos_of
from runner.web.services import services

pages = APIRouter(include_in_schema=False)
api = APIRouter(prefix="/api")
Viewer = Annotated[Principal, Depends(viewer)]
ROWS_PER_PAGE = 500


def _fleet(request: Request) -> tuple[FleetInventory | None, str | None]:
    """The inventory, or why it cannot be read (the table then lists only the devices that
    have a backup, and says so)."""
    try:
        return fleet_of(request), None
    except InventoryError as exc:
        return None, str(exc)


def _repo_for(request: Request, name: str | None, host: str) -> Repo:
    """The named repository; without a name, the one that holds the device's backups."""
    repos = repos_of(request)
    if name is None and len(repos) > 1:
        holding = [r for r in repos if (r.path / file_name(host)).exists()
                   or BackupRepo(r.path).history(host, 1)]
        if len(holding) == 1:
            return holding[0]
    return repository(repos, name)


_TARGETED: dict[str, tuple[object, Repo, tuple[list[str], list[str]]]] = {}


def _targeted(fleet: FleetInventory | None, repo: Repo) -> tuple[list[str], list[str]]:
    """Repo.targeted(), kept while the inventory and the jobs are the same objects (they
    are made again when their files change: runner.web.devices)."""
    kept = _TARGETED.get(repo.name)
    if kept is not None and kept[0] is fleet and kept[1] is repo:
        return kept[2]
    found = repo.targeted(fleet)
    _TARGETED[repo.name] = (fleet, repo, found)
    return found


def _table(request: Request, repo: Repo, state: str | None, search: str | None,
           offset: int = 0, limit: int | None = None) -> dict[str, Any]:
    fleet, problem = _fleet(request)
    hosts, problems = _targeted(fleet, repo)
    table = store_devices.backup_table(services(request).results, repo, hosts, state,
                                       search, offset, limit)
    return {**table, "inventory_error": problem, "targets_errors": problems}


# -- pages ----------------------------------------------------------------------------------


@pages.get("/backups")
def backups_page(request: Request, who: Viewer, repo: str | None = None,
                 state: str | None = None, q: str | None = None,
                 page: Annotated[int, Query(ge=1, le=10**6)] = 1) -> HTMLResponse:
    from runner.web.pages import render

    repos = repos_of(request)
    chosen = [repository(repos, repo)] if repo is not None else repos
    tables = []
    at = page if repo is not None else 1
    for found in chosen:
        table = _table(request, found, state or None, q or None,
                       (at - 1) * ROWS_PER_PAGE, ROWS_PER_PAGE)
        pages_n = max(1, math.ceil(table["shown"] / ROWS_PER_PAGE))
        if at > pages_n:
            raise NotFound(f"page {at} of {found.name} does not exist (there are "
                           f"{pages_n})", field="page")
        table.update(page=at, pages=pages_n)
        tables.append(table)
    query = {k: v for k, v in (("state", state), ("q", q)) if v}
    return render(request, "backups.html", who, tables=tables, filters=query,
                  one=repo is not None, query=urlencode(query), states=store_devices.STATES)


@pages.get("/backups/{host:path}")
def backup_page(request: Request, host: str, who: Viewer, repo: str | None = None,
                at: str | None = None,
                old: Annotated[str | None, Query(alias="from")] = None,
                new: Annotated[str | None, Query(alias="to")] = None) -> HTMLResponse:
    from runner.web.pages import render

    found = _repo_for(request, repo, host)
    history = device_history(request, found, host)
    versions = history["versions"]
    if not versions:
        raise NotFound(f"no backup of {host!r} in {found.name}"
                       + (f" (last attempt {history['last_attempt']['status']}: "
                          f"{history['last_attempt']['error'] or 'no error recorded'})"
                          if history["last_attempt"] else ""), field="host")
    commit, text = store_devices.config_at(found, host, at)
    if new is None and old is None and len(versions) > 1:
        new, old = versions[0]["commit"], versions[1]["commit"]
    diff = None
    if old is not None or new is not None:
        if old is None or new is None:
            raise InputError("a comparison needs both versions: from and to", field="from")
        diff = BackupRepo(found.path).diff(host, old, new)
    shown = next((v for v in versions if v["commit"] == commit), None)
    return render(request, "backup.html", who, repo=found.name, host=host,
                  history=history, versions=versions, old=old, new=new, diff=diff,
                  commit=commit, config=text, shown=shown,
                  download=f"/api/backups/{quote(host, safe='')}/config?"
                           + urlencode({"repo": found.name, "at": commit, "download": 1}))


# -- API ------------------------------------------------------------------------------------


def device_history(request: Request, repo: Repo, host: str) -> dict[str, Any]:
    """A device's versions in a repository, newest first, each with the run that made it,
    and the last attempt of the repository's jobs on it."""
    store = services(request).results
    versions = BackupRepo(repo.path).history(host, store_devices.MAX_VERSIONS)
    made_by = store_devices.runs_of_commits(store, [v["commit"] for v in versions])
    attempts = store_devices.host_runs(store, host, 1, list(repo.jobs), real_only=True) \
        if repo.jobs else []
    if not versions and not attempts:
        raise NotFound(f"no backup of {host!r} in {repo.name}, and no run of its jobs "
                       f"({', '.join(repo.jobs) or 'none'}) tried one", field="host")
    return {"repo": repo.name, "host": host,
            "versions": [{**v, "run_id": made_by.get(v["commit"])} for v in versions],
            "last_attempt": attempts[0] if attempts else None}


@api.get("/backups", summary="Backup repositories, each with its table of devices: last "
         "backup, last attempt, versions, state (ok, failed, never)")
def list_backups(request: Request, _who: Viewer, repo: str | None = None,
                 state: str | None = None,
                 search: str | None = None) -> list[dict[str, Any]]:
    repos = repos_of(request)
    chosen = [repository(repos, repo)] if repo is not None else repos
    out = []
    for found in chosen:
        table = _table(request, found, state, search)
        out.append({"repo": found.name, "path": str(found.path), "jobs": list(found.jobs),
                    "hosts": BackupRepo(found.path).hosts(), "counts": table["counts"],
                    "inventory_error": table["inventory_error"],
                    "targets_errors": table["targets_errors"],
                    "devices": table["rows"]})
    return out


@api.get("/backups/{host:path}/diff", summary="Diff of a device's backup between two "
         "versions")
def backup_diff(request: Request, host: str, _who: Viewer,
                old: Annotated[str, Query(alias="from", description="commit id")],
                new: Annotated[str, Query(alias="to", description="commit id")],
                repo: str | None = None) -> dict[str, Any]:
    found = _repo_for(request, repo, host)
    device_history(request, found, host)  # NotFound for a device the repository lacks
    return {"repo": found.name, "host": host, "from": old, "to": new,
            "diff": BackupRepo(found.path).diff(host, old, new)}


@api.get("/backups/{host:path}/config", summary="A device's config at a version (`at`: a "
         "commit id; the newest without it), as text; `download=1` to save it as a file",
         response_class=PlainTextResponse)
def backup_config(request: Request, host: str, _who: Viewer, repo: str | None = None,
                  at: str | None = None, download: bool = False) -> PlainTextResponse:
    found = _repo_for(request, repo, host)
    commit, text = store_devices.config_at(found, host, at)
    headers = {"X-Backup-Commit": commit, "X-Backup-Repo": quote(found.name)}
    if download:
        name = f"{file_name(host).removesuffix('.cfg')}-{commit[:10]}.cfg"
        headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return PlainTextResponse(text, headers=headers)


@api.get("/backups/{host:path}", summary="A device's backup versions, newest first, each "
         "with the run that made it, and the last attempt")
def backup_history(request: Request, host: str, _who: Viewer,
                   repo: str | None = None) -> dict[str, Any]:
    return device_history(request, _repo_for(request, repo, host), host)
