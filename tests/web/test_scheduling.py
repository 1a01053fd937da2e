"""Scheduling in a real `runner web` (issue 26): a run inside a blackout window refused over
HTTP naming it, an admin's override recorded; a workflow run that a real `runner serve`
made, as the API's documents, its page and its SVG graph; the schedules page showing the
window and a freshness job's figures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from xml.etree import ElementTree

import httpx
import pytest

from runner.lab.netns import wait_for
from tests.support.base import ROOT
from tests.support.fleet import Fleet
from tests.support.jobs import write_job
from tests.support.web import Web


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory, fleet: Fleet) -> Iterator[Web]:
    workdir = tmp_path_factory.mktemp("web-scheduling")
    jobs = workdir / "jobs"
    two = {"hosts": fleet.healthy()[:2]}
    write_job(jobs, "audit", targets=two, driver="asyncssh", steps=[{"command": "show clock"}])
    write_job(jobs, "backup", targets=two, driver="asyncssh", schedule={"interval": "2s"},
              freshness="10m", steps=[{"backup": {"dir": str(workdir / "backups")}}])
    write_job(jobs, "verify", targets=two, driver="asyncssh",
              after={"job": "backup", "when": "success"}, steps=[{"command": "show clock"}])
    write_job(jobs, "page", targets=two, driver="asyncssh",
              after={"job": "backup", "when": "failure"}, steps=[{"command": "show clock"}])
    now = datetime.now(UTC)
    (jobs / "blackouts.yml").write_text(
        "blackouts:\n  - {name: cab-freeze, jobs: [audit], description: CAB-77, start: '"
        f"{now - timedelta(hours=1):%Y-%m-%d %H:%M}', end: '"
        f"{now + timedelta(hours=2):%Y-%m-%d %H:%M}'}}\n", encoding="utf-8")
    server = Web(workdir, jobs, fleet.inventory)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def flow(web: Web) -> str:
    """A workflow run made by a real `runner serve` on the web's database: its id."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNNER_")}
    log = web.workdir / "serve.log"
    proc = subprocess.Popen(web.argv("serve", "--jobs", str(web.jobs), "-i",
                                     str(web.inventory), "--templates",
                                     str(ROOT / "templates"), "--engine", "local"),
                            cwd=web.workdir, env=env, stdout=subprocess.DEVNULL,
                            stderr=log.open("w"))
    try:
        wait_for(lambda: "workflow wf" in log.read_text() and " finished: ok" in
                 log.read_text(), 120, "a workflow run to finish")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(120) == 0, log.read_text()[-2000:]
    line = next(x for x in log.read_text().splitlines() if " finished: ok" in x
                and "workflow wf" in x)
    return line.split("workflow ")[1].split()[0]


def test_a_run_inside_a_blackout_is_refused_over_http_unless_an_admin_overrides(
        web: Web) -> None:
    op = web.client(web.token("operator", "ci-bot"))
    refused = op.post("/api/runs", json={"job": "audit"})
    assert refused.status_code == 400
    body = refused.json()
    assert "job 'audit' is in blackout cab-freeze (" in body["error"] and \
        "CAB-77" in body["error"] and body["kind"] == "BlackoutActive"
    assert op.post("/api/runs", json={"job": "audit", "override_blackout": "INC-1"}) \
        .status_code == 403
    admin = web.client(web.token("admin", "duty-manager"))
    empty = admin.post("/api/runs", json={"job": "audit", "override_blackout": " "})
    assert empty.status_code == 400 and empty.json()["field"] == "override_blackout"
    forced = admin.post("/api/runs", json={"job": "audit",
                                           "override_blackout": "INC-1: clocks drift"})
    assert forced.status_code == 202, forced.text
    run_id = forced.json()["run_id"]
    web.wait_finished(admin, run_id)
    run = admin.get(f"/api/runs/{run_id}").json()
    assert run["status"] == "ok"
    held = run["blackout_override"]
    assert (held["by"], held["reason"], held["windows"]) == (
        "duty-manager", "INC-1: clocks drift", ["cab-freeze"])
    page = admin.get(f"/runs/{run_id}").text
    assert "Blackout overridden" in page and "INC-1: clocks drift" in page
    nothing = admin.post("/api/runs", json={"job": "verify", "override_blackout": "why"})
    assert nothing.status_code == 400
    assert "no blackout window holds job 'verify' now" in nothing.json()["error"]


def test_a_workflow_run_as_documents_page_and_graph(web: Web, flow: str) -> None:
    viewer = web.client(web.token("viewer", "noc"))
    listed = viewer.get("/api/workflows").json()
    assert flow in [w["id"] for w in listed]
    document = viewer.get(f"/api/workflows/{flow[:7]}").json()
    assert document["id"] == flow and document["status"] == "ok"
    steps = {s["job"]: s for s in document["steps"]}
    assert steps["backup"]["outcome"] == "ok" and steps["verify"]["outcome"] == "ok"
    assert steps["page"]["status"] == "skipped"
    assert steps["page"]["reason"] == "not run: backup ok (it waits for failure)"
    cli = web.cli("workflow", "show", flow, "--json").stdout
    assert json.loads(cli) == document
    assert viewer.get("/api/workflows/nope").status_code == 404
    page = viewer.get(f"/workflows/{flow}")
    assert page.status_code == 200 and f"/workflows/{flow}/graph.svg" in page.text
    assert "not run: backup ok (it waits for failure)" in page.text
    svg = viewer.get(f"/workflows/{flow}/graph.svg")
    assert svg.headers["content-type"].startswith("image/svg+xml")
    tree = ElementTree.fromstring(svg.text)  # noqa: S314 (our own server's drawing)
    ns = "{http://www.w3.org/2000/svg}"
    states = {g.get("data-job"): g.get("data-state") for g in tree.iter(f"{ns}g")}
    assert states == {"backup": "ok", "verify": "ok", "page": "not run"}
    edges = {(p.get("data-from"), p.get("data-to")) for p in tree.iter(f"{ns}path")
             if p.get("class") == "edge"}
    assert edges == {("backup", "verify"), ("backup", "page")}
    run_page = viewer.get(f"/runs/{steps['verify']['run_id']}").text
    assert f'href="/workflows/{flow}"' in run_page
    assert "Workflows" in viewer.get("/workflows").text


def test_the_schedules_page_shows_windows_workflows_and_freshness(web: Web, flow: str) -> None:
    viewer = web.client(web.token("viewer", "ops"))
    page = viewer.get("/schedules").text
    assert "Followed by" in page and "page, verify" in page and "Blackout" in page
    assert "every device within 10m00s" in page
    listed = {s["job"]: s for s in viewer.get("/api/schedules").json()}
    assert listed["backup"]["children"] == ["page", "verify"]
    assert listed["verify"]["after"] == {"join": "all", "parents": [
        {"job": "backup", "when": "success"}]}
    fresh = listed["backup"]["freshness"]
    assert fresh["devices"] == 2 and fresh["never"] == 0 and fresh["freshness_s"] == 600
    assert "audit" not in listed  # started by nothing but people
    anonymous = httpx.get(f"{web.base}/api/workflows")
    assert anonymous.status_code == 401
