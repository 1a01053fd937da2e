"""`runner run --rehearse` on a simulated twin: a simulator fleet of 50 devices plays
production, the backup job fills the repository and `twin up` serves a copy of each device
seeded with its backup. A change whose post-check fails is rehearsed, fails on the twin and
never reaches production (rehearsal_failed, exit 4, the evidence per device in the run's
record); one whose check passes is rehearsed and then changes production; the twin is put
back after each. Bad input (no such twin, a host the twin lacks) is exit 2 with nothing
run. A real `runner serve` rehearses each occurrence of a job whose schedule says
`rehearse:` before it asks for approval: a failing rehearsal ends the occurrence
rehearsal_failed with no preview, a twin that is not there fails it the same way, and a
passing one is previewed with the rehearsal beside its diff (`runner show`, `approve`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from runner.lab.netns import wait_for
from tests.support.browser import Person, chromium
from tests.support.fleet import Fleet, FleetSpec, start_fleet
from tests.support.jobs import run_argv, run_job, shipped_job, sqlite_url, write_job
from tests.support.serve import Serve
from tests.support.web import Web, run_over_api

SPEC = FleetSpec(50, "127.125.25.1")
TWIN = "twrh"
ROLLOUT = {"batch_size": 10, "max_fail_percentage": 0, "on_stop": "rollback"}


def _env(workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RUNNER_HOME"}  # .runner in workdir
    return {**env, "RUNNER_LOCK_DIR": str(workdir / "locks")}


def runner(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runner", "--db", sqlite_url(workdir),
                           *args], cwd=workdir, capture_output=True, text=True, timeout=600,
                          env=_env(workdir), check=False)


def rehearse(workdir: Path, job: Path, inventory: Path, *args: str
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(run_argv(sqlite_url(workdir), job, inventory, "--rehearse", TWIN,
                                   *args), cwd=workdir, capture_output=True, text=True,
                          timeout=600, env=_env(workdir), check=False)


def ntp_job(directory: Path, name: str, server: str, expected: str) -> Path:
    """Add an NTP server; the post-check reads the running config for `expected`."""
    return write_job(directory, name, targets={"groups": ["sim"]}, driver="netmiko",
                     rollback=True, rollout=ROLLOUT, steps=[
                         {"name": "ntp", "config": {"lines": [f"ntp server {server}"]}},
                         {"name": "ntp after", "command": "show running-config",
                          "expect": [f"'ntp server {expected}' in output"]}])


def running_with(workdir: Path, inventory: Path, text: str) -> list[str]:
    """The hosts of `inventory` whose running config has `text` now."""
    job = write_job(workdir / "read", "read", targets={"groups": ["sim"]}, driver="netmiko",
                    steps=[{"name": "config", "command": "show running-config"}])
    data = run_job(workdir, job, inventory, "--all", expect=0, env=_env(workdir))
    return [d["host"] for d in data["devices"] if text in d["steps"][0]["output"]]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Fleet, Path]]:
    """Production (the simulator), its backups, and twin TWIN of it, up."""
    workdir = tmp_path_factory.mktemp("rehearse")
    with start_fleet(workdir, SPEC) as fleet:
        backups = workdir / "backups"
        (workdir / "prodjob").mkdir()
        backup = shipped_job(workdir / "prodjob", "backup.yml", targets={"groups": ["sim"]},
                             steps=[{"backup": {"dir": str(backups)}}])
        run_job(workdir, backup, fleet.inventory, expect=0, env=_env(workdir))
        up = runner(workdir, "twin", "up", "--from-backups", str(backups), "-i",
                    str(fleet.inventory), "--name", TWIN)
        try:
            assert up.returncode == 0, (up.stdout, up.stderr)
            yield workdir, fleet, workdir / ".runner" / "twins" / TWIN / "inventory"
        finally:
            down = runner(workdir, "twin", "down", TWIN)
            assert down.returncode == 0, down.stderr


def test_a_change_that_fails_its_check_on_the_twin_never_reaches_production(
        setup: tuple[Path, Fleet, Path]) -> None:
    workdir, fleet, twin_inventory = setup
    job = ntp_job(workdir / "bad", "ntp-bad", "192.0.2.125", "192.0.2.99")
    proc = rehearse(workdir, job, fleet.inventory)
    assert proc.returncode == 4, (proc.stdout[-2000:], proc.stderr[-3000:])
    data: dict[str, Any] = json.loads(proc.stdout)
    assert data["status"] == "rehearsal_failed"
    assert data["error"].startswith(f"the rehearsal on twin {TWIN} failed: ")
    # production: one record per device, none contacted
    assert [d["host"] for d in data["devices"]] == fleet.hosts
    assert {(d["status"], d["error_class"]) for d in data["devices"]} == \
        {("skipped", "RehearsalFailed")}
    rehearsal = data["rehearsal"]
    assert rehearsal["twin"] == TWIN and rehearsal["passed"] is False
    twin_devices = {d["host"]: d for d in rehearsal["devices"]}
    assert list(twin_devices) == fleet.hosts
    # the first batch (10 devices) tried the change, failed the check, was rolled back;
    # the rollout stopped there: the same batches as production would have had
    first = [twin_devices[h] for h in fleet.hosts[:10]]
    assert {d["status"] for d in first} == {"rolled_back"}
    assert {d["failed_check"] for d in first} == {"ntp after"}
    assert {d["error_class"] for d in first} == {"CheckFailed"}
    assert all("+ntp server 192.0.2.125" in d["diff"] for d in first)
    assert {twin_devices[h]["error_class"] for h in fleet.hosts[10:]} == {"RolloutStopped"}
    assert rehearsal["reset"].startswith("synced with backups commit ")
    assert running_with(workdir, fleet.inventory, "ntp server 192.0.2.125") == []
    assert running_with(workdir, twin_inventory, "ntp server 192.0.2.125") == []
    # the stderr told the engineer as it happened
    assert f"rehearsal on twin {TWIN}: FAILED: production was NOT contacted" in proc.stderr

    shown = runner(workdir, "show", data["run_id"])
    assert shown.returncode == 0, shown.stderr
    assert "status rehearsal_failed" in shown.stdout
    assert f"rehearsal on twin {TWIN}: FAILED: production was NOT contacted" in shown.stdout
    host = fleet.hosts[0]
    row = next(line for line in shown.stdout.splitlines() if line.startswith(f"  {host} "))
    assert "rolled_back" in row and "ntp after" in row and "CheckFailed" in row
    assert f"--- {host} on the twin" in shown.stdout
    as_json = json.loads(runner(workdir, "show", data["run_id"], "--json").stdout)
    assert as_json["rehearsal"] == rehearsal and as_json["status"] == "rehearsal_failed"
    history = json.loads(runner(workdir, "history", "--json", "--job", "ntp-bad").stdout)
    assert [r["status"] for r in history] == ["rehearsal_failed"]
    # the twin's own run, full records, kept with the twin
    twin_run = runner(workdir, "--db", rehearsal["records"], "show", rehearsal["run_id"])
    assert twin_run.returncode == 0 and "rolled_back" in twin_run.stdout


def test_a_change_that_passes_on_the_twin_then_changes_production(
        setup: tuple[Path, Fleet, Path]) -> None:
    workdir, fleet, twin_inventory = setup
    job = ntp_job(workdir / "good", "ntp-good", "192.0.2.126", "192.0.2.126")
    proc = rehearse(workdir, job, fleet.inventory)
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])
    data = json.loads(proc.stdout)
    assert data["status"] == "ok"
    assert {d["status"] for d in data["devices"]} == {"changed"}
    rehearsal = data["rehearsal"]
    assert rehearsal["passed"] is True and rehearsal["status"] == "ok"
    assert {d["status"] for d in rehearsal["devices"]} == {"changed"}
    assert rehearsal["summary"]["changed"] == 50
    assert f"rehearsal on twin {TWIN}: PASSED" in proc.stderr
    # production has the change; the twin was put back to its backups afterwards
    assert running_with(workdir, fleet.inventory, "ntp server 192.0.2.126") == fleet.hosts
    assert running_with(workdir, twin_inventory, "ntp server 192.0.2.126") == []
    assert rehearsal["reset"].startswith("synced with backups commit ")

    # --keep leaves the twin as the rehearsal left it, --limit picks the same hosts there
    kept = ntp_job(workdir / "kept", "ntp-kept", "192.0.2.127", "192.0.2.127")
    proc = rehearse(workdir, kept, fleet.inventory, "--keep", "--limit", fleet.hosts[3])
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(proc.stdout)
    assert data["rehearsal"]["reset"] == "kept"
    assert [d["host"] for d in data["rehearsal"]["devices"]] == [fleet.hosts[3]]
    assert running_with(workdir, twin_inventory, "ntp server 192.0.2.127") == [fleet.hosts[3]]
    reset = runner(workdir, "twin", "sync", TWIN, "--reset")
    assert reset.returncode == 0, reset.stderr
    assert running_with(workdir, twin_inventory, "ntp server 192.0.2.127") == []


def test_bad_rehearsal_input_is_refused_before_anything_runs(
        setup: tuple[Path, Fleet, Path]) -> None:
    workdir, fleet, _ = setup
    job = ntp_job(workdir / "refused", "ntp-refused", "192.0.2.128", "192.0.2.128")
    before = runner(workdir, "history", "--json", "-n", "1000").stdout

    unknown = subprocess.run(run_argv(sqlite_url(workdir), job, fleet.inventory,
                                      "--rehearse", "nosuch"), cwd=workdir,
                             capture_output=True, text=True, timeout=120, env=_env(workdir),
                             check=False)
    assert unknown.returncode == 2
    assert f"no twin named 'nosuch' (twins here: {TWIN}): nothing was run" in unknown.stderr

    # production with a host the twin has no copy of
    extra = workdir / "prod-plus"
    shutil.copytree(fleet.inventory, extra)
    hosts = yaml.safe_load((extra / "hosts.yaml").read_text(encoding="utf-8"))
    hosts["new-router"] = {**hosts[fleet.hosts[0]]}
    (extra / "hosts.yaml").write_text(yaml.safe_dump(hosts), encoding="utf-8")
    missing = rehearse(workdir, job, extra)
    assert missing.returncode == 2
    assert f"twin {TWIN} has no copy of 1 host(s) this run targets: new-router" in \
        missing.stderr

    keep_alone = subprocess.run(run_argv(sqlite_url(workdir), job, fleet.inventory, "--keep"),
                                cwd=workdir, capture_output=True, text=True, timeout=120,
                                env=_env(workdir), check=False)
    assert keep_alone.returncode == 2 and "--keep goes with --rehearse TWIN" in \
        keep_alone.stderr
    assert runner(workdir, "history", "--json", "-n", "1000").stdout == before
    assert running_with(workdir, fleet.inventory, "ntp server 192.0.2.128") == []


def occurrences(workdir: Path, name: str) -> list[dict[str, Any]]:
    proc = runner(workdir, "schedule", "occurrences", name, "--json")
    assert proc.returncode == 0, proc.stderr
    found: list[dict[str, Any]] = json.loads(proc.stdout)
    return found


def test_serve_rehearses_each_occurrence_before_it_asks_for_approval(
        setup: tuple[Path, Fleet, Path]) -> None:
    workdir, fleet, twin_inventory = setup
    hosts = fleet.hosts[20:25]
    at = (datetime.now(UTC) + timedelta(seconds=8)).isoformat(timespec="seconds")
    jobs = workdir / "scheduled"

    def scheduled(name: str, rehearse: str, server: str, expected: str) -> None:
        write_job(jobs, name, driver="netmiko", targets={"hosts": hosts}, rollback=True,
                  schedule={"at": at, "approval": "required", "approval_timeout": "2h",
                            "rehearse": rehearse},
                  steps=[{"name": "ntp", "config": {"lines": [f"ntp server {server}"]}},
                         {"name": "ntp after", "command": "show running-config",
                          "expect": [f"'ntp server {expected}' in output"]}])

    scheduled("night-good", TWIN, "192.0.2.131", "192.0.2.131")
    scheduled("night-bad", "required", "192.0.2.132", "192.0.2.99")  # serve --twin TWIN
    scheduled("night-gone", "gone", "192.0.2.133", "192.0.2.133")
    serve = Serve(workdir, sqlite_url(workdir), fleet.inventory, "serve-rehearse",
                  "--twin", TWIN, jobs=jobs, env=_env(workdir))
    try:
        def settled() -> bool:
            return all(any(o["status"] not in ("running", "pending") for o in
                           occurrences(workdir, n))
                       for n in ("night-good", "night-bad", "night-gone"))
        wait_for(settled, 300, "the three occurrences to settle")
    finally:
        assert serve.stop(120) == 0, serve.text()[-3000:]
    good, = occurrences(workdir, "night-good")
    bad, = occurrences(workdir, "night-bad")
    gone, = occurrences(workdir, "night-gone")
    assert good["status"] == "awaiting_approval", good
    assert bad["status"] == "rehearsal_failed", bad
    assert gone["status"] == "rehearsal_failed", gone

    # the failing rehearsal: no preview, nothing asked of anyone, production untouched
    failed = json.loads(runner(workdir, "show", bad["run_id"], "--json").stdout)
    assert failed["status"] == "rehearsal_failed" and failed["approval_deadline"] is None
    assert failed["rehearsal"]["twin"] == TWIN
    assert {d["failed_check"] for d in failed["rehearsal"]["devices"]
            if d["status"] != "skipped"} == {"ntp after"}
    missing = json.loads(runner(workdir, "show", gone["run_id"], "--json").stdout)
    assert missing["rehearsal"]["error"].startswith("no twin named 'gone'")
    assert missing["error"].startswith("not rehearsed: no twin named 'gone'")

    # the passing one: a preview with the rehearsal beside its diff
    text = runner(workdir, "show", good["run_id"]).stdout
    assert f"rehearsal on twin {TWIN}: PASSED: production was previewed after it " \
           "(nothing sent)" in text
    assert f"--- {hosts[0]} on the twin" in text and "+ntp server 192.0.2.131" in text
    assert "awaiting approval until" in text

    # the web's run page: the approval page shows the rehearsal beside the diff
    web = Web(workdir, jobs, fleet.inventory)
    web.env.update(RUNNER_HOME=str(workdir / ".runner"), RUNNER_TWIN=TWIN)  # its twins
    web.start()
    try:
        viewer = web.client(web.token("viewer", "rehearse-noc"))
        page = viewer.get(f"/runs/{good['run_id']}").text
        assert 'data-rehearsal="passed"' in page
        assert "Passed: every device ended ok or changed on the twin, its checks passed; " \
               "this preview shows what production would get." in page
        assert f'data-twin-host="{hosts[0]}"' in page and "ntp server 192.0.2.131" in page
        assert page.index("data-rehearsal") < page.index("Changes a real run would make")
        page = viewer.get(f"/runs/{bad['run_id']}").text
        assert 'data-rehearsal="failed"' in page
        assert "Failed: production was not contacted." in page
        row = page[page.index(f'<tr data-host="{hosts[0]}">'):]
        row = row[:row.index("</tr>")]
        assert "ntp after" in row and "CheckFailed" in row
        with chromium() as driver:  # the evidence as the engineer signing off sees it
            person = Person(driver, web, workdir / "shots")
            person.log_in(web.token("viewer", "rehearse-eyes"))
            person.open(f"/runs/{bad['run_id']}")
            section = person.find("[data-rehearsal=failed]")
            assert section.is_displayed() and "Failed: production was not contacted." in \
                section.text
            first = person.find(f"[data-rehearsal] tr[data-host='{hosts[0]}']").text
            assert "ntp after" in first and "CheckFailed" in first
            person.screenshot("rehearsal-failed")
            assert person.errors() == []
        listed = viewer.get("/runs", params={"status": "rehearsal_failed"}).text
        assert bad["run_id"] in listed and good["run_id"] not in listed
        api = viewer.get(f"/api/runs/{bad['run_id']}").json()
        assert api["status"] == "rehearsal_failed" and api["rehearsal"]["passed"] is False
        # a run started over the API rehearses as serve's did: the web is no way round it
        op = web.client(web.token("operator", "rehearse-op"))
        run_id = run_over_api(web, op, "night-bad")
        api = viewer.get(f"/api/runs/{run_id}").json()
        assert api["status"] == "rehearsal_failed" and api["rehearsal"]["twin"] == TWIN
        assert api["approval_deadline"] is None  # no preview was made
    finally:
        web.stop()
    approved = runner(workdir, "approve", good["run_id"])
    assert approved.returncode == 0, approved.stderr
    assert f"the preview was rehearsed on twin {TWIN}" in approved.stdout
    assert running_with(workdir, fleet.inventory, "ntp server 192.0.2.131") == hosts
    assert running_with(workdir, fleet.inventory, "ntp server 192.0.2.132") == []
    assert running_with(workdir, twin_inventory, "ntp server 192.0.2.131") == []


def _started(workdir: Path, job: Path, inventory: Path, log: Path) -> subprocess.Popen[str]:
    with log.open("w") as err:
        return subprocess.Popen(run_argv(sqlite_url(workdir), job, inventory, "--rehearse",
                                         TWIN), cwd=workdir, stdout=subprocess.PIPE,
                                stderr=err, text=True, env=_env(workdir))


def test_one_rehearsal_at_a_time_holds_the_twin(setup: tuple[Path, Fleet, Path]) -> None:
    """Two rehearsals at once on one twin: the second waits (and says for whom) until the
    first has run and reset the twin, so neither sees the other's change there; `twin
    sync` and `twin down` meanwhile are refused naming the holder; a rehearsal cancelled
    while it waits ends interrupted with nothing contacted."""
    from runner.lab.twin import uselock

    workdir, fleet, twin_inventory = setup
    lock = uselock.lock_path(workdir / ".runner", TWIN)
    first = ntp_job(workdir / "first", "ntp-first", "192.0.2.141", "192.0.2.141")
    second = ntp_job(workdir / "second", "ntp-second", "192.0.2.142", "192.0.2.142")
    a = _started(workdir, first, fleet.inventory, workdir / "a.err")
    try:
        wait_for(lambda: lock.is_file() and "ntp-first" in lock.read_text(), 120,
                 "the first rehearsal to hold the twin")
        b = _started(workdir, second, fleet.inventory, workdir / "b.err")
        try:
            busy = runner(workdir, "twin", "sync", TWIN)
            down = runner(workdir, "twin", "down", TWIN)
            out_a, _ = a.communicate(timeout=600)
            out_b, _ = b.communicate(timeout=600)
        finally:
            b.kill()
    finally:
        a.kill()
    for proc in (busy, down):
        assert proc.returncode == 2, (proc.stdout, proc.stderr)
        assert f"twin {TWIN} is in use by a rehearsal of job ntp-first (pid {a.pid}" in \
            proc.stderr and "nothing was done" in proc.stderr
    b_err = (workdir / "b.err").read_text()
    assert f"twin {TWIN} is in use by a rehearsal of job ntp-first (pid {a.pid}" in b_err
    assert a.returncode == 0 and b.returncode == 0, (a.returncode, b_err[-3000:])
    for out, server in ((out_a, "192.0.2.141"), (out_b, "192.0.2.142")):
        data = json.loads(out)
        assert data["status"] == "ok" and data["rehearsal"]["passed"] is True
        # the twin had only this rehearsal's change: the other's was reset or not yet made
        assert {d["diff"].count("+ntp server") for d in data["rehearsal"]["devices"]} == {1}
        assert all(f"+ntp server {server}" in d["diff"] for d in data["rehearsal"]["devices"])
    assert running_with(workdir, fleet.inventory, "ntp server 192.0.2.142") == fleet.hosts
    assert running_with(workdir, twin_inventory, "ntp server 192.0.2.14") == []

    # someone holds the twin (the test, as a stand-in for another rehearsal); a rehearsal
    # waiting for it is cancelled with Ctrl-C: interrupted, no device contacted anywhere
    third = ntp_job(workdir / "third", "ntp-third", "192.0.2.143", "192.0.2.143")
    with uselock.held(workdir / ".runner", TWIN, "the test's own hold"):
        c = _started(workdir, third, fleet.inventory, workdir / "c.err")
        try:
            wait_for(lambda: "in use by the test's own hold" in
                     (workdir / "c.err").read_text(), 120, "the third rehearsal to wait")
            c.send_signal(2)
            c.communicate(timeout=120)
        finally:
            c.kill()
    assert c.returncode == 130, (workdir / "c.err").read_text()[-3000:]
    last, = json.loads(runner(workdir, "history", "--json", "--job", "ntp-third").stdout)
    data = json.loads(runner(workdir, "show", last["run_id"], "--json").stdout)
    assert data["status"] == "interrupted"
    assert data["error"] == f"cancelled while waiting for twin {TWIN}"
    assert {(d["status"], d["error_class"]) for d in data["devices"]} == \
        {("skipped", "Interrupted")}
    assert running_with(workdir, fleet.inventory, "ntp server 192.0.2.143") == []
    assert running_with(workdir, twin_inventory, "ntp server 192.0.2.143") == []
    assert not lock.read_text()  # nobody holds it now: released with its holder's name


def test_a_run_started_from_the_web_shows_its_rehearsal_before_its_record(
        setup: tuple[Path, Fleet, Path]) -> None:
    """A rehearsed run started over the API is accepted at once (202) while the twin is
    busy; until its record exists (after the rehearsal) its page, `/api/runs/ID` and its
    progress say it runs, on which twin, that production has not been contacted, and
    offer cancel; cancelling it then ends it interrupted with nothing contacted."""
    from runner.lab.twin import uselock

    workdir, fleet, _ = setup
    jobs = workdir / "webjobs"
    write_job(jobs, "night-web", driver="netmiko", targets={"hosts": fleet.hosts[30:33]},
              rollback=True, schedule={"interval": "1d", "rehearse": TWIN},
              steps=[{"name": "ntp", "config": {"lines": ["ntp server 192.0.2.151"]}}])
    web = Web(workdir, jobs, fleet.inventory)
    web.env.update(RUNNER_HOME=str(workdir / ".runner"))
    web.start()
    try:
        token = web.token("operator", "rehearse-web")
        op = web.client(token)
        with uselock.held(workdir / ".runner", TWIN, "the test's own hold"):
            started = op.post("/api/runs", json={"job": "night-web"})
            assert started.status_code == 202, started.text
            run_id = started.json()["run_id"]
            doc = op.get(f"/api/runs/{run_id}").json()
            assert doc["status"] == "running" and doc["actions"] == ["cancel"]
            assert doc["rehearsal"]["twin"] == TWIN
            assert doc["rehearsal"]["production_contacted"] is False
            assert "in use by the test's own hold" in doc["rehearsal"]["state"]
            progress = op.get(f"/api/runs/{run_id}/progress").json()
            assert (progress["status"], progress["total"], progress["done"]) == \
                ("running", 3, 0)
            page = op.get(f"/runs/{run_id}").text
            assert f'data-rehearsing="{TWIN}"' in page
            assert "production has not been contacted" in page
            assert f'action="/runs/{run_id}/cancel"' in page
            with chromium() as driver:  # as the engineer sees it
                person = Person(driver, web, workdir / "shots")
                person.log_in(token)
                person.open(f"/runs/{run_id}")
                note = person.find("[data-rehearsing] .note").text
                assert note.startswith(f"Rehearsing on twin {TWIN} first: production has "
                                       "not been contacted. Twin "), note
                assert person.find("[data-actions=cancel] button").is_displayed()
                person.screenshot("rehearsing")
                assert person.errors() == []
            assert op.post(f"/api/runs/{run_id}/cancel").status_code == 202
            web.wait_finished(op, run_id)
        done = op.get(f"/api/runs/{run_id}").json()
        assert done["status"] == "interrupted"
        assert done["error"] == f"cancelled while waiting for twin {TWIN}"
        assert {(d["status"], d["error_class"]) for d in done["devices"]} == \
            {("skipped", "Interrupted")}
        assert 'data-rehearsing' not in op.get(f"/runs/{run_id}").text
    finally:
        web.stop()
    assert running_with(workdir, fleet.inventory, "ntp server 192.0.2.151") == []
