"""The operator's views through the API (issue 27) on a real `runner web` and simulated
devices: a run as it goes (`GET /api/runs/ID/live`: its grid, failures, devices in
progress), rerunning a run's failed devices or chosen statuses (`POST /api/runs/ID/rerun`),
a job's own document, the scheduler's state with a lease left behind or held, pausing and
resuming a schedule, occurrences due with no scheduler running, invalid job files in
`GET /api/jobs` with their file:line error and what serve does with them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
import yaml

from runner.job.load import load_job
from runner.lab.netns import wait_for
from runner.schedule.jobsdir import scheduled_from
from runner.store.schedule import ScheduleStore
from tests.support.fleet import Fleet
from tests.support.jobs import write_job
from tests.support.web import Web


@pytest.fixture(scope="module")
def op(web: Web) -> httpx.Client:
    return web.client(web.token("operator", "olga"))


@pytest.fixture(scope="module")
def viewer(web: Web) -> httpx.Client:
    return web.client(web.token("viewer", "vera"))


@pytest.fixture(scope="module")
def probe(web: Web, fleet: Fleet) -> str:
    """A read-only job on a device that refuses logins and a healthy one."""
    write_job(web.jobs, "probe", targets={"hosts": [*fleet.refusing, fleet.healthy()[0]]},
              driver="asyncssh", steps=[{"command": "show version"}])
    return "probe"


def test_rerun_a_runs_failed_devices_or_chosen_statuses(
        web: Web, op: httpx.Client, viewer: httpx.Client, fleet: Fleet, probe: str) -> None:
    first = op.post("/api/runs", json={"job": probe}).json()["run_id"]
    web.wait_finished(op, first)
    again = op.post(f"/api/runs/{first}/rerun")
    assert again.status_code == 202, again.text
    body = again.json()
    assert (body["rerun_of"], body["job"], body["started_by"]) == (first, probe, "olga")
    assert again.headers["location"] == f"/api/runs/{body['run_id']}"
    web.wait_finished(op, body["run_id"])
    rerun = op.get(f"/api/runs/{body['run_id']}").json()
    assert rerun["rerun_of"] == first
    assert [d["host"] for d in rerun["devices"]] == fleet.refusing  # the failed one only

    chosen = op.post(f"/api/runs/{first}/rerun", json={"status": ["ok"]})
    assert chosen.status_code == 202, chosen.text
    web.wait_finished(op, chosen.json()["run_id"])
    ok_only = op.get(f"/api/runs/{chosen.json()['run_id']}").json()
    assert [d["host"] for d in ok_only["devices"]] == [fleet.healthy()[0]]

    live = op.get(f"/api/runs/{first}/live").json()
    assert [r["run_id"] for r in live["reruns"]] == [body["run_id"], chosen.json()["run_id"]]
    assert op.get(f"/api/runs/{first}").json()["reruns"] == [body["run_id"],
                                                              chosen.json()["run_id"]]
    assert [d["host"] for d in live["failed"]] == fleet.refusing
    assert live["failed"][0]["error_class"] == "AuthFailed"
    assert live["in_progress"] == [] and live["done"] == live["total"] == 2

    empty = op.post(f"/api/runs/{first}/rerun", json={"status": []})
    assert empty.status_code == 400 and empty.json()["field"] == "status"
    bogus = op.post(f"/api/runs/{first}/rerun", json={"status": ["bogus"]})
    assert bogus.status_code == 422 and bogus.json()["field"].startswith("status")
    extra = op.post(f"/api/runs/{first}/rerun", json={"statuses": ["ok"]})
    assert extra.status_code == 422
    assert viewer.post(f"/api/runs/{first}/rerun").status_code == 403
    assert op.post("/api/runs/ffffffffffff/rerun").status_code == 404
    none = op.post(f"/api/runs/{chosen.json()['run_id']}/rerun")  # all ok: nothing to do
    assert none.status_code == 409 and "no device" in none.json()["error"]


def test_a_running_runs_live_document(web: Web, op: httpx.Client, fleet: Fleet) -> None:
    run_id = op.post("/api/runs", json={"job": "slow"}).json()["run_id"]
    try:
        # the healthy device ends at once; the slow one answers each line after 20 s
        wait_for(lambda: op.get(f"/api/runs/{run_id}/live").json()["done"] == 1, 60,
                 "the quick device's record")
        live = op.get(f"/api/runs/{run_id}/live").json()
        assert live["status"] == "running" and live["total"] == 2
        assert [d["host"] for d in live["devices"]] == [fleet.healthy()[0]]
        assert [d["host"] for d in live["in_progress"]] == fleet.slow
        assert live["in_progress"][0]["elapsed_s"] >= 0 and live["in_progress_total"] == 1
        # the slow device's own start, as the run's process stored it
        assert live["in_progress"][0]["started"] >= live["started"]
        assert live["waiting"] == 0
        starting = op.post(f"/api/runs/{run_id}/rerun")
        assert starting.status_code == 400 and "running" in starting.json()["error"]
    finally:
        op.post(f"/api/runs/{run_id}/cancel")
        web.wait_finished(op, run_id)
    assert op.get(f"/api/runs/{run_id}/live").json()["in_progress"] == []


def test_a_jobs_own_document(op: httpx.Client, fleet: Fleet) -> None:
    job = op.get("/api/jobs/facts").json()
    assert job["hosts"] == fleet.healthy()[:2] and job["targets"] == {"hosts": fleet.healthy()[:2]}
    assert "show version" in job["yaml"] and job["schedule"]["job"] == "facts"
    assert job["scheduler"]["running"] is False
    assert op.get("/api/jobs/no-such-job").status_code == 404


def test_a_jobs_document_masks_every_kind_of_secret(web: Web, op: httpx.Client,
                                                   fleet: Fleet) -> None:
    """A job file may carry secrets as a secret-named key, as config lines of any
    platform, inside a string, or as the device password pasted in: the page and the
    document show none of them (the rest of the file as written)."""
    password = yaml.safe_load((fleet.inventory / "defaults.yaml").read_text())["password"]
    secrets = ["Key-Named-1", "Flow-Named-2", "Sup3r-Local-3", "C0mmun1ty-4", "0822455D0A165",
               "Tacacs-Key-6", "Bgp-Neighbor-7", "Inline-Token-8", password]
    text = f"""name: leaky
