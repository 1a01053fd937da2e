"""`runner db import` as an input surface: special files, sizes, nesting, ids and hosts are
checked before anything is stored, and a stored run is never overwritten without
--replace (an approved preview stays approved); completing an unfinished run and
importing twice still work."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from runner.records import DeviceResult, RunResult, now_iso
from runner.store import unsaved
from runner.store.results import ResultsStore
from runner.vocab import DeviceStatus, RunStatus


def cli(db: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runner", "--db", db, "db", "import", *args],
                          capture_output=True, text=True, check=False, timeout=timeout)


def a_run(run_id: str = "a1b2c3d4e5f6", hosts: tuple[str, ...] = ("r1", "r2")) -> RunResult:
    return RunResult(run_id=run_id, job="backup", started="2026-12-01T10:00:00+00:00",
                     finished="2026-12-01T10:01:00+00:00", dry_run=False,
                     devices=[DeviceResult(h, DeviceStatus.OK, finished=now_iso())
                              for h in hosts])


def kept_file(tmp_path: Path, run: RunResult, status: RunStatus = RunStatus.OK) -> Path:
    path = unsaved.keep(run, status, None, [d.host for d in run.devices], tmp_path / "kept",
                        "the database was away")
    assert path is not None
    return path


def edited(path: Path, change: Any) -> Path:
    document = json.loads(path.read_text(encoding="utf-8"))
    text = change(document)  # a change may give the whole text instead
    path.write_text(text if isinstance(text, str) else json.dumps(document), encoding="utf-8")
    return path


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'r.db'}"


def test_special_and_huge_files_are_refused_without_reading_them(tmp_path: Path,
                                                                 db: str) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # opening it would wait for a writer forever
    big = tmp_path / "big.json"
    with open(big, "wb") as fh:
        fh.truncate(300 * 1024 * 1024)  # sparse: no disk used
    started = time.monotonic()
    for path, problem in (("/dev/zero", "not a regular file"), (str(fifo), "not a regular file"),
                          (str(big), "larger than 268,435,456 bytes (--max-size)")):
        proc = cli(db, path)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip() == f"error: {path}: cannot read a kept run: {problem}"
    assert time.monotonic() - started < 60  # nothing was read to its end
    small = kept_file(tmp_path, a_run())
    proc = cli(db, "--max-size", "1", str(big))
    assert "larger than 1,048,576 bytes" in proc.stderr
    assert cli(db, "--max-size", "1", str(small)).returncode == 0


@pytest.mark.parametrize(("change", "problem"), [
    (lambda d: '{"format": "runner-unsaved-run/1", "run": ' + "[" * 100000 + "]" * 100000
     + "}", "JSON nested more than 64 levels deep"),
    (lambda d: d["run"]["devices"][0]["steps"].append(
        {"name": "x", "kind": "command", "parsed": json.loads("[" * 80 + "]" * 80)}),
     "JSON nested more than 64 levels deep"),
    (lambda d: d["run"].__setitem__("run_id", "../../etc/x"), "run.run_id '../../etc/x' is not"),
    (lambda d: d["run"].__setitem__("run_id", "a%"), "run.run_id 'a%' is not a run id"),
    (lambda d: d["run"].__setitem__("run_id", "a" * 65), "is not a run id"),
    (lambda d: d["run"].__setitem__("run_id", 7), "run.run_id '7' is not a run id"),
    (lambda d: d["run"].__setitem__("approves", "x y"), "run.approves 'x y' is not a run id"),
    (lambda d: d["run"].__setitem__("started", "yesterday"), "Invalid isoformat"),
    (lambda d: d["run"].__setitem__("job", "a\x1b[2Jb"), "is not a job name"),
    (lambda d: d.__setitem__("hosts", ["r1", "\x1b]0;x\x07"]), "is not a host name"),
    (lambda d: d.__setitem__("hosts", "r1"), "hosts: expected a list of host names"),
    (lambda d: d["run"]["devices"][0].__setitem__("host", "r9"),
     "host 'r9' is not one of the run's hosts"),
    (lambda d: d["run"]["devices"][0].__setitem__("status", "pwned"),
     "'pwned' is not a valid DeviceStatus"),
    (lambda d: d["run"]["devices"][0].__setitem__("extra", 1), "unexpected keyword argument"),
    (lambda d: d.__setitem__("status", "approved!"), "is not a valid RunStatus"),
    (lambda d: d.__setitem__("format", "other"), "not a run kept by runner"),
])
def test_a_bad_kept_run_is_one_error_and_stores_nothing(tmp_path: Path, db: str, change: Any,
                                                       problem: str) -> None:
    path = edited(kept_file(tmp_path, a_run()), change)
    good = kept_file(tmp_path / "second", a_run("0123456789ab"))
    proc = cli(db, str(good), str(path))  # every file is checked before any is stored
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: cannot read a kept run:")
    assert problem in lines[0], lines[0]
    assert "Traceback" not in proc.stderr
    assert ResultsStore(db).list_runs() == []


def test_a_stored_run_is_never_overwritten_without_replace(tmp_path: Path, db: str) -> None:
    store = ResultsStore(db)
    preview = a_run("feedc0ffee00")
    preview.dry_run = True
    store.start_run(preview, ["r1", "r2"])
    store.record_devices(preview.run_id, preview.devices, {"r1": 0, "r2": 1})
    store.finish_run(preview, RunStatus.OK)
    store.await_approval(preview.run_id, "2099-01-01T00:00:00+00:00", {"name": "x"}, {})
    assert store.decide(preview.run_id, RunStatus.APPROVED, {"by": "alice"}, now_iso())
    hostile = a_run("feedc0ffee00", hosts=("r1", "r2", "r3"))
    path = kept_file(tmp_path, hostile, RunStatus.AWAITING_APPROVAL)
    proc = cli(db, str(path))
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"error: {path}: run feedc0ffee00 is already stored (job 'backup', started "
        "2026-12-01T10:00:00+00:00, approved) and is not the unfinished run this file "
        "completes: not overwritten (--replace overwrites it)")
    row, stored = store.get_run("feedc0ffee00")
    assert row["status"] == RunStatus.APPROVED and len(stored.devices) == 2
    replaced = cli(db, "--replace", str(path))
    assert replaced.returncode == 0, replaced.stderr
    assert "run feedc0ffee00 replaced (3 device records, awaiting_approval)" in replaced.stdout
    row, stored = store.get_run("feedc0ffee00")
    assert row["status"] == RunStatus.AWAITING_APPROVAL and len(stored.devices) == 3


def test_an_unfinished_run_is_completed_and_a_second_import_changes_nothing(
        tmp_path: Path, db: str) -> None:
    store = ResultsStore(db)
    run = a_run("c0mp1e7e0000")
    store.start_run(run, ["r1", "r2"])
    store.interrupt(run.run_id, now_iso())  # as the next start finds it left running
    path = kept_file(tmp_path, run)
    first = cli(db, str(path))
    assert first.returncode == 0, first.stderr
    assert "run c0mp1e7e0000 completed (2 device records, ok)" in first.stdout
    second = cli(db, str(path))
    assert "run c0mp1e7e0000 unchanged" in second.stdout
    assert store.get_run(run.run_id)[0]["status"] == RunStatus.OK
    fresh = kept_file(tmp_path / "new", a_run("5e7e11e00000"))
    assert "run 5e7e11e00000 stored" in cli(db, str(fresh)).stdout


def test_run_id_prefixes_are_characters_not_wildcards(tmp_path: Path, db: str) -> None:
    store = ResultsStore(db)
    for run_id in ("ab12cd34ef56", "ab_2cd34ef00"):
        run = a_run(run_id)
        store.start_run(run, ["r1", "r2"])
    assert store.resolve("ab_2") == "ab_2cd34ef00"  # `_` is no single-character wildcard
    assert store.resolve("ab1") == "ab12cd34ef56"
    for wildcard in ("%", "ab%", "a_", "__"):
        with pytest.raises(Exception, match=f"no run {re.escape(repr(wildcard))}"):
            store.resolve(wildcard)


def test_the_database_and_its_directory_are_its_owners_only(tmp_path: Path) -> None:
    home = tmp_path / "home"
    proc = subprocess.run([sys.executable, "-m", "runner", "history"], capture_output=True,
                          text=True, check=False, env={**os.environ, "RUNNER_HOME": str(home),
                                                       "RUNNER_DB_URL": ""}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert (home.stat().st_mode & 0o777, (home / "results.db").stat().st_mode & 0o777) == \
        (0o700, 0o600)
    for extra in ("-wal", "-shm"):
        if (home / f"results.db{extra}").exists():
            assert (home / f"results.db{extra}").stat().st_mode & 0o077 == 0
    # a database an older runner made world-readable is tightened; --db files too
    loose = tmp_path / "old.db"
    ResultsStore(f"sqlite:///{loose}")
    loose.chmod(0o644)
    ResultsStore(f"sqlite:///{loose}")
    assert loose.stat().st_mode & 0o777 == 0o600
