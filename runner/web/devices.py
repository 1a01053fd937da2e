"""Devices in the web: /devices (search by name, group, platform, last run's status) and
/devices/NAME (facts, runs, backups, compliance, lease), with GET /api/devices and
/api/devices/NAME as `runner device [NAME] --json` prints them. The inventory and the
jobs' backup repositories are read once and again only when their files change."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse

from runner.errors import NotFound
from runner.inventory.fleet import FleetInventory
from runner.inventory.loading import load_inventory
from runner.job.backup_index import Repo, repositories
from runner.store import devices as store_devices
from runner.vocab import DeviceStatus
from runner.web.auth import Principal, viewer
from runner.web.services import services

pages = APIRouter(include_in_schema=False)
api = APIRouter(prefix="/api")
Viewer = Annotated[Principal, Depends(viewer)]
DEVICES_PER_PAGE = 500
MAX_PAGES = 10**6
T = TypeVar("T")


class _Cached:
    """A value made from files, made again when any of them changed (size or time)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: dict[str, tuple[tuple[Any, ...], Any]] = {}

    @staticmethod
    def _signature(paths: list[Path]) -> tuple[Any, ...]:
        out: list[Any] = []
        for path in paths:
            try:
                st = path.stat()
            except OSError:
                out.append((str(path), None))
                continue
            out.append((str(path), st.st_mtime_ns, st.st_size))
        return tuple(out)

    def get(self, key: str, paths: Callable[[], list[Path]], make: Callable[[], T]) -> T:
        signature = self._signature(paths())
        with self._lock:
            kept = self._kept.get(key)
            if kept is not None and kept[0] == signature:
                value: T = kept[1]
                return value
        value = make()
        with self._lock:
            self._kept[key] = (signature, value)
        return value


_CACHE = _Cached()


def _files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return [directory]
    return [directory, *sorted(p for p in directory.iterdir() if p.suffix in (".yml", ".yaml"))]


def fleet_of(request: Request) -> FleetInventory:
    """The inventory `runner web` was started with (InventoryError when it cannot be
    read: the page or the API names the file and line)."""
    path = services(request).config.inventory
    return _CACHE.get(f"inventory:{path}", lambda: _files(path), lambda: load_inventory(path))


def repos_of(request: Request) -> list[Repo]:
    """The backup repositories of the jobs directory's jobs and of --backups."""
    config = services(request).config
    return _CACHE.get(f"repos:{config.jobs_dir}:{config.backups}",
                      lambda: _files(config.jobs_dir),
                      lambda: repositories(config.jobs_dir, config.backups))


def _filter(search: str | None, group: str | None, platform: str | None,
            status: str | None) -> store_devices.DeviceFilter:
    return store_devices.DeviceFilter(search or None, group or None, platform or None,
                                      status or None)


# -- pages ----------------------------------------------------------------------------------


@pages.get("/devices")
def devices_page(request: Request, who: Viewer, q: str | None = None,
                 group: str | None = None, platform: str | None = None,
                 status: str | None = None,
                 page: Annotated[int, Query(ge=1, le=MAX_PAGES)] = 1) -> HTMLResponse:
    from runner.web.pages import render

    svc = services(request)
    fleet = fleet_of(request)
    total, rows = store_devices.device_list(
        svc.results, fleet, _filter(q, group, platform, status), DEVICES_PER_PAGE,
        (page - 1) * DEVICES_PER_PAGE)
    pages_n = max(1, math.ceil(total / DEVICES_PER_PAGE))
    if page > pages_n:
        raise NotFound(f"page {page} of the devices does not exist (there are {pages_n})",
                       field="page")
    query = {k: v for k, v in (("q", q), ("group", group), ("platform", platform),
                               ("status", status)) if v}
    return render(request, "devices.html", who, rows=rows, total=total,
                  inventory=len(fleet.hosts), page=page, pages=pages_n, filters=query,
                  query=urlencode(query), groups=sorted(fleet.nornir.groups),
                  platforms=store_devices.platforms_of(fleet),
                  statuses=[*DeviceStatus, store_devices.NEVER])


@pages.get("/devices/{name:path}")
def device_page(request: Request, name: str, who: Viewer) -> HTMLResponse:
    from runner.web.pages import render

    svc = services(request)
    document = store_devices.device_document(svc.results, fleet_of(request),
                                             repos_of(request), svc.config.settings, name)
    return render(request, "device_story.html", who, d=document)


# -- API --------------------------------------------------------------------------------------


@api.get("/devices", summary="The inventory's devices with their last run (`runner device "
         "--json`); search by name or address, group, platform, last run's status (`never`: "
         "no run recorded the device)")
def list_devices(request: Request, response: Response, _who: Viewer,
                 search: str | None = None, group: str | None = None,
                 platform: str | None = None, status: str | None = None,
                 limit: Annotated[int, Query(ge=1, le=10_000)] = 500,
                 offset: Annotated[int, Query(ge=0, le=10**9)] = 0) -> list[dict[str, Any]]:
    total, rows = store_devices.device_list(
        services(request).results, fleet_of(request), _filter(search, group, platform,
                                                                status), limit, offset)
    response.headers["X-Total-Count"] = str(total)
    return rows


@api.get("/devices/{name:path}", summary="One device (`runner device NAME --json`): facts "
         "without secrets, newest runs, backups and `last_backup`, compliance, its lease")
def get_device(request: Request, name: str, _who: Viewer) -> dict[str, Any]:
    svc = services(request)
    return store_devices.device_document(svc.results, fleet_of(request), repos_of(request),
                                         svc.config.settings, name)
