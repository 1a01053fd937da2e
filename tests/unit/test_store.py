"""The results and schedule stores on SQLite and on a real PostgreSQL server: records round
trip, the migration history builds exactly the schema the code uses, eight `runner`
processes starting at once on an empty database all succeed, a database made before
migrations is adopted in place with its runs, and `runner db current|upgrade|import`."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, create_engine, inspect, text

from runner.lab.netns import wait_for
from runner.records import DeviceResult, RunResult, StepResult
from runner.store import migrate
from runner.store.compliance import metadata as compliance_metadata
from runner.store.events import metadata as events_metadata
from runner.store.freshness import metadata as freshness_metadata
from runner.store.results import RecordWriter, ResultsStore
from runner.store.results import metadata as results_metadata
from runner.store.schedule import ScheduleStore
from runner.store.schedule import metadata as schedule_metadata
from runner.store.tokens import metadata as web_metadata
from runner.store.workflows import metadata as workflows_metadata
from runner.vocab import DeviceStatus, OccurrenceStatus, RunStatus, SchemaState, StepKind
from tests.support.pg import PASSWORD, PgServer

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def runner(db_url: str, *args: str, cwd: Path | None = None,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runner", "--db", db_url, *args],
                          capture_output=True, text=True, timeout=120, check=False, cwd=cwd,
                          env=env)


def code_schema() -> MetaData:
    """Every table the stores' code reads and writes, in one MetaData."""
    merged = MetaData()
    for meta in (results_metadata, schedule_metadata, web_metadata, compliance_metadata,
                 events_metadata, workflows_metadata, freshness_metadata):
        for table in meta.tables.values():
            table.to_metadata(merged)
    return merged


EXPRESSION_INDEXES = {"ix_devices_run_failed_first"}


def schema_drift(db_url: str) -> list[Any]:
    """What differs between the database's schema and the code's tables (Alembic's own
    comparison, the one `alembic revision --autogenerate` makes)."""
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={
                "version_table": migrate.VERSION_TABLE, "compare_type": True})
            return [d for d in compare_metadata(context, code_schema())
                    if not (d[0] == "remove_table" and d[1].name == migrate.VERSION_TABLE)
                    # Alembic cannot compare an index on an expression (it reflects its
                    # columns only): test_the_run_listing_index_is_the_code_s checks it
                    and not (d[0] in ("add_index", "remove_index")
                             and d[1].name in EXPRESSION_INDEXES)]
    finally:
        engine.dispose()


def version(db_url: str) -> migrate.Version:
    engine = create_engine(db_url)
    try:
        return migrate.current(engine)
    finally:
        engine.dispose()


def a_run(run_id: str, hosts: list[str]) -> RunResult:
    devices = [DeviceResult(host=h, status=DeviceStatus.OK, duration_s=0.5,
                            steps=[StepResult(name="show clock", kind=StepKind.COMMAND,
                                              output=f"{h} 09:00")]) for h in hosts]
    return RunResult(run_id=run_id, job="audit", started=T0.isoformat(), finished=None,
                     devices=devices)


def test_records_round_trip_and_decisions_happen_once(db_url: str) -> None:
    store = ResultsStore(db_url)
    run = a_run("a1b2c3d4e5f6", ["r1", "r2", "r3"])
    store.start_run(run, ["r1", "r2", "r3"])
    store.record_devices(run.run_id, run.devices[2:], {"r1": 0, "r2": 1, "r3": 2})
    store.record_devices(run.run_id, run.devices[:2], {"r1": 0, "r2": 1, "r3": 2})
    run.finished = T0.isoformat()
    store.finish_run(run)
    row, back = store.get_run("a1b2")
    assert row["status"] == RunStatus.OK and row["summary"]["ok"] == 3
    assert [(d.host, d.status, d.steps[0].output) for d in back.devices] == [
        ("r1", "ok", "r1 09:00"), ("r2", "ok", "r2 09:00"), ("r3", "ok", "r3 09:00")]
    store.await_approval(run.run_id, "2999-01-01T00:00:00", {"name": "audit"}, {})
    decided = [store.decide(run.run_id, RunStatus.APPROVED, {"by": who}, T0.isoformat())
               for who in ("alice", "bob")]
    assert decided == [True, False]
    store.add_notifications(run.run_id, [{"url": "json://x", "delivered": True}])
    assert store.list_runs(5, "audit")[0]["notifications"] == [
        {"url": "json://x", "delivered": True}]

    schedule = ScheduleStore(db_url)
    claims = [schedule.claim("audit", T0, OccurrenceStatus.RUNNING, who, T0)
              for who in ("a:1", "b:1")]
    assert claims == [True, False]
    assert schedule.acquire("a:1", 100.0, 15) == (True, None)
    assert schedule.acquire("b:1", 101.0, 15) == (False, "a:1")
    assert schedule.acquire("b:1", 116.0, 15) == (True, "a:1")  # a's lease ran out