targets: {{hosts: [{fleet.healthy()[0]}]}}
driver: asyncssh
vars:
  enable_secret: {secrets[0]}
  login: {{user: ops, password: {secrets[1]}}}
  device_login: "{secrets[8]}"
steps:
  - config:
      lines:
        - username ops privilege 15 secret 0 {secrets[2]}
        - snmp-server community {secrets[3]} RO
        - enable password 7 {secrets[4]}
        - tacacs-server key {secrets[5]}
        - neighbor 192.0.2.1 password {secrets[6]}
  - command: "show run | include token={secrets[7]}"
"""
    write_job(web.jobs, "leaky", text=text)
    document = op.get("/api/jobs/leaky")
    page = op.get("/jobs/leaky")
    assert document.status_code == 200 and page.status_code == 200, document.text
    for shown in (document.text, page.text):
        leaked = [s for s in secrets if s in shown]
        assert leaked == [], leaked
    data = document.json()
    assert "snmp-server community ******** RO" in data["yaml"]
    assert "username ops privilege 15 secret 0 ********" in data["yaml"]
    assert "show run | include" in data["yaml"] and "name: leaky" in data["yaml"]
    assert data["vars"]["login"]["user"] == "ops"


def test_scheduler_state_pause_resume_and_overdue(web: Web, op: httpx.Client,
                                                  viewer: httpx.Client) -> None:
    store = ScheduleStore(web.db)
    state = op.get("/api/scheduler").json()
    assert (state["running"], state["holder"], state["stale"]) == (False, None, False)

    # a lease left by a scheduler on another machine that stopped beating: stale
    now = datetime.now(UTC).timestamp()
    assert store.acquire("elsewhere:4242", now - 120, 15) == (True, None)
    state = op.get("/api/scheduler").json()
    assert (state["running"], state["holder"], state["stale"]) == (False, "elsewhere:4242",
                                                                   True)
    assert "lapsed" in state["detail"] and state["heartbeat_age_s"] >= 120
    # occurrences due while nothing ran: listed as missed, saying why
    sched = scheduled_from(load_job(web.jobs / "facts.yml"))
    assert sched is not None
    first = sched.trigger.next_after(datetime.now(UTC) - timedelta(hours=4))
    assert first is not None
    store.set_next_fire("facts", sched.key, first)  # what serve stored before it stopped
    facts = next(s for s in op.get("/api/schedules").json() if s["job"] == "facts")
    assert len(facts["overdue"]) == 4  # hourly, from 3-4 hours ago up to the last hour
    assert facts["overdue"][-1]["occurrence"] == first.isoformat()  # newest first
    assert all("no scheduler running" in o["reason"] for o in facts["overdue"])
    assert store.acquire("elsewhere:4242", now, 15) == (True, None)  # beating again
    state = op.get("/api/scheduler").json()
    assert (state["running"], state["holder"], state["stale"]) == (True, "elsewhere:4242",
                                                                   False)
    facts = next(s for s in op.get("/api/schedules").json() if s["job"] == "facts")
    assert facts["overdue"] == []  # a scheduler runs: it handles them
    store.release("elsewhere:4242")

    paused = op.post("/api/schedules/facts/pause", json={"reason": "CHG-7 freeze"})
    assert paused.status_code == 200, paused.text
    assert (paused.json()["paused_by"], paused.json()["reason"]) == ("olga", "CHG-7 freeze")
    assert op.get("/api/scheduler").json()["paused"][0]["job"] == "facts"
    facts = next(s for s in viewer.get("/api/schedules").json() if s["job"] == "facts")
    assert facts["paused"]["paused_by"] == "olga"
    assert viewer.post("/api/schedules/facts/resume").status_code == 403
    assert op.post("/api/schedules/facts/resume").json() == {"job": "facts", "paused": False}
    again = op.post("/api/schedules/facts/resume")
    assert again.status_code == 404 and "not paused" in again.json()["error"]
    unknown = op.post("/api/schedules/nope/pause")
    assert unknown.status_code == 404 and "no scheduled job named 'nope'" in \
        unknown.json()["error"]
    assert op.post("/api/schedules/probe/pause").status_code in (404,)  # not scheduled
    assert op.post("/api/schedules/facts/pause", json={"why": "x"}).status_code == 422


def test_invalid_job_files_are_listed_with_their_line(web: Web, op: httpx.Client) -> None:
    broken = web.jobs / "broken.yml"
    broken.write_text("name: broken\nsteps:\n  - command: show clock\nschedule:\n"
                      "  every: 5m\n", encoding="utf-8")
    try:
        listed = op.get("/api/jobs").json()
        assert "broken" not in [j["job"] for j in listed["jobs"]]
        (bad,) = [f for f in listed["invalid"] if f["file"].endswith("broken.yml")]
        assert bad["error"] == f"{broken}:5: schedule.every: unknown field"
        assert bad["serve"] == "not scheduled: no scheduler is running"
        assert op.get("/api/scheduler").json()["invalid"] == listed["invalid"]
        answer = op.get("/api/jobs/broken")
        assert answer.status_code == 400 and "schedule.every" in answer.json()["error"]
    finally:
        broken.unlink()
    assert op.get("/api/jobs").json()["invalid"] == []
