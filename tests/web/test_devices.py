"""Devices and backups over HTTP from a real `runner web` on simulated devices: the device
listing and its filters, a device's document equal to `runner device NAME --json` (no
secret in it), its lease while a run holds it, each backup repository's table (a device
that never backed up is listed with its login error), configs at any version, their
download and diffs; and errors as runner's documents and pages, never the framework's."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
import yaml

from runner.execution.control.keys import device_key
from runner.execution.leases import LocalLeases
from runner.job.backups import BackupRepo
from tests.support.fleet import Fleet
from tests.support.web import Web


def _password(fleet: Fleet) -> str:
    defaults = yaml.safe_load((fleet.inventory / "defaults.yaml").read_text())
    return str(defaults["password"])


def _repo(viewer: httpx.Client, web: Web) -> dict[str, object]:
    listed = viewer.get("/api/backups").json()
    return next(r for r in listed if r["path"] == str(web.workdir / "backups"))


def test_the_device_listing_and_its_filters(web: Web, fleet: Fleet, viewer: httpx.Client,
                                            story: dict[str, str]) -> None:
    every = viewer.get("/api/devices")
    assert every.status_code == 200 and every.headers["X-Total-Count"] == "8"
    names = [d["device"] for d in every.json()]
    hosts = list(yaml.safe_load((fleet.inventory / "hosts.yaml").read_text()))
    assert names == hosts  # inventory order
    refusing = fleet.refusing[0]
    row = next(d for d in every.json() if d["device"] == refusing)
    assert row["platform"] == "cisco_ios" and row["groups"] == ["sim"]
    assert row["last_run"]["status"] == "auth_failed" and row["last_run"]["error"]
    assert row["last_run"]["run_id"] == story["ntp"]
    failed = viewer.get("/api/devices", params={"status": "auth_failed"}).json()
    assert [d["device"] for d in failed] == [refusing]
    ran = {story_host for story_host in [*fleet.refusing, *fleet.healthy()[:3],
                                         fleet.healthy()[5]]}
    never = viewer.get("/api/devices", params={"status": "never"}).json()
    assert {d["device"] for d in never} == set(hosts) - ran
    one = viewer.get("/api/devices", params={"search": fleet.healthy()[1].upper()}).json()
    assert [d["device"] for d in one] == [fleet.healthy()[1]]
    assert len(viewer.get("/api/devices", params={"group": "sim"}).json()) == 8
    assert viewer.get("/api/devices", params={"platform": "juniper_junos"}).json() == []
    page = viewer.get("/api/devices", params={"limit": 3, "offset": 6})
    assert [d["device"] for d in page.json()] == hosts[6:] and \
        page.headers["X-Total-Count"] == "8"
    for bad, field in (({"status": "bogus"}, "status"), ({"group": "nogroup"}, "group")):
        answer = viewer.get("/api/devices", params=bad)
        assert answer.status_code == 400 and answer.json()["field"] == field
    # the same listing `runner device --json` prints
    cli = web.cli("device", "--json", "-i", str(fleet.inventory), "--status", "auth_failed")
    assert json.loads(cli.stdout) == failed
    table = web.cli("device", "-i", str(fleet.inventory)).stdout
    assert refusing in table and "auth_failed" in table and "never" in table


def test_a_device_document_equals_the_cli_and_holds_no_secret(
        web: Web, fleet: Fleet, viewer: httpx.Client, story: dict[str, str]) -> None:
    host = fleet.healthy()[0]
    document = viewer.get(f"/api/devices/{host}").json()
    cli = web.cli("device", host, "--json", "-i", str(fleet.inventory), "--jobs",
                  str(web.jobs))
    assert json.loads(cli.stdout) == document
    assert document["hostname"].startswith("127.114.0.") and document["port"] > 0
    assert document["data"] == {"lab": "sim"}
    assert [r["run_id"] for r in document["runs"]] == [story["more"], story["ntp"]]
    assert document["last_run"]["status"] == "changed"
    backup = document["backups"][0]
    assert backup["state"] == "ok" and backup["versions"] == 2
    assert document["last_backup"]["run_id"] == story["more"]
    assert document["last_backup"]["commit"] == backup["last_backup"]["commit"]
    assert document["lease"] is None
    assert document["compliance"] == []
    text = json.dumps(document) + cli.stdout + web.cli(
        "device", host, "-i", str(fleet.inventory), "--jobs", str(web.jobs)).stdout
    assert _password(fleet) not in text and "password" not in text
    # compliance when present; a device that never ran has no runs and no backup
    checked = viewer.get(f"/api/devices/{fleet.healthy()[5]}").json()
    assert {c["feature"] for c in checked["compliance"]} == {"ntp", "logging"}
    assert checked["compliance"][0]["run_id"] == story["golden"]
    idle = viewer.get(f"/api/devices/{fleet.healthy()[4]}").json()
    assert idle["runs"] == [] and idle["last_run"] is None and idle["last_backup"] is None
    # the refusing device: never backed up, its last attempt and its error
    refused = viewer.get(f"/api/devices/{fleet.refusing[0]}").json()
    assert refused["backups"][0]["state"] == "never"
    assert refused["backups"][0]["last_attempt"]["status"] == "auth_failed"
    assert refused["last_backup"] is None
    missing = viewer.get("/api/devices/no-such-device")
    assert missing.status_code == 404 and missing.json()["kind"] == "NotFound"
    out = web.cli("device", "no-such-device", "-i", str(fleet.inventory), check=False)
    assert out.returncode == 2 and "no-such-device" in out.stderr


def test_a_device_shows_who_holds_its_lease(web: Web, fleet: Fleet,
                                            viewer: httpx.Client) -> None:
    host = fleet.healthy()[4]
    inventory = yaml.safe_load((fleet.inventory / "hosts.yaml").read_text())
    address = device_key(inventory[host]["hostname"], inventory[host]["port"])
    leases = LocalLeases(Path(web.env["RUNNER_LOCK_DIR"]), "tester@ci:run1234")

    async def held() -> dict[str, object]:
        async with leases.lease(address, 0):
            answer: dict[str, object] = viewer.get(f"/api/devices/{host}").json()
            return answer

    during = asyncio.run(held())
    assert during["lease"] == {"holder": "tester@ci:run1234", "via": "lock file",
                               "expires_in_s": None}
    assert viewer.get(f"/api/devices/{host}").json()["lease"] is None


def test_the_backup_table_lists_every_targeted_device(
        web: Web, fleet: Fleet, viewer: httpx.Client, story: dict[str, str]) -> None:
    repo = _repo(viewer, web)
    assert repo["jobs"] == ["ntp", "ntp-more"]
    rows = {r["host"]: r for r in repo["devices"]}  # type: ignore[attr-defined]
    assert set(rows) == {*fleet.refusing, *fleet.healthy()[:3]}
    never = rows[fleet.refusing[0]]
    assert never["state"] == "never" and never["versions"] == 0
    assert never["last_attempt"]["status"] == "auth_failed"
    assert never["last_attempt"]["error"] and never["last_attempt"]["run_id"] == story["ntp"]
    assert next(iter(rows)) == fleet.refusing[0]  # failed and never first
    twice = rows[fleet.healthy()[0]]
    assert twice["state"] == "ok" and twice["versions"] == 2
    assert twice["last_backup"]["run_id"] == story["more"]
    assert twice["last_attempt"]["run_id"] == story["more"]
    once = rows[fleet.healthy()[1]]
    assert once["versions"] == 1 and once["last_backup"]["run_id"] == story["ntp"]
    assert repo["counts"] == {"never": 1, "failed": 0, "ok": 3}
    only = viewer.get("/api/backups", params={"repo": str(repo["repo"]), "state": "never"}).json()
    assert [r["host"] for r in only[0]["devices"]] == fleet.refusing
    assert viewer.get("/api/backups", params={"state": "bad"}).status_code == 400
    assert viewer.get("/api/backups", params={"repo": "nope"}).status_code == 404


def test_a_config_at_any_version_its_download_and_diff(
        web: Web, fleet: Fleet, viewer: httpx.Client, story: dict[str, str]) -> None:
    host = fleet.healthy()[0]
    name = str(_repo(viewer, web)["repo"])
    history = viewer.get(f"/api/backups/{host}", params={"repo": name}).json()
    newest, oldest = history["versions"]
    assert [newest["run_id"], oldest["run_id"]] == [story["more"], story["ntp"]]
    assert history["last_attempt"]["status"] == "changed"
    repo = BackupRepo(web.workdir / "backups")
    latest = viewer.get(f"/api/backups/{host}/config")  # one repository: no name needed
    assert latest.status_code == 200 and latest.headers["content-type"].startswith(
        "text/plain")
    assert latest.text == repo.text_at(host, newest["commit"])
    assert latest.headers["X-Backup-Commit"] == newest["commit"]
    assert story["line"] + "\n" in latest.text
    older = viewer.get(f"/api/backups/{host}/config", params={"at": oldest["commit"][:8]})
    assert older.text == repo.text_at(host, oldest["commit"])
    assert "ntp server 192.0.2.10" in older.text and story["line"] + "\n" not in older.text
    saved = viewer.get(f"/api/backups/{host}/config", params={"download": 1,
                                                              "at": oldest["commit"]})
    assert saved.headers["Content-Disposition"] == \
        f'attachment; filename="{host}-{oldest["commit"][:10]}.cfg"'
    diff = viewer.get(f"/api/backups/{host}/diff", params={
        "from": oldest["commit"], "to": newest["commit"]}).json()["diff"]
    assert f"+{story['line']}\n" in diff
    for params, status in (({"at": "zz"}, 400), ({"at": "abcdef12"}, 404)):
        answer = viewer.get(f"/api/backups/{host}/config", params=params)
        assert answer.status_code == status and "error" in answer.json()
    assert viewer.get("/api/backups/no-such-host/config").status_code == 404
    # the refusing device has no version: 404 naming why
    refused = viewer.get(f"/api/backups/{fleet.refusing[0]}/config")
    assert refused.status_code == 404


# -- errors: runner's documents and pages, never the framework's ----------------------------

PAGES_BAD = [
    ("/runs?page=abc", 400, "page"),
    ("/runs?page=999", 404, "page 999"),
    ("/runs?page=0", 400, "page"),
    ("/devices?page=abc", 400, "page"),
    ("/devices?page=50", 404, "page 50"),
    ("/devices?status=bogus", 400, "bogus"),
    ("/devices/no-such-device", 404, "no-such-device"),
    ("/backups?state=bogus", 400, "bogus"),
    ("/backups?repo=nope", 404, "nope"),
    ("/backups/no-such-host", 404, "no-such-host"),
    ("/backups/no-such-host?repo=elsewhere", 404, "elsewhere"),
    ("/compliance?page=999", 404, "page 999"),
    ("/runs/nosuchrun", 404, "nosuchrun"),
    ("/no/such/page", 404, "/no/such/page"),
    ("/workflows/nope", 404, "nope"),
]
API_BAD = [
    ("GET", "/api/runs?limit=abc", 422, "limit"),
    ("GET", "/api/schedules/nope/occurrences", 404, "nope"),
    ("GET", "/api/devices/no-such-device", 404, "no-such-device"),
    ("GET", "/api/devices?offset=-1", 422, "offset"),
    ("GET", "/api/backups/no-such-host", 404, "no-such-host"),
    ("GET", "/api/backups/no-such-host/config", 404, "no-such-host"),
    ("GET", "/api/no/such/thing", 404, "/api/no/such/thing"),
    ("DELETE", "/api/runs", 405, "DELETE"),
    ("GET", "/api/runs/nosuchrun", 404, "nosuchrun"),
]


@pytest.mark.parametrize(("path", "status", "says"), PAGES_BAD)
def test_a_bad_page_request_is_an_error_page(web: Web, viewer: httpx.Client,
                                             story: dict[str, str], path: str,
                                             status: int, says: str) -> None:
    answer = viewer.get(path)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("text/html")
    assert 'role="alert"' in answer.text and says in answer.text
    assert '"detail"' not in answer.text


@pytest.mark.parametrize(("method", "path", "status", "says"), API_BAD)
def test_a_bad_api_request_is_a_json_error(web: Web, viewer: httpx.Client, method: str,
                                           path: str, status: int, says: str) -> None:
    answer = viewer.request(method, path)
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert "detail" not in body and says in body["error"]
    assert status == 422 or body["kind"] in ("NotFound", "InputError")


def test_the_last_existing_page_is_still_served(viewer: httpx.Client,
                                                story: dict[str, str]) -> None:
    assert viewer.get("/runs", params={"page": 1}).status_code == 200
    assert viewer.get("/devices", params={"page": 1}).status_code == 200