def test_the_migration_history_builds_the_schema_the_code_uses(db_url: str) -> None:
    ResultsStore(db_url)
    assert version(db_url).state is SchemaState.CURRENT
    assert schema_drift(db_url) == []


def test_eight_processes_starting_at_once_on_an_empty_database_all_succeed(
        db_url: str, tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "runner", "--db", db_url, "history", "--json"]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=tmp_path) for _ in range(8)]
    outcomes = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    assert [(code, err) for code, _, err in outcomes if code != 0] == []
    assert all(json.loads(out) == [] for _, out, _ in outcomes)
    assert version(db_url).state is SchemaState.CURRENT
    assert schema_drift(db_url) == []


# The schema of runner's first release (before migrations, a database made by
# `create_all`): none of the columns added since, no index on runs.status, and only one of
# the three schedule tables.
FIRST_RELEASE = """
CREATE TABLE runs (
    run_id VARCHAR(32) NOT NULL PRIMARY KEY, job VARCHAR(200) NOT NULL, job_file TEXT,
    started VARCHAR(40) NOT NULL, finished VARCHAR(40), status VARCHAR(20) NOT NULL,
    dry_run BOOLEAN NOT NULL, engine VARCHAR(20) NOT NULL, occurrence VARCHAR(100),
    summary JSON, backup_commit VARCHAR(64));
CREATE INDEX ix_runs_job ON runs (job);
CREATE INDEX ix_runs_started ON runs (started);
CREATE INDEX ix_runs_occurrence ON runs (occurrence);
CREATE TABLE devices (
    id {serial} NOT NULL PRIMARY KEY,
    run_id VARCHAR(32) NOT NULL, host VARCHAR(255) NOT NULL, status VARCHAR(20) NOT NULL,
    changed BOOLEAN NOT NULL, duration_s FLOAT, error TEXT, error_class VARCHAR(100),
    attempts INTEGER, driver VARCHAR(20), started VARCHAR(40), finished VARCHAR(40),
    steps JSON,
    CONSTRAINT one_record_per_device UNIQUE (run_id, host),
    FOREIGN KEY (run_id) REFERENCES runs (run_id) ON DELETE CASCADE);
CREATE INDEX ix_devices_run_id ON devices (run_id);
CREATE TABLE schedule_state (
    job VARCHAR(200) NOT NULL PRIMARY KEY, "trigger" TEXT NOT NULL, next_fire VARCHAR(40));
INSERT INTO runs (run_id, job, started, finished, status, dry_run, engine, summary)
    VALUES ('0ld0ld0ld0ld', 'backup', '2026-01-05T02:30:00.000+00:00',
            '2026-01-05T02:30:09.000+00:00', 'ok', FALSE, 'local', '{"ok": 1, "failed": 1}');
INSERT INTO devices (run_id, host, status, changed, duration_s, error, error_class, steps)
    VALUES ('0ld0ld0ld0ld', 'r1', 'ok', FALSE, 1.5, NULL, NULL,
            '[{"name": "show version", "kind": "command", "output": "FRRouting 8.4.4"}]'),
           ('0ld0ld0ld0ld', 'r2', 'unreachable', FALSE, 10.0, 'no route to host',
            'ConnectFailed', '[]');
INSERT INTO schedule_state (job, "trigger", next_fire)
    VALUES ('backup', 'cron 30 2 * * *', '2026-01-06T02:30:00+00:00');
"""


def build(db_url: str, script: str) -> None:
    engine = create_engine(db_url)
    serial = "SERIAL" if engine.dialect.name == "postgresql" else "INTEGER"
    try:
        with engine.begin() as conn:
            for statement in script.replace("{serial}", serial).split(";"):
                if statement.strip():
                    conn.execute(text(statement))
    finally:
        engine.dispose()


