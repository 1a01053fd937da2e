"""The REST API of a real `runner web` process over HTTP: tokens and roles, the documents the
CLI prints, runs started, cancelled, approved and rejected on simulated devices, schedules,
backups, labs and metrics."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from xml.etree import ElementTree

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from runner.job.backups import BackupRepo
from runner.lab.netns import wait_for
from runner.records import DeviceResult, RunResult, StepResult
from runner.store.results import ResultsStore
from runner.store.schedule import ScheduleStore
from runner.vocab import DeviceStatus, OccurrenceStatus, StepKind
from tests.support.base import ME, ROOT
from tests.support.fleet import Fleet, on_device
from tests.support.web import Web, fake_lab


@pytest.fixture(scope="module")
def tokens(web: Web) -> dict[str, str]:
    return {"operator": web.token("operator", "ci-bot"), "viewer": web.token("viewer", "noc")}


@pytest.fixture(scope="module")
def op(web: Web, tokens: dict[str, str]) -> httpx.Client:
    return web.client(tokens["operator"])


@pytest.fixture(scope="module")
def viewer(web: Web, tokens: dict[str, str]) -> httpx.Client:
    return web.client(tokens["viewer"])


def _store(web: Web) -> ResultsStore:
    return ResultsStore(web.db)


def _history(web: Web) -> list[RunResult]:
    """Finished runs of two audit jobs over three days, written through the results store
    as `runner run` writes them: 12 runs, every third failed, one of them with a device
    whose error holds an inventory password masked as the engine masks it."""
    store = _store(web)
    made = []
    for i in range(12):
        job = "audit-a" if i % 2 == 0 else "audit-b"
        day = 10 + i // 4
        failed = i % 3 == 0
        run = RunResult(run_id=f"hist{i:08d}", job=job, started=f"2026-01-{day}T0{i % 4}:00"
                        ":00.000+00:00", finished=f"2026-01-{day}T0{i % 4}:00:09.500+00:00",
                        devices=[])
        store.start_run(run, ["a1", "a2"])
        run.devices = [
            DeviceResult("a1", DeviceStatus.OK, duration_s=1.5, steps=[
                StepResult("show version", StepKind.COMMAND, output="IOS 15.2",
                           parsed={"version": "15.2"})]),
            DeviceResult("a2", DeviceStatus.FAILED if failed else DeviceStatus.CHANGED,
                         changed=not failed, duration_s=3.0,
                         error="% Invalid input detected (password ****)" if failed else None,
                         error_class="CommandRejected" if failed else None,
                         steps=[StepResult("config", StepKind.CONFIG,
                                           diff="- ntp server 192.0.2.1\n+ ntp server "
                                                "192.0.2.2\n", changed=True)])]
        store.record_devices(run.run_id, run.devices, {"a1": 0, "a2": 1})
        store.finish_run(run)
        made.append(run)
    return made


@pytest.fixture(scope="module")
def history(web: Web) -> list[RunResult]:
    return _history(web)


# -- auth -------------------------------------------------------------------------------------


def test_no_token_is_401_and_a_viewer_may_not_act(web: Web, viewer: httpx.Client,
                                                  tokens: dict[str, str]) -> None:
    anonymous = web.client()
    answer = anonymous.get("/api/runs")
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    assert "token" in answer.json()["error"]
    assert web.client("runner_000000000000_" + "x" * 43).get("/api/runs").status_code == 401
    assert web.client("not-even-a-token").get("/api/runs").status_code == 401
    assert anonymous.post("/api/runs", json={"job": "facts"}).status_code == 401
    assert viewer.get("/api/runs").status_code == 200
    refused = viewer.post("/api/runs", json={"job": "facts", "dry_run": True})
    assert refused.status_code == 403
    assert "viewer" in refused.json()["error"]
    assert viewer.post("/api/runs/whatever/cancel").status_code == 403
    assert viewer.get("/api/whoami").json() == {"name": "noc", "role": "viewer",
                                                "id": tokens["viewer"].split("_")[1]}


def test_a_revoked_token_stops_at_once(web: Web) -> None:
    secret = web.token("operator", "short-lived")
    client = web.client(secret)
    assert client.get("/api/runs").status_code == 200
    listed = json.loads(web.cli("token", "list", "--json").stdout)
    mine = next(t for t in listed if t["name"] == "short-lived")
    assert "token" not in mine and secret not in json.dumps(listed)  # only its hash is kept
    web.cli("token", "revoke", "short-lived")
    assert client.get("/api/runs").status_code == 401
    db = Path(web.db.removeprefix("sqlite:///")).read_bytes()
    assert secret.encode() not in db


# -- runs and devices -------------------------------------------------------------------------


def test_runs_newest_first_filtered_and_paged(web: Web, viewer: httpx.Client,
                                              history: list[RunResult]) -> None:
    everything = viewer.get("/api/runs", params={"since": "2026-01-10", "until":
                                                 "2026-01-12"}).json()
    assert [r["run_id"] for r in everything] == [r.run_id for r in reversed(history)]
    page = viewer.get("/api/runs", params={"job": "audit-a", "limit": 2, "offset": 2,
                                           "until": "2026-01-12"})
    assert page.headers["x-total-count"] == "6"
    assert [r["run_id"] for r in page.json()] == ["hist00000006", "hist00000004"]
    failed = viewer.get("/api/runs", params={"status": "failed", "until": "2026-01-12"})
    assert [r["run_id"] for r in failed.json()] == ["hist00000009", "hist00000006",
                                                     "hist00000003", "hist00000000"]
    one_day = viewer.get("/api/runs", params={"since": "2026-01-11", "until": "2026-01-11"})
    assert {r["run_id"] for r in one_day.json()} == {f"hist{i:08d}" for i in range(4, 8)}
    # the same document as `runner history --json`
    cli = json.loads(web.cli("history", "--json", "--job", "audit-b", "-n", "3").stdout)
    assert viewer.get("/api/runs", params={"job": "audit-b", "limit": 3}).json() == cli


def test_bad_filters_name_the_field(viewer: httpx.Client) -> None:
    answer = viewer.get("/api/runs", params={"status": "sideways"})
    assert answer.status_code == 422
    assert answer.json()["field"] == "query.status"
    answer = viewer.get("/api/runs", params={"since": "last tuesday"})
    assert answer.status_code == 400
    assert answer.json()["field"] == "since"
    assert "last tuesday" in answer.json()["error"]
    assert viewer.get("/api/runs", params={"limit": 100_000}).status_code == 422
    missing = viewer.get("/api/runs/nosuchrun")
    assert missing.status_code == 404
    assert "no run 'nosuchrun'" in missing.json()["error"]


def test_a_run_and_a_device_as_runner_show_prints_them(web: Web, viewer: httpx.Client,
                                                       history: list[RunResult]) -> None:
    run_id = history[3].run_id
    document = viewer.get(f"/api/runs/{run_id}")
    assert document.status_code == 200
    # the CLI's document, and what may be done with the run now (the page's buttons): a
    # history run whose job file is not in this server's jobs directory offers nothing
    api = document.json()
    assert api.pop("actions") == []
    # paged: a page of the devices (all of a small run), and which page it is
    assert (api.pop("devices_total"), api.pop("offset"), api.pop("limit")) == (2, 0, 100)
    assert document.headers["x-total-count"] == "2"
    shown = json.loads(web.cli("show", run_id, "--json").stdout)
    assert api == shown
    second = viewer.get(f"/api/runs/{run_id}", params={"limit": 1, "offset": 1}).json()
    assert [d["host"] for d in second["devices"]] == [shown["devices"][1]["host"]]
    assert second["devices"] == shown["devices"][1:]
    assert second["summary"] == shown["summary"]  # the whole run's counts on every page
    assert viewer.get(f"/api/runs/{run_id}", params={"limit": 1001}).status_code == 422
    device = viewer.get(f"/api/runs/{run_id}/devices/a2").json()
    assert device == json.loads(web.cli("show", run_id, "--host", "a2", "--json").stdout)
    assert device["devices"][0]["error_class"] == "CommandRejected"
    page = viewer.get(f"/api/runs/{run_id}/devices")
    assert [d["host"] for d in page.json()] == ["a2", "a1"]  # failed first
    assert "steps" not in page.json()[0]
    ambiguous = viewer.get("/api/runs/hist0000")
    assert ambiguous.status_code == 400 and "ambiguous" in ambiguous.json()["error"]
    gone = viewer.get(f"/api/runs/{run_id}/devices/zz9")
    assert gone.status_code == 404 and "no device 'zz9'" in gone.json()["error"]


# -- starting runs on the simulated fleet -----------------------------------------------------


def test_a_dry_run_started_over_http_shows_its_diff_and_sends_nothing(
        web: Web, op: httpx.Client, fleet: Fleet) -> None:
    host = fleet.healthy()[0]
    before = on_device(fleet.inventory, host, "show running-config")
    answer = op.post("/api/runs", json={"job": "ntp", "dry_run": True})
    assert answer.status_code == 202, answer.text
    run_id = answer.json()["run_id"]
    assert answer.headers["location"] == f"/api/runs/{run_id}"
    web.wait_finished(op, run_id)
    run = op.get(f"/api/runs/{run_id}").json()
    assert run["dry_run"] is True
    records = {d["host"]: d for d in run["devices"]}
    assert records[fleet.refusing[0]]["status"] == "auth_failed"
    config = next(s for s in records[host]["steps"] if s["kind"] == "config")
    assert "+ntp server 192.0.2.10" in config["diff"]  # the diff a real run would record
    assert on_device(fleet.inventory, host, "show running-config") == before
    progress = op.get(f"/api/runs/{run_id}/progress").json()
    assert (progress["done"], progress["total"]) == (4, 4)
    assert progress["summary"]["changed"] == 3


def test_bad_run_requests_name_the_field(op: httpx.Client) -> None:
    unknown = op.post("/api/runs", json={"job": "no-such-job"})
    assert unknown.status_code == 404
    assert unknown.json()["field"] == "job" and "facts" in unknown.json()["error"]
    extra = op.post("/api/runs", json={"job": "facts", "dryrun": True})
    assert extra.status_code == 422 and extra.json()["problems"][0]["field"] == "dryrun"
    typed = op.post("/api/runs", json={"job": "facts", "dry_run": "maybe"})
    assert typed.status_code == 422 and typed.json()["field"] == "dry_run"
    nobody = op.post("/api/runs", json={"job": "facts", "limit": "nosuchhost"})
    assert nobody.status_code == 400
    assert "no host" in nobody.json()["error"] and nobody.json()["field"] == "targets"


def test_cancel_a_running_run(web: Web, op: httpx.Client, fleet: Fleet) -> None:
    run_id = op.post("/api/runs", json={"job": "slow"}).json()["run_id"]
    # the healthy device finishes; the slow one answers each line after 20 s
    wait_for(lambda: op.get(f"/api/runs/{run_id}/progress").json()["done"] == 1, 60,
             "the quick device's record")
    answer = op.post(f"/api/runs/{run_id}/cancel")
    assert answer.status_code == 202
    web.wait_finished(op, run_id, 60)
    run = op.get(f"/api/runs/{run_id}").json()
    assert run["status"] == "interrupted"
    # who started and who cancelled it: the token's name, in the run's record
    assert (run["started_by"], run["cancel_requested_by"]) == ("ci-bot", "ci-bot")
    assert run["cancel_requested"] and run["actions"] == ["rerun"]  # what was interrupted
    slow = next(d for d in run["devices"] if d["host"] == fleet.slow[0])
    assert (slow["status"], slow["error_class"]) == ("failed", "Interrupted")
    again = op.post(f"/api/runs/{run_id}/cancel")
    assert again.status_code == 409 and "not running" in again.json()["error"]


def test_runs_of_other_processes_are_cancelled_through_the_store(
        web: Web, op: httpx.Client, fleet: Fleet) -> None:
    # `runner run`s of their own (not started by the web): one cancelled through the API,
    # the next with `runner cancel`; each process sees the request and ends its run
    def cancelled(how: str) -> tuple[str, str]:
        proc = subprocess.Popen(web.argv("run", str(web.jobs / "slow.yml"), "-i",
                                         str(fleet.inventory), "--templates",
                                         str(ROOT / "templates"), "--json"),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=web.env,
                                cwd=web.workdir, text=True)
        try:
            def running() -> list[str]:
                rows = op.get("/api/runs", params={"job": "slow", "status": "running"}).json()
                return [r["run_id"] for r in rows
                        if op.get(f"/api/runs/{r['run_id']}/progress").json()["done"] == 1]

            wait_for(lambda: len(running()) == 1, 60, "the run's quick device")
            run_id = running()[0]
            if how == "api":
                assert op.post(f"/api/runs/{run_id}/cancel").status_code == 202
            else:
                assert web.cli("cancel", run_id[:8]).stdout == \
                    f"cancel requested for run {run_id}\n"
            _, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 1, err
        return run_id, err

    by_api, api_log = cancelled("api")
    by_cli, cli_log = cancelled("cli")
    for run_id in (by_api, by_cli):
        run = op.get(f"/api/runs/{run_id}").json()
        assert run["status"] == "interrupted"
        slow = next(d for d in run["devices"] if d["host"] == fleet.slow[0])
        assert (slow["status"], slow["error_class"]) == ("failed", "Interrupted")
        assert len(run["devices"]) == 2
    assert f"run {by_api}: cancelled by ci-bot" in api_log
    assert f"run {by_cli}: cancelled by {ME}" in cli_log
    assert op.get(f"/api/runs/{by_api}").json()["cancel_requested_by"] == "ci-bot"
    assert op.get(f"/api/runs/{by_cli}").json()["cancel_requested_by"] == ME
    # a run that is not running cannot be cancelled, by either
    assert op.post(f"/api/runs/{by_api}/cancel").status_code == 409
    refused = web.cli("cancel", by_cli, check=False)
    assert refused.returncode == 2
    assert refused.stderr.strip() == f"error: run {by_cli} is not running (it is interrupted)"


def test_approve_and_reject_previews(web: Web, op: httpx.Client, fleet: Fleet) -> None:
    previews = []
    for _ in range(2):
        out = web.cli("schedule", "run", "logging", "--jobs", str(web.jobs), "-i",
                      str(fleet.inventory), "--templates", str(ROOT / "templates"))
        found = re.search(r"runner approve (\w+)", out.stdout)
        assert found, out.stdout
        previews.append(found.group(1))
    waiting = op.get(f"/api/runs/{previews[0]}").json()
    assert (waiting["status"], waiting["actions"]) == ("awaiting_approval",
                                                      ["approve", "reject"])
    assert waiting["started_by"] == ME  # `runner schedule run` at this command line
    rejected = op.post(f"/api/runs/{previews[0]}/reject", json={"reason": "not tonight"})
    assert rejected.status_code == 200, rejected.text
    row = op.get("/api/runs", params={"job": "logging", "status": "rejected"}).json()[0]
    assert row["decision"]["by"] == "ci-bot"  # the token's name
    assert row["decision"]["reason"] == "not tonight"
    # a rejected preview offers nothing to run, and cannot be approved after all
    assert op.get(f"/api/runs/{previews[0]}").json()["actions"] == []
    twice = op.post(f"/api/runs/{previews[0]}/approve")
    assert twice.status_code == 400 and "not awaiting approval" in twice.json()["error"]
    approved = op.post(f"/api/runs/{previews[1]}/approve")
    assert approved.status_code == 202, approved.text
    assert approved.json()["approved_by"] == "ci-bot"
    carried = approved.json()["run_id"]
    web.wait_finished(op, carried)
    run = op.get(f"/api/runs/{carried}").json()
    assert run["approves"] == previews[1] and run["started_by"] == "ci-bot"
    assert run["approval"]["preview"] == previews[1] and run["approval"]["by"] == "ci-bot"
    assert {d["status"] for d in run["devices"]} == {"changed"}
    preview = op.get(f"/api/runs/{previews[1]}").json()
    assert (preview["status"], preview["carried_out_by"]) == ("approved", carried)
    assert preview["decision"] == {"by": "ci-bot", "at": preview["decision"]["at"],
                                   "run": carried}
    assert preview["actions"] == []
    host = run["devices"][0]["host"]
    assert "logging host 192.0.2.77" in on_device(fleet.inventory, host,
                                                  "show running-config")


def _config_sessions(fleet: Fleet, host: str) -> int:
    log = on_device(fleet.inventory, host, "show archive log config all").splitlines()[1:]
    return len({line.split()[1] for line in log if line.strip()})


def test_a_change_that_needs_approval_is_previewed_over_http_unless_an_admin_overrides(
        web: Web, op: httpx.Client, fleet: Fleet) -> None:
    hosts = fleet.healthy()[3:5]  # the `logging` job's devices
    before = [_config_sessions(fleet, h) for h in hosts]
    jobs = {j["job"]: j for j in op.get("/api/jobs").json()["jobs"]}
    assert jobs["logging"]["needs_approval"] and not jobs["ntp"]["needs_approval"]
    # a real run asked for: a preview awaiting approval; nothing is sent
    answer = op.post("/api/runs", json={"job": "logging"})
    assert answer.status_code == 202, answer.text
    assert answer.json()["awaiting_approval"] is True and answer.json()["dry_run"] is True
    preview = answer.json()["run_id"]
    web.wait_finished(op, preview)
    run = op.get(f"/api/runs/{preview}").json()
    assert (run["status"], run["dry_run"], run["started_by"]) == (
        "awaiting_approval", True, "ci-bot")
    # the earlier test carried this change out: the preview has nothing to change, so
    # approving it is refused and leaves it as it was
    assert run["summary"]["changed"] == 0 and run["actions"] == ["reject"]
    nothing = op.post(f"/api/runs/{preview}/approve")
    assert nothing.status_code == 400
    assert "previewed no change to carry out" in nothing.json()["error"]
    again = op.get(f"/api/runs/{preview}").json()
    assert (again["status"], again["decision"], again["carried_out_by"]) == (
        "awaiting_approval", None, None)
    assert [_config_sessions(fleet, h) for h in hosts] == before
    # the override: an operator may not, an admin may, and it is recorded
    refused = op.post("/api/runs", json={"job": "logging", "no_approval": True})
    assert refused.status_code == 403 and "admin" in refused.json()["error"]
    admin = web.client(web.token("admin", "duty-manager"))
    unreasoned = admin.post("/api/runs", json={"job": "logging", "reason": "why"})
    assert unreasoned.status_code == 400 and unreasoned.json()["field"] == "reason"
    pointless = admin.post("/api/runs", json={"job": "facts", "no_approval": True})
    assert pointless.status_code == 400 and "needs no approval" in pointless.json()["error"]
    forced = admin.post("/api/runs", json={"job": "logging", "no_approval": True,
                                           "reason": "CHG-1234 emergency"})
    assert forced.status_code == 202, forced.text
    assert forced.json()["awaiting_approval"] is False and forced.json()["dry_run"] is False
    web.wait_finished(admin, forced.json()["run_id"])
    done = admin.get(f"/api/runs/{forced.json()['run_id']}").json()
    assert done["status"] == "ok" and done["started_by"] == "duty-manager"
    assert (done["override"]["by"], done["override"]["reason"]) == (
        "duty-manager", "CHG-1234 emergency")
    assert [_config_sessions(fleet, h) for h in hosts] == [n + 1 for n in before]


def test_a_rejected_or_expired_preview_offers_nothing_and_its_occurrence_follows(
        web: Web, op: httpx.Client, fleet: Fleet) -> None:
    from datetime import UTC, datetime, timedelta

    previews = []
    for _ in range(3):
        started = op.post("/api/runs", json={"job": "logging"}).json()["run_id"]
        web.wait_finished(op, started)
        previews.append(started)
    # as `runner serve` records occurrences it previewed for approval
    store = ScheduleStore(web.db)
    due = [datetime(2026, 2, d, 3, 0, tzinfo=UTC) for d in (1, 2, 3)]
    for when, run_id in zip(due, previews, strict=True):
        store.claim("logging", when, OccurrenceStatus.AWAITING_APPROVAL, "srv:1",
                    datetime.now(UTC), run_id=run_id)

    def statuses() -> list[str]:
        found = op.get("/api/schedules/logging/occurrences").json()
        by = {o["run_id"]: o["status"] for o in found}
        return [by[p] for p in previews]

    assert statuses() == ["awaiting_approval"] * 3
    op.post(f"/api/runs/{previews[0]}/reject", json={"reason": "freeze"})
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert set(ResultsStore(web.db).expire_overdue(future)) >= {previews[1], previews[2]}
    assert statuses() == ["rejected", "expired", "expired"]
    for preview in previews[:2]:
        run = op.get(f"/api/runs/{preview}").json()
        assert run["actions"] == [] and run["carried_out_by"] is None
    # the CLI says the same
    cli = json.loads(web.cli("schedule", "occurrences", "logging", "--json").stdout)
    assert {o["run_id"]: o["status"] for o in cli if o["run_id"] in previews} == {
        previews[0]: "rejected", previews[1]: "expired", previews[2]: "expired"}


def test_rerun_over_http_runs_what_failed_and_refuses_an_empty_id(
        web: Web, op: httpx.Client, fleet: Fleet) -> None:
    first = op.post("/api/runs", json={"job": "ntp", "dry_run": True}).json()["run_id"]
    web.wait_finished(op, first)
    for body, code, field in (({"rerun": ""}, 400, "rerun"), ({"rerun": "  "}, 400, "rerun"),
                              ({"rerun": "nosuchrun"}, 404, "rerun"),
                              ({"rerun": "%"}, 404, "rerun"),
                              ({"statuses": ["failed"]}, 400, "statuses")):
        answer = op.post("/api/runs", json={"job": "ntp", "dry_run": True, **body})
        assert (answer.status_code, answer.json().get("field")) == (code, field), body
    again = op.post("/api/runs", json={"job": "ntp", "dry_run": True, "rerun": first[:8]})
    assert again.status_code == 202, again.text
    web.wait_finished(op, again.json()["run_id"])
    run = op.get(f"/api/runs/{again.json()['run_id']}").json()
    assert run["rerun_of"] == first and run["started_by"] == "ci-bot"
    assert [d["host"] for d in run["devices"]] == fleet.refusing  # what had failed
    assert op.get(f"/api/runs/{first}").json()["actions"] == ["run"]


# -- schedules, backups, labs, metrics --------------------------------------------------------


def test_schedules_and_their_occurrences(web: Web, viewer: httpx.Client) -> None:
    from datetime import UTC, datetime

    store = ScheduleStore(web.db)
    now = datetime.now(UTC)
    due = datetime(2026, 1, 5, 3, 0, tzinfo=UTC)
    store.claim("facts", due, OccurrenceStatus.MISSED, "srv:1", now,
                reason="misfired: 2h late (misfire_grace 300s)")
    listed = viewer.get("/api/schedules").json()
    by_job = {s["job"]: s for s in listed}
    assert set(by_job) == {"facts", "logging"}
    assert by_job["facts"]["when"] == "every 1 hour"
    assert by_job["logging"]["timezone"] == "Europe/Amsterdam"
    assert by_job["logging"]["schedule"]["approval"] == "required"
    assert len(by_job["facts"]["next"]) == 3
    assert all(t.endswith("+00:00") for t in by_job["facts"]["next"])
    # the same document `runner schedule list --json` prints
    cli = json.loads(web.cli("schedule", "list", "--json", "--jobs", str(web.jobs)).stdout)
    for mine, theirs in zip(cli, listed, strict=True):
        # an hour may turn between the two calls: fire times then differ by one
        assert len(set(mine.pop("next")) & set(theirs.pop("next"))) >= 2
        assert mine == theirs
    occurrences = viewer.get("/api/schedules/facts/occurrences").json()
    assert occurrences[0]["status"] == "missed"
    assert occurrences[0]["reason"].startswith("misfired")


def test_backups_history_and_diff(web: Web, op: httpx.Client, viewer: httpx.Client) -> None:
    repo = BackupRepo(web.workdir / "backups")
    first, _ = repo.commit({"r1": "hostname r1\nntp server 192.0.2.1\n"}, "run one")
    second, _ = repo.commit({"r1": "hostname r1\nntp server 192.0.2.2\n"}, "run two")
    assert first and second
    listed = viewer.get("/api/backups").json()
    mine = next(r for r in listed if r["path"] == str(web.workdir / "backups"))
    assert "r1" in mine["hosts"] and mine["jobs"] == ["ntp"]
    history = viewer.get("/api/backups/r1", params={"repo": mine["repo"]}).json()
    assert [v["commit"] for v in history["versions"]] == [second, first]
    diff = viewer.get("/api/backups/r1/diff", params={"repo": mine["repo"], "from": first,
                                                      "to": second[:10]}).json()["diff"]
    assert "-ntp server 192.0.2.1" in diff and "+ntp server 192.0.2.2" in diff
    bad = viewer.get("/api/backups/r1/diff", params={"repo": mine["repo"], "from": "--all",
                                                     "to": second})
    assert bad.status_code == 400 and bad.json()["field"] == "commit"
    unknown = viewer.get("/api/backups/r1/diff", params={"repo": mine["repo"],
                                                         "from": "abcdef12", "to": second})
    assert unknown.status_code == 404


def test_labs_as_runner_lab_status_prints_them_and_their_drawing(
        web: Web, viewer: httpx.Client) -> None:
    name = fake_lab(web)
    listed = viewer.get("/api/labs").json()
    assert listed == json.loads(web.cli("lab", "status", "--json", check=False).stdout)
    assert [lab["lab"] for lab in listed] == [name]
    assert {n["name"]: n["running"] for n in listed[0]["nodes"]} == {
        "r1": False, "r2": False, "h1": False}
    drawing = viewer.get(f"/labs/{name}/topology.svg")
    assert drawing.headers["content-type"] == "image/svg+xml"
    svg = ElementTree.fromstring(drawing.text)  # noqa: S314 (our own server's drawing)
    ns = {"s": "http://www.w3.org/2000/svg"}
    assert {g.get("data-node") for g in svg.iterfind(".//s:g[@class='node']", ns)} == {
        "r1", "r2", "h1"}
    assert len(svg.findall(".//s:line[@class='link']", ns)) == 2
    ends = {g.get("data-end"): " ".join(t for t in g.itertext())
            for g in svg.iterfind(".//s:g[@class='end']", ns)}
    assert ends["r1:eth1"] == "eth1 10.0.12.1/30"
    assert ends["r2:eth1"] == "eth1 10.0.12.2/30"
    assert ends["r1:eth2"] == "eth2 10.1.1.1/24"
    assert ends["h1:eth1"] == "eth1"  # a host's addresses come from its namespace only
    assert viewer.get("/labs/nosuchlab/topology.svg").status_code == 404


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_need_a_token_and_count_runs(web: Web, viewer: httpx.Client,
                                             history: list[RunResult]) -> None:
    from datetime import UTC, datetime

    ScheduleStore(web.db).claim("facts", datetime(2026, 1, 6, 3, 0, tzinfo=UTC),
                                OccurrenceStatus.MISSED, "srv:1", datetime.now(UTC),
                                reason="coalesced into a later occurrence")
    assert web.client().get("/metrics").status_code == 401
    answer = viewer.get("/metrics")
    assert answer.status_code == 200
    samples = _samples(answer.text)
    assert samples[("runner_runs_total", (("job", "audit-a"), ("status", "failed")))] == 2
    assert samples[("runner_runs_total", (("job", "audit-b"), ("status", "ok")))] == 4
    assert samples[("runner_device_results_total",
                    (("job", "audit-a"), ("status", "failed")))] == 2
    count = samples[("runner_run_duration_seconds_count", (("job", "audit-a"),))]
    assert count == 6
    assert samples[("runner_run_duration_seconds_bucket", (("job", "audit-a"),
                                                           ("le", "5.0")))] == 0
    assert samples[("runner_run_duration_seconds_bucket", (("job", "audit-a"),
                                                           ("le", "15.0")))] == 6
    assert samples[("runner_device_duration_seconds_bucket", (("job", "audit-a"),
                                                              ("le", "2.5")))] == 6
    assert ("runner_schedule_misfires_total", (("job", "facts"),)) in samples
    assert samples[("runner_devices_leased_local", ())] == 0


def test_compliance_latest_history_remediation_and_metric(web: Web, op: httpx.Client,
                                                          viewer: httpx.Client,
                                                          fleet: Fleet) -> None:
    host = fleet.healthy()[5]
    started = op.post("/api/runs", json={"job": "golden"})
    assert started.status_code == 202, started.text
    check = started.json()["run_id"]
    web.wait_finished(op, check)
    record = op.get(f"/api/runs/{check}").json()
    device = record["devices"][0]
    assert (record["status"], device["status"]) == ("ok", "non_compliant")
    assert device["compliance"]["ntp"]["extra"] == ["ntp server 192.0.2.123"]
    latest = viewer.get("/api/compliance").json()
    assert latest["summary"]["ntp"] == {"compliant": 0, "non_compliant": 1}
    assert latest["summary"]["logging"] == {"compliant": 1, "non_compliant": 0}
    only = viewer.get("/api/compliance", params={"status": "non_compliant"}).json()
    assert [(r["host"], r["feature"], r["since_run"]) for r in only["latest"]] == [
        (host, "ntp", check)]
    assert viewer.get("/api/compliance", params={"status": "drifting"}).status_code == 422
    history = viewer.get("/api/compliance/history", params={"host": host}).json()
    assert {(e["feature"], e["event"]) for e in history} >= {("ntp", "first"),
                                                             ("logging", "first")}
    drifted = ("runner_compliance_devices", (("feature", "ntp"), ("status", "non_compliant")))
    # figures are cached for a few seconds between scrapes
    wait_for(lambda: drifted in _samples(viewer.get("/metrics").text), 30, "the metric")
    samples = _samples(viewer.get("/metrics").text)
    assert samples[drifted] == 1
    assert samples[("runner_compliance_devices", (("feature", "ntp"),
                                                  ("status", "compliant")))] == 0
    # a viewer may not remediate; an operator previews it (nothing sent)
    body = {"run_id": check, "features": ["ntp"], "dry_run": True}
    assert viewer.post("/api/compliance/remediate", json=body).status_code == 403
    bad = op.post("/api/compliance/remediate", json={**body, "features": ["nope"]})
    assert bad.status_code == 400 and "no feature 'nope'" in bad.json()["error"]
    preview = op.post("/api/compliance/remediate", json=body)
    assert preview.status_code == 202, preview.text
    web.wait_finished(op, preview.json()["run_id"])
    shown = op.get(f"/api/runs/{preview.json()['run_id']}").json()
    assert (shown["remediates"], shown["dry_run"]) == (check, True)
    fix = next(s for s in shown["devices"][0]["steps"] if s["kind"] == "config")
    assert "no ntp server 192.0.2.123" in fix["output"]
    assert "ntp server 192.0.2.123" in on_device(fleet.inventory, host,
                                                  "show running-config")


def test_no_secret_in_any_answer(web: Web, op: httpx.Client,
                                 tokens: dict[str, str]) -> None:
    """The inventory's password and the tokens never come back, whatever is asked."""
    inventory = (web.inventory / "defaults.yaml").read_text()
    password = next(line.split(":", 1)[1].strip() for line in inventory.splitlines()
                    if line.startswith("password:"))
    runs = op.get("/api/runs", params={"limit": 500}).json()
    seen = [op.get("/api/runs").text, op.get("/metrics").text, op.get("/api/jobs").text]
    seen += [op.get(f"/api/runs/{r['run_id']}").text for r in runs]
    for text in seen:
        assert password not in text
        assert tokens["operator"] not in text and tokens["viewer"] not in text


def test_runner_serve_exposes_the_same_metrics(web: Web, viewer: httpx.Client,
                                               history: list[RunResult]) -> None:
    import subprocess

    from tests.support.base import free_port

    port = free_port()
    empty = web.workdir / "no-jobs"
    empty.mkdir(exist_ok=True)
    serve = subprocess.Popen(web.argv("serve", "--jobs", str(empty), "--metrics-port",
                                      str(port)), env=web.env, cwd=web.workdir,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        def scraped() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/metrics").status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(scraped, 60, "runner serve's metrics")
        theirs = _samples(httpx.get(f"http://127.0.0.1:{port}/metrics").text)
    finally:
        serve.terminate()
        assert serve.wait(60) == 0
    ours = _samples(viewer.get("/metrics").text)
    key = ("runner_runs_total", (("job", "audit-b"), ("status", "failed")))
    assert theirs[key] == ours[key] == 2
    assert theirs[("runner_run_duration_seconds_count", (("job", "audit-b"),))] == 6
