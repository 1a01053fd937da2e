"""`runner run --rehearse` on real FRR: the practice lab plays production (rhprod,
172.20.85.0/24), the shipped backup job fills the repository, and twin rhtwin (172.20.86.0/24)
is built from it beside production. jobs/ospf-area.yml (its post-check fails on the first
router) is rehearsed, fails on the twin, and production is never contacted: the run ends
rehearsal_failed and a second backup finds no config changed. jobs/bgp-descriptions.yml
rehearses clean and then changes production, which the next backup shows. One production
lab and one twin serve both cases; both are removed even when a case fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.job.backups import BackupRepo
from tests.support.base import ROOT
from tests.support.jobs import run_argv, run_job, shipped_job, sqlite_url
from tests.support.lab import RunningLab, practice_copy

ROUTERS = ["r1", "r2", "r3", "r4"]
TWIN = "rhtwin"


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "RUNNER_HOME"}  # .runner in workdir


def runner_in(workdir: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runner", "--db", sqlite_url(workdir), *args],
                          cwd=workdir, capture_output=True, text=True, timeout=timeout,
                          env=_env(), check=False)


class Setup:
    def __init__(self, lab: RunningLab, workdir: Path, backups: Path, job: Path) -> None:
        self.lab, self.workdir, self.backups, self.job = lab, workdir, backups, job

    @property
    def inventory(self) -> Path:
        return self.lab.lab_dir / "inventory"

    def backup(self) -> dict[str, Any]:
        return run_job(self.workdir, self.job, self.inventory, expect=0, env=_env())

    def rehearse(self, job: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(run_argv(sqlite_url(self.workdir), ROOT / "jobs" / job,
                                       self.inventory, "--rehearse", TWIN),
                              cwd=self.workdir, capture_output=True, text=True, timeout=900,
                              env=_env(), check=False)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    workdir = tmp_path_factory.mktemp("rehearse")
    with practice_copy(workdir, "rhprod", 85) as lab:
        backups = workdir / "backups"
        job = shipped_job(workdir, "backup.yml", steps=[
            {"backup": {"dir": str(backups), "volatile": ["^frr version .*$"]}}])
        here = Setup(lab, workdir, backups, job)
        here.backup()
        try:
            up = runner_in(workdir, "twin", "up", "--from-backups", str(backups), "-i",
                           str(here.inventory), "--name", TWIN, "--mgmt-subnet",
                           "172.20.86.0/24")
            assert up.returncode == 0, (up.stdout, up.stderr)
            yield here
        finally:
            down = runner_in(workdir, "twin", "down", TWIN)
            assert down.returncode == 0, down.stderr


def test_ospf_area_fails_on_the_twin_and_production_is_untouched(setup: Setup) -> None:
    before = BackupRepo(setup.backups).latest("r1")
    proc = setup.rehearse("ospf-area.yml")
    assert proc.returncode == 4, (proc.stdout[-3000:], proc.stderr[-3000:])
    data = json.loads(proc.stdout)
    assert data["status"] == "rehearsal_failed"
    assert {(d["host"], d["status"], d["error_class"]) for d in data["devices"]} == \
        {(r, "skipped", "RehearsalFailed") for r in ROUTERS}
    rehearsal = data["rehearsal"]
    assert rehearsal["twin"] == TWIN and rehearsal["passed"] is False
    on_twin = {d["host"]: d for d in rehearsal["devices"]}
    # the same rollout as production's: r1 first, its post-check failed, it was put back,
    # and the rollout stopped before the others
    first = on_twin["r1"]
    assert first["status"] == "rolled_back", first
    assert first["error_class"] == "CheckFailed" and first["failed_check"] == "ospf after"
    assert "ip ospf area 1" in first["diff"]
    assert {on_twin[r]["error_class"] for r in ROUTERS[1:]} == {"RolloutStopped"}
    assert data["error"].startswith(f"the rehearsal on twin {TWIN} failed: r1 rolled_back "
                                    "(CheckFailed in 'ospf after')")
    assert rehearsal["reset"].startswith("synced with backups commit ")

    # production: a second backup finds nothing changed
    again = setup.backup()
    assert again["backup_commit"] is None
    assert {d["status"] for d in again["devices"]} == {"ok"}
    assert BackupRepo(setup.backups).latest("r1") == before

    shown = runner_in(setup.workdir, "show", data["run_id"])
    assert "status rehearsal_failed" in shown.stdout
    assert f"rehearsal on twin {TWIN}: FAILED: production was NOT contacted" in shown.stdout
    assert "--- r1 on the twin" in shown.stdout


def test_bgp_descriptions_rehearse_clean_then_change_production(setup: Setup) -> None:
    proc = setup.rehearse("bgp-descriptions.yml")
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    data = json.loads(proc.stdout)
    assert data["status"] == "ok"
    rehearsal = data["rehearsal"]
    assert rehearsal["passed"] is True
    assert {d["host"]: d["status"] for d in rehearsal["devices"]} == \
        dict.fromkeys(ROUTERS, "changed")
    assert {d["host"]: d["status"] for d in data["devices"]} == dict.fromkeys(ROUTERS, "changed")
    again = setup.backup()
    assert again["backup_commit"] is not None
    config = (setup.backups / "r1.cfg").read_text(encoding="utf-8")
    assert "neighbor 10.255.0.2 description r2" in config
    assert rehearsal["reset"].startswith("synced with backups commit ")