def test_a_database_of_the_first_release_is_adopted_with_its_runs(db_url: str,
                                                                   tmp_path: Path) -> None:
    build(db_url, FIRST_RELEASE)
    before = json.loads(runner(db_url, "db", "current", "--json").stdout)
    assert (before["state"], before["revision"], before["at_head"]) == (
        "unversioned", None, False)
    shown = runner(db_url, "show", "0ld0ld", "--json", cwd=tmp_path)  # any start upgrades
    assert shown.returncode == 0, shown.stderr
    run = json.loads(shown.stdout)
    assert run["job"] == "backup" and run["started"] == "2026-01-05T02:30:00.000+00:00"
    assert [(d["host"], d["status"], d["error_class"]) for d in run["devices"]] == [
        ("r1", "ok", None), ("r2", "unreachable", "ConnectFailed")]
    assert run["devices"][0]["steps"][0]["output"] == "FRRouting 8.4.4"
    assert f"upgrading to {migrate.head()}" in shown.stderr
    after = version(db_url)
    assert after.state is SchemaState.CURRENT and after.revision == migrate.head()
    assert schema_drift(db_url) == []  # every later column, index and table is there
    schedule = ScheduleStore(db_url)
    assert schedule.next_fire("backup", "cron 30 2 * * *") == (
        True, datetime(2026, 1, 6, 2, 30, tzinfo=UTC))
    history = json.loads(runner(db_url, "history", "--json", cwd=tmp_path).stdout)
    assert [(r["run_id"], r["status"], r["owner"]) for r in history] == [
        ("0ld0ld0ld0ld", "ok", None)]  # a column added since: there, empty for old runs


def test_a_database_made_by_create_all_before_migrations_is_adopted(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        code_schema().create_all(engine)  # what runner did on start until migrations
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO runs (run_id, job, started, status, dry_run, "
                              "engine) VALUES ('feedfeedfeed', 'audit', '2026-11-01', "
                              "'failed', FALSE, 'local')"))
    finally:
        engine.dispose()
    assert version(db_url).state is SchemaState.UNVERSIONED
    store = ResultsStore(db_url)
    assert store.get_run("feedfeedfeed")[0]["status"] == "failed"
    assert version(db_url).state is SchemaState.CURRENT
    assert schema_drift(db_url) == []


def test_db_current_and_upgrade_for_operators(db_url: str, tmp_path: Path) -> None:
    empty = runner(db_url, "db", "current", cwd=tmp_path)
    assert empty.returncode == 0, empty.stderr
    assert "empty: `runner db upgrade` creates the schema" in empty.stdout
    assert not inspect(create_engine(db_url)).get_table_names()  # `current` changed nothing
    done = runner(db_url, "db", "upgrade", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"upgraded from empty to {migrate.head()} (head)" in done.stdout
    again = json.loads(runner(db_url, "db", "upgrade", "--json", cwd=tmp_path).stdout)
    assert (again["before"], again["revision"], again["at_head"]) == (
        migrate.head(), migrate.head(), True)
    now = json.loads(runner(db_url, "db", "current", "--json", cwd=tmp_path).stdout)
    assert now == {"database": now["database"], "revision": migrate.head(),
                   "head": migrate.head(), "state": "current", "at_head": True}
    for out in (empty.stdout, empty.stderr, done.stdout, done.stderr, json.dumps(now)):
        assert PASSWORD not in out
    if db_url.startswith("postgresql"):
        assert "runner:***@127.0.0.1" in now["database"]


def test_a_schema_from_a_newer_runner_is_refused_not_touched(db_url: str,
                                                             tmp_path: Path) -> None:
    ResultsStore(db_url)
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text(f"UPDATE {migrate.VERSION_TABLE} SET version_num = 'f00d'"))  # noqa: S608
    finally:
        engine.dispose()
    for args in (("history",), ("db", "upgrade")):
        refused = runner(db_url, *args, cwd=tmp_path)
        assert refused.returncode == 1
        assert "f00d, unknown to this runner" in refused.stderr
        assert "upgrade runner" in refused.stderr and PASSWORD not in refused.stderr
    assert version(db_url).revision == "f00d"


def test_a_wrong_password_is_one_line_without_the_password(postgres: PgServer,
                                                           tmp_path: Path) -> None:
    url = postgres.new_database().replace(PASSWORD, "not-the-password-9")
    refused = runner(url, "history", cwd=tmp_path)
    assert refused.returncode == 1
    assert refused.stderr.startswith(f"error: database {url.replace('not-the-password-9', '***')}")
    assert "password authentication failed" in refused.stderr
    assert "not-the-password-9" not in refused.stderr and "Traceback" not in refused.stderr


def stored_hosts(store: ResultsStore, run_id: str) -> list[str]:
    return sorted(d.host for d in store.get_run(run_id)[1].devices)


