"""Workflows: `after:` checked at load (unknown parents and cycles at file:line, the previous
version kept under `runner serve`), the rules deciding a child from its parents' outcomes,
and two schedulers on one store (SQLite and PostgreSQL) starting each child once."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from runner.errors import JobError
from runner.job.load import directory_problem, load_dir, load_job
from runner.job.workflow import Graph, decide
from runner.lab.netns import wait_for
from runner.records import RunResult
from runner.schedule.flows import workflow_status
from runner.schedule.jobsdir import JobsDir
from runner.schedule.listing import workflow_document, workflow_documents
from runner.schedule.server import Scheduled, Scheduler, Start
from runner.store.results import ResultsStore
from runner.store.schedule import ScheduleStore
from runner.vocab import Join, OccurrenceStatus, RunStatus, When

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
S, F, A = When.SUCCESS, When.FAILURE, When.ALWAYS


def job(jobs: Path, name: str, extra: str = "") -> Path:
    path = jobs / f"{name}.yml"
    path.write_text(f"name: {name}\n{extra}steps:\n  - command: show clock\n", encoding="utf-8")
    return path


def test_decide_success_failure_always_all_and_any() -> None:
    both = (("a", S), ("b", F))
    assert decide(both, Join.ALL, {"a": None, "b": None})[0] is None
    assert decide(both, Join.ALL, {"a": "ok", "b": None}) == (None, "waiting for b")
    assert decide(both, Join.ALL, {"a": "ok", "b": "failed"}) == (True, "after a ok, b failed")
    verdict, why = decide(both, Join.ALL, {"a": "ok", "b": "ok"})
    assert verdict is False and why == "not run: b ok (it waits for failure)"
    assert decide(both, Join.ANY, {"a": "failed", "b": None}) == (None, "waiting for b")
    assert decide(both, Join.ANY, {"a": "failed", "b": "failed"})[0] is True
    assert decide(both, Join.ANY, {"a": "failed", "b": "ok"})[0] is False
    # always: any ended run; never a run that was rejected, expired or blacked out
    for outcome in ("ok", "failed", "interrupted"):
        assert decide((("a", A),), Join.ALL, {"a": outcome})[0] is True
    for outcome in ("rejected", "expired", "blacked out", "not run"):
        assert decide((("a", A),), Join.ALL, {"a": outcome})[0] is False
        assert decide((("a", F),), Join.ALL, {"a": outcome})[0] is False
    assert decide((("a", F),), Join.ALL, {"a": "interrupted"})[0] is True


def test_a_failure_handled_by_a_failure_step_does_not_fail_the_workflow() -> None:
    graph = Graph("push", {"verify": ((("push", S),), Join.ALL),
                           "page": ((("push", F),), Join.ALL)})
    assert workflow_status(graph, {"push": "ok", "verify": "ok", "page": "not run"}) == "ok"
    assert workflow_status(graph, {"push": "failed", "verify": "not run", "page": "ok"}) == "ok"
    plain = Graph("push", {"verify": ((("push", S),), Join.ALL)})
    assert workflow_status(plain, {"push": "failed", "verify": "not run"}) == "failed"
    assert workflow_status(plain, {"push": "rejected", "verify": "not run"}) == "failed"
    always = Graph("push", {"verify": ((("push", A),), Join.ALL)})
    assert workflow_status(always, {"push": "failed", "verify": "ok"}) == "ok"
    assert workflow_status(always, {"push": "rejected", "verify": "not run"}) == "failed"


def test_unknown_parents_and_cycles_are_errors_at_file_and_line(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    job(jobs, "a", "after:\n  - {job: c}\n")
    job(jobs, "b", "after: {job: a, when: always}\n")
    job(jobs, "c", "after:\n  any:\n    - {job: x}\n    - {job: b, when: failure}\n")
    job(jobs, "d", "after: {job: nope}\n")
    job(jobs, "e", "after: [{job: e}]\n")
    found, problems = load_dir(jobs)
    text = {p.name: str(e) for p, e in problems.items()}
    assert set(found) == {"x"} - {"x"}  # every job here is broken
    assert text["a.yml"] == f"{jobs / 'a.yml'}:3: after[0].job: workflow cycle: a -> b -> c " \
                            "-> a (each job waits for the one before it)"
    assert text["b.yml"].startswith(f"{jobs / 'b.yml'}:2: after.job: workflow cycle: b -> c")
    assert text["c.yml"].startswith(f"{jobs / 'c.yml'}:4: after.any[0].job: no job named "
                                    "'x'")
    assert text["d.yml"].startswith(f"{jobs / 'd.yml'}:2: after.job: no job named 'nope' in")
    assert text["e.yml"] == f"{jobs / 'e.yml'}:2: after[0].job: a job cannot follow itself"
    done = subprocess.run([sys.executable, "-m", "runner", "validate", str(jobs / "a.yml"),
                           str(jobs / "d.yml")], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 2
    assert f"error: {jobs / 'a.yml'}:3: after[0].job: workflow cycle" in done.stderr
    assert f"error: {jobs / 'd.yml'}:2: after.job: no job named 'nope'" in done.stderr


def test_one_files_directory_problem_is_the_whole_directorys_verdict(tmp_path: Path) -> None:
    # `runner validate FILE` looks at the siblings only when FILE may be part of a graph
    # problem (it has `after:`, or a sibling declares its name); the verdict is load_dir's
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    job(jobs, "alone")
    job(jobs, "first")
    (jobs / "second.yml").write_text("name: first\nsteps:\n  - command: show clock\n",
                                     encoding="utf-8")  # the same name, later in order
    job(jobs, "child", "after: {job: alone}\n")
    job(jobs, "orphan", "after: {job: gone}\n")
    job(jobs, "loop1", "after: {job: loop2}\n")
    job(jobs, "loop2", "after: {job: loop1}\n")
    job(jobs, "broken", "notify: [{url: 'nope://x'}]\n")  # invalid: not a problem of others
    job(jobs, "waits", "after: {job: broken}\n")  # its parent is invalid: unknown
    _, problems = load_dir(jobs)
    for path in sorted(jobs.glob("*.yml")):
        if path.name == "broken.yml":
            continue
        found = directory_problem(load_job(path))
        expected = problems.get(path)
        assert (found and str(found)) == (expected and str(expected)), path.name
    assert {p.name for p in problems} == {"second.yml", "orphan.yml", "loop1.yml",
                                          "loop2.yml", "broken.yml", "waits.yml"}
    done = subprocess.run([sys.executable, "-m", "runner", "validate", str(jobs / "alone.yml"),
                           str(jobs / "first.yml"), str(jobs / "second.yml")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert done.stdout.splitlines() == [f"{jobs / 'alone.yml'}: ok", f"{jobs / 'first.yml'}: ok"]
    assert f"{jobs / 'second.yml'}:1: name: job name 'first' is already used by" in done.stderr


def test_after_in_every_form_and_its_own_errors(tmp_path: Path) -> None:
    for form in ("after: {job: a}\n", "after: [{job: a}, {job: b, when: failure}]\n",
                 "after: {all: [{job: a}, {job: b}]}\n", "after: {any: [{job: a}]}\n"):
        load_job(job(tmp_path, "c", form))
    cases = {
        "after: {job: a, when: sometimes}\n":
            (2, "after.when: expected 'success', 'failure' or 'always' (got 'sometimes')"),
        "after: {all: [{job: a}], any: [{job: b}]}\n": (2, "after: give exactly one of all"),
        "after: [{job: a}, {job: a, when: failure}]\n": (2, "after[1].job: 'a' is named twice"),
        "after: 5\n": (2, "after: expected {job: NAME, when: success|failure|always}"),
    }
    for body, (line, text) in cases.items():
        with pytest.raises(JobError) as info:
            load_job(job(tmp_path, "c", body))
        assert str(info.value).startswith(f"{tmp_path / 'c.yml'}:{line}: {text}"), \
            str(info.value)


def test_serve_keeps_the_previous_version_of_an_edit_that_makes_a_cycle(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    job(jobs, "a", "schedule: {interval: 1h}\n")
    job(jobs, "b", "after: {job: a}\n")
    d = JobsDir(jobs)
    d.reload()
    assert set(d.all) == {"a", "b"} and d.children("a") == ["b"]
    job(jobs, "a", "schedule: {interval: 1h}\nafter: {job: b}\n")
    messages = d.reload()
    assert any("keeping the previous version of a" in m and "workflow cycle" in m
               for m in messages), messages
    assert d.all["a"].spec.after is None and d.children("a") == ["b"]
    (jobs / "b.yml").unlink()  # its parent's edit is fine now
    job(jobs, "a", "schedule: {interval: 1h}\nafter: {job: c}\n")
    messages = d.reload()
    assert "a" in d.all and d.all["a"].spec.after is None  # c does not exist: kept
    job(jobs, "c", "")
    d.reload()
    assert d.all["a"].spec.after is not None and d.graph("c") is not None


# -- two schedulers on one store --------------------------------------------------------------


class Clock:
    def __init__(self, now: datetime) -> None:
        self.moment = now

    def now(self) -> datetime:
        return self.moment


class Runs:
    """Stands in for execution, recording each run in the results store as execute would
    (status by job), so the workflow reads real run rows."""

    def __init__(self, results: ResultsStore, outcomes: dict[str, RunStatus]) -> None:
        self.results = results
        self.outcomes = outcomes
        self.started: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def _record(self, name: str, run_id: str, workflow: str | None) -> OccurrenceStatus:
        run = RunResult(run_id, name, T0.isoformat(), None, [], workflow=workflow)
        self.results.start_run(run, [])
        run.finished = T0.isoformat()
        status = self.outcomes.get(name, RunStatus.OK)
        self.results.finish_run(run, status=status)
        return OccurrenceStatus.DONE if status is RunStatus.OK else OccurrenceStatus.FAILED

    def occurrence(self, sched: Scheduled, occurrence: datetime, run_id: str,
                   cancel: threading.Event) -> OccurrenceStatus:
        with self.lock:
            self.started.append((sched.name, occurrence.isoformat()))
        return self._record(sched.name, run_id, None)

    def event(self, start: Start, cancel: threading.Event) -> OccurrenceStatus:
        with self.lock:
            self.started.append((start.name, start.key))
        return self._record(start.name, start.run_id, start.workflow)


def two(tmp_path: Path, url: str, clock: Clock, runs: Runs) -> list[Scheduler]:
    out = []
    for owner in ("host-a:1", "host-b:1"):
        s = Scheduler(tmp_path / "jobs", ScheduleStore(url), ResultsStore(url),
                      tmp_path / "inv", tmp_path / "templates", clock=clock,
                      run=runs.occurrence, event_run=runs.event, owner=owner, lease_ttl=15)
        s.reload()
        out.append(s)
    return out


def settle(servers: list[Scheduler]) -> None:
    wait_for(lambda: all(not s.running for s in servers), 10, "runs to finish")


@pytest.mark.parametrize("outcome", [RunStatus.OK, RunStatus.FAILED])
def test_each_child_starts_once_across_two_schedulers(tmp_path: Path, db_url: str,
                                                      outcome: RunStatus) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    job(jobs, "backup", "schedule: {interval: 1m}\n")
    job(jobs, "push", "after: {job: backup, when: success}\n")
    job(jobs, "page", "after: {job: backup, when: failure}\n")
    job(jobs, "verify", "after: {job: push}\n")
    job(jobs, "report", "after:\n  any:\n    - {job: verify, when: always}\n"
                        "    - {job: page, when: always}\n")
    clock = Clock(T0 + timedelta(seconds=1))
    runs = Runs(ResultsStore(db_url), {"backup": outcome})
    servers = two(tmp_path, db_url, clock, runs)
    for s in servers:
        s.tick()
    clock.moment = T0 + timedelta(minutes=1, seconds=1)
    for _ in range(6):  # each pass: both servers; the standby must start nothing
        for s in servers:
            s.tick()
        settle(servers)
    names = [n for n, _ in runs.started]
    expected = ["backup", "push", "verify", "report"] if outcome is RunStatus.OK \
        else ["backup", "page", "report"]
    assert names == expected
    flows = workflow_documents(servers[0].store, runs.results)
    assert len(flows) == 1
    flow = workflow_document(servers[0].store, runs.results, flows[0]["id"][:6])
    steps = {s["job"]: s for s in flow["steps"]}
    assert flow["status"] == "ok"  # a failed backup is handled: page follows it on failure
    assert flow["origin"] == "backup@2026-11-22T09:01:00+00:00"
    if outcome is RunStatus.OK:
        assert steps["page"]["status"] == "skipped" and steps["page"]["outcome"] == "not run"
        assert steps["page"]["reason"] == "not run: backup ok (it waits for failure)"
        assert steps["report"]["reason"] is None and steps["report"]["outcome"] == "ok"
    else:
        assert steps["push"]["outcome"] == "not run" and steps["verify"]["outcome"] == \
            "not run"
    # every run of the chain carries the workflow: one workflow run in history
    assert {key for _, key in runs.started[1:]} == {f"wf:{flow['id']}"}
    from runner.store.queries import RunFilter, run_rows

    chain = run_rows(runs.results, RunFilter(workflow=flow["id"]))
    assert sorted(r["job"] for r in chain) == sorted(expected[1:])


def test_a_child_never_starts_after_a_rejected_preview(tmp_path: Path, db_url: str) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "push.yml").write_text(
        "name: push\nschedule: {interval: 1m, approval: required}\nsteps:\n"
        "  - config: {lines: [ntp server 192.0.2.1]}\n", encoding="utf-8")
    job(jobs, "verify", "after: {job: push, when: always}\n")
    clock = Clock(T0 + timedelta(seconds=1))
    results = ResultsStore(db_url)
    previews: list[str] = []

    def preview(sched: Scheduled, occurrence: datetime, run_id: str,
                cancel: threading.Event) -> OccurrenceStatus:
        run = RunResult(run_id, "push", T0.isoformat(), None, [], dry_run=True)
        results.start_run(run, [])
        run.finished = T0.isoformat()
        results.finish_run(run, status=RunStatus.AWAITING_APPROVAL)
        results.await_approval(run_id, (datetime.now(UTC) + timedelta(days=1)).isoformat(),
                               {}, {})
        previews.append(run_id)
        return OccurrenceStatus.AWAITING_APPROVAL

    started: list[str] = []

    def event(start: Start, cancel: threading.Event) -> OccurrenceStatus:
        started.append(start.name)
        return OccurrenceStatus.DONE

    s = Scheduler(jobs, ScheduleStore(db_url), results, tmp_path / "inv",
                  tmp_path / "templates", clock=clock, run=preview, event_run=event,
                  owner="host:1")
    s.reload()
    s.tick()
    clock.moment = T0 + timedelta(minutes=1, seconds=1)
    s.tick()
    settle([s])
    s.tick()
    assert len(previews) == 1 and started == []  # it waits for the decision
    from runner.job.approval import reject

    reject(results, previews[0], "not during the audit", by="carol")
    s.tick()
    settle([s])
    assert started == []
    flow = workflow_documents(s.store, results)[0]
    steps = {x["job"]: x for x in flow["steps"]}
    assert steps["push"]["status"] == "rejected" and steps["push"]["outcome"] == "rejected"
    assert steps["verify"]["status"] == "skipped"
    assert steps["verify"]["reason"] == "not run: push rejected (it waits for always)"
    assert flow["status"] == "failed"


def test_a_step_in_a_blackout_is_skipped_and_its_children_never_start(
        tmp_path: Path, db_url: str) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    job(jobs, "backup", "schedule: {interval: 1m}\n")
    job(jobs, "push", "after: {job: backup}\n")
    job(jobs, "verify", "after: {job: push, when: always}\n")
    (jobs / "blackouts.yml").write_text(
        "blackouts:\n  - {name: cab, start: '2026-11-22 08:00', end: '2026-11-22 10:00', "
        "jobs: [push]}\n", encoding="utf-8")
    clock = Clock(T0 + timedelta(seconds=1))
    runs = Runs(ResultsStore(db_url), {})
    servers = two(tmp_path, db_url, clock, runs)
    for s in servers:
        s.tick()
    clock.moment = T0 + timedelta(minutes=1, seconds=1)
    for _ in range(4):
        for s in servers:
            s.tick()
        settle(servers)
    assert [n for n, _ in runs.started] == ["backup"]
    flow = workflow_documents(servers[0].store, runs.results)[0]
    steps = {x["job"]: x for x in flow["steps"]}
    assert steps["push"]["status"] == "skipped" and steps["push"]["outcome"] == "blacked out"
    assert steps["push"]["reason"].startswith("blackout cab (")
    assert steps["verify"]["reason"] == "not run: push blacked out (it waits for always)"
    assert flow["status"] == "failed"
