"""Backup runs of a whole fleet keep their guarantees as they grow (issue 28): one commit per
run, only the changed devices' files written (an unchanged re-run writes no file and no
object), every device's record right, nothing of a run left in .git."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.fleet import Fleet, FleetSpec, start_fleet
from tests.support.jobs import run_runner, write_job

DEVICES = 120


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with start_fleet(tmp_path_factory.mktemp("sim-backup-runs"),
                     FleetSpec(DEVICES, "127.128.28.1")) as fleet:
        yield fleet


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          check=True).stdout


def files(repo: Path) -> dict[str, tuple[int, int]]:
    """Each backup file's inode and modification time: a file written (by rename) changes
    both."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in repo.glob("*.cfg")}


def objects(repo: Path) -> dict[str, str]:
    counted = dict(line.split(": ", 1) for line in
                   git(repo, "count-objects", "-v").splitlines())
    return {k: counted[k] for k in ("count", "in-pack", "packs")}


def records(workdir: Path, run_id: str) -> dict[str, tuple[str, list[dict[str, object]]]]:
    with sqlite3.connect(workdir / "runner.db") as db:
        return {host: (status, json.loads(steps)) for host, status, steps in db.execute(
            "select host, status, steps from devices where run_id = ?", (run_id,))}


def last_run(workdir: Path) -> str:
    with sqlite3.connect(workdir / "runner.db") as db:
        return str(db.execute("select run_id from runs order by started desc limit 1")
                   .fetchone()[0])


def assert_clean(repo: Path) -> None:
    assert git(repo, "status", "--porcelain", "--ignored", "--untracked-files=all") == ""
    assert [p.name for p in (repo / ".git").iterdir() if p.name.startswith("runner")] == \
        ["runner.lock"]  # no run's objects or temporary files left behind


def test_a_backup_run_commits_once_and_writes_only_what_changed(sim: Fleet,
                                                                 tmp_path: Path) -> None:
    repo = tmp_path / "backups"
    job = write_job(tmp_path, "backup", driver="asyncssh",
                    steps=[{"command": "show version"}, {"backup": {"dir": str(repo)}}])
    first = run_runner(tmp_path, job, sim.inventory)
    assert first.returncode == 0, first.stderr
    assert len(git(repo, "log", "--format=%H").split()) == 1
    before, stored = files(repo), objects(repo)
    assert len(before) == DEVICES
    assert_clean(repo)
    run_id = last_run(tmp_path)
    for host, (status, steps) in records(tmp_path, run_id).items():
        backup = steps[-1]
        assert (status, backup["kind"], backup["changed"]) == ("changed", "backup", True)
        assert backup["output"] == str(repo / f"{host}.cfg")
        assert steps[0]["output"]  # the command step stored whole, though slimmed in memory

    # nothing changed: no commit, no file written, no object added
    again = run_runner(tmp_path, job, sim.inventory)
    assert again.returncode == 0, again.stderr
    assert len(git(repo, "log", "--format=%H").split()) == 1
    assert files(repo) == before
    assert objects(repo) == stored
    assert_clean(repo)
    assert {s for s, _ in records(tmp_path, last_run(tmp_path)).values()} == {"ok"}

    # three devices change: one commit of their three files, only they are written
    moved = sim.hosts[:3]
    change = write_job(tmp_path, "ntp", driver="asyncssh",
                       steps=[{"config": {"lines": ["ntp server 192.0.2.28"]}}])
    pushed = run_runner(tmp_path, change, sim.inventory, "--limit", ",".join(moved))
    assert pushed.returncode == 0, pushed.stderr
    third = run_runner(tmp_path, job, sim.inventory)
    assert third.returncode == 0, third.stderr
    commits = git(repo, "log", "--format=%H").split()
    assert len(commits) == 2
    assert sorted(git(repo, "show", "--name-only", "--format=", commits[0]).split()) == \
        sorted(f"{h}.cfg" for h in moved)
    after = files(repo)
    assert sorted(n for n in after if after[n] != before[n]) == sorted(f"{h}.cfg" for h in moved)
    for host in moved:
        assert "ntp server 192.0.2.28" in (repo / f"{host}.cfg").read_text(encoding="utf-8")
    assert_clean(repo)
    rows = records(tmp_path, last_run(tmp_path))
    assert sorted(h for h, (s, _) in rows.items() if s == "changed") == sorted(moved)
    assert sorted(h for h, (_, steps) in rows.items() if steps[-1]["changed"]) == \
        sorted(moved)
    assert all(steps[0]["output"] for _, steps in rows.values())


def test_a_work_tree_file_removed_by_hand_is_put_back_without_a_commit(
        sim: Fleet, tmp_path: Path) -> None:
    repo = tmp_path / "backups"
    job = write_job(tmp_path, "backup", driver="asyncssh",
                    hosts=sim.hosts[:5], steps=[{"backup": {"dir": str(repo)}}])
    assert run_runner(tmp_path, job, sim.inventory).returncode == 0
    kept = (repo / f"{sim.hosts[1]}.cfg").read_text(encoding="utf-8")
    (repo / f"{sim.hosts[1]}.cfg").unlink()
    (repo / f"{sim.hosts[2]}.cfg").write_text("edited by hand\n", encoding="utf-8")
    assert run_runner(tmp_path, job, sim.inventory).returncode == 0
    assert len(git(repo, "log", "--format=%H").split()) == 1
    assert (repo / f"{sim.hosts[1]}.cfg").read_text(encoding="utf-8") == kept
    assert "edited by hand" not in (repo / f"{sim.hosts[2]}.cfg").read_text(encoding="utf-8")
    assert_clean(repo)