def test_records_wait_for_a_database_that_comes_back(postgres: PgServer,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    store = ResultsStore(postgres.new_database(), retry_s=600)
    run = a_run("0a0a0a0a0a0a", ["r1", "r2", "r3"])
    store.start_run(run, ["r1", "r2", "r3"])
    writer = RecordWriter(store, run.run_id, ["r1", "r2", "r3"])
    writer.put(run.devices[0])
    wait_for(lambda: stored_hosts(store, run.run_id) == ["r1"], 30, "r1's record")
    postgres.stop("fast")  # every session ends, as when the server restarts
    try:
        writer.put(run.devices[1])
        writer.put(run.devices[2])
        wait_for(lambda: "unreachable while storing records of run 0a0a0a0a0a0a"
                 in caplog.text, 60, "the writer to find the database gone")
    finally:
        postgres.start()
    assert writer.close() == set() and writer.error is None
    assert "reachable again: storing records of run 0a0a0a0a0a0a done" in caplog.text
    assert stored_hosts(store, run.run_id) == ["r1", "r2", "r3"]
    assert PASSWORD not in caplog.text


def test_records_the_database_does_not_take_in_time_are_named(postgres: PgServer) -> None:
    store = ResultsStore(postgres.new_database(), retry_s=1)
    run = a_run("0b0b0b0b0b0b", ["r1", "r2", "r3"])
    store.start_run(run, ["r1", "r2", "r3"])
    writer = RecordWriter(store, run.run_id, ["r1", "r2", "r3"])
    writer.put(run.devices[0])
    wait_for(lambda: stored_hosts(store, run.run_id) == ["r1"], 30, "r1's record")
    postgres.stop("fast")
    try:
        writer.put(run.devices[1])
        writer.put(run.devices[2])
        unsaved = writer.close()
    finally:
        postgres.start()
    assert unsaved == {"r2", "r3"}
    assert writer.error is not None and "for 1s (RUNNER_DB_RETRY)" in writer.error
    assert PASSWORD not in writer.error and "runner:***@127.0.0.1" in writer.error
    assert stored_hosts(store, run.run_id) == ["r1"]  # nothing half-written either


def test_the_migrations_ship_with_the_package(tmp_path: Path) -> None:
    """Only what setuptools installs (packages found as pyproject says, their modules and
    package-data), copied aside: `runner db upgrade` works from that copy alone."""
    import fnmatch
    import shutil
    import sysconfig
    import tomllib

    from setuptools import find_packages

    from tests.support.base import ROOT

    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]
    packages = find_packages(str(ROOT), include=config["setuptools"]["packages"]["find"]
                             ["include"])
    assert {"runner.store.migrations", "runner.store.migrations.versions"} <= set(packages)
    data = config["setuptools"]["package-data"]["runner"]
    for source in (ROOT / "runner").rglob("*"):
        relative = source.relative_to(ROOT)
        package = ".".join(relative.parent.parts)
        shipped = source.is_file() and package in packages and (
            source.suffix == ".py" or any(fnmatch.fnmatch(
                str(source.relative_to(ROOT / "runner")), p) for p in data))
        if shipped:
            (tmp_path / "site" / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, tmp_path / "site" / relative)
    # -S: no .pth files, so not the editable install of this checkout; the dependencies
    # from site-packages, after the copy.
    env = {"PYTHONPATH": f"{tmp_path / 'site'}:{sysconfig.get_paths()['purelib']}",
           "PATH": "/usr/bin:/bin"}
    python = [sys.executable, "-S"]
    where = subprocess.run([*python, "-c", "import runner; print(runner.__file__)"],
                           capture_output=True, text=True, env=env, check=True,
                           cwd=tmp_path)
    assert where.stdout.startswith(str(tmp_path / "site"))
    done = subprocess.run([*python, "-m", "runner", "--db", f"sqlite:///{tmp_path / 'r.db'}",
                           "db", "upgrade"], capture_output=True, text=True, env=env,
                          cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stderr
    assert f"to {migrate.head()} (head)" in done.stdout


def test_a_running_runs_devices_at_work_are_stored_with_their_start(tmp_path: Path) -> None:
    """The live run page's in-progress list: RecordWriter stores which devices started
    (with when) until their records come, and clears it when the run ends."""
    from runner.store.runlinks import working

    store = ResultsStore(f"sqlite:///{tmp_path / 'runner.db'}")
    run = a_run("0c0c0c0c0c0c", ["r1", "r2", "r3"])
    store.start_run(run, ["r1", "r2", "r3"])
    writer = RecordWriter(store, run.run_id, ["r1", "r2", "r3"])
    writer.started("r1")
    writer.started("r2")
    wait_for(lambda: sorted(working(store, run.run_id)) == ["r1", "r2"], 30,
             "r1 and r2 at work")
    assert all(t >= run.started for t in working(store, run.run_id).values())
    writer.put(run.devices[0])
    wait_for(lambda: sorted(working(store, run.run_id)) == ["r2"], 30, "r1's record")
    assert stored_hosts(store, run.run_id) == ["r1"]
    assert writer.close() == set()
    assert working(store, run.run_id) == {}


def test_a_batch_of_new_devices_is_inserted_without_a_delete_and_a_rewrite_wins(
        db_url: str) -> None:
    """PostgreSQL planned the batch's DELETE of earlier records as a walk of every record
    of the run so far (quadratic over a large run): a batch of devices not recorded before
    is inserted with no DELETE; a batch with a host recorded before still replaces it (the
    newer record wins), and device_last follows, on both databases."""
    from sqlalchemy import event

    store = ResultsStore(db_url)
    statements: list[str] = []
    event.listen(store.engine, "before_cursor_execute",
                 lambda _c, _cur, sql, *_a: statements.append(sql.split()[0].upper()))
    run = a_run("0123456789ab", ["r1", "r2", "r3"])
    store.start_run(run, ["r1", "r2", "r3"])
    statements.clear()
    store.record_devices(run.run_id, run.devices[:2], {"r1": 0, "r2": 1, "r3": 2})
    store.record_devices(run.run_id, run.devices[2:], {"r1": 0, "r2": 1, "r3": 2})
    if store.engine.dialect.name == "postgresql":
        assert "DELETE" not in statements, statements
    again = DeviceResult(host="r2", status=DeviceStatus.FAILED, error="it broke",
                         error_class="CommandRejected")
    store.record_devices(run.run_id, [run.devices[2], again], {"r1": 0, "r2": 1, "r3": 2})
    run.finished = T0.isoformat()
    store.finish_run(run)
    _, back = store.get_run(run.run_id)
    assert [(d.host, d.status) for d in back.devices] == [
        ("r1", "ok"), ("r2", "failed"), ("r3", "ok")]
    from sqlalchemy import select

    from runner.store.results import device_last

    with store.engine.connect() as conn:
        last = dict(conn.execute(select(device_last.c.host, device_last.c.status)).all())
    assert last == {"r1": "ok", "r2": "failed", "r3": "ok"}
    store.engine.dispose()


def test_a_backup_commit_rewrites_only_the_changed_devices_on_both_databases(
        db_url: str) -> None:
    """At a backup run's end the devices whose file the commit changed (more than one
    statement's chunk of them) get their backup step `changed`, status and device_last
    rewritten; the others' records stay as stored, and a host whose newest record is a
    later run's keeps that one as its newest."""
    from sqlalchemy import select

    from runner.store.results import device_last, devices

    store = ResultsStore(db_url)
    hosts = [f"r{i:04d}" for i in range(1203)]
    run = a_run("b4c6a1d2e3f4", hosts)
    for device in run.devices:
        device.steps.append(StepResult(name="backup", kind=StepKind.BACKUP,
                                       output=f"backups/{device.host}.cfg"))
    store.start_run(run, hosts)
    positions = {h: i for i, h in enumerate(hosts)}
    for at in range(0, len(hosts), 500):
        store.record_devices(run.run_id, run.devices[at:at + 500], positions)
    later = a_run("c5d7b2e3f4a5", ["r0002"])
    store.start_run(later, ["r0002"])
    store.record_devices(later.run_id, later.devices, {"r0002": 0})
    changed = set(hosts[::2])  # r0000, r0002, ...: 602 of them
    for device in run.devices:
        if device.host in changed:
            device.steps[-1].changed = True
            device.status, device.changed = DeviceStatus.CHANGED, True
    run.finished = T0.isoformat()
    store.finish_run(run)
    with store.engine.connect() as conn:
        rows = {host: (status, is_changed, steps) for host, status, is_changed, steps in
                conn.execute(select(devices.c.host, devices.c.status, devices.c.changed,
                                    devices.c.steps).where(devices.c.run_id == run.run_id))}
        last = dict(conn.execute(select(device_last.c.host, device_last.c.status)).all())
    for host in hosts:
        status, is_changed, steps = rows[host]
        want = host in changed
        assert (status, bool(is_changed), steps[-1]["changed"]) == (
            "changed" if want else "ok", want, want), host
        assert steps[0]["output"] == f"{host} 09:00"  # the other steps kept whole
        assert last[host] == ("ok" if host == "r0002" else status), host
    store.engine.dispose()
