"""The README's worked example on real FRR routers, with every driver: a change that breaks
OSPF on the first router is caught by the post-check, that router is rolled back (its
config read back from vtysh is as before, OSPF comes back), and the rollout stops."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from runner.lab.converge import wait_converged
from tests.support.jobs import run_job, shipped_job
from tests.support.lab import DRIVERS, RunningLab, step, vtysh
from tests.support.receivers import JsonReceiver


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_change_that_breaks_ospf_is_rolled_back_and_the_rollout_stops(
        practice_lab: RunningLab, tmp_path: Path, driver: str) -> None:
    inventory = practice_lab.lab_dir / "inventory"
    before = {r: vtysh(practice_lab, r, "show", "running-config") for r in ("r1", "r2")}
    hook = JsonReceiver()
    job = shipped_job(tmp_path, "ospf-area.yml", driver=driver,
                   notify=[{"url": hook.url("ospf"), "on": ["failed", "rolled_back"]}])
    preview = run_job(tmp_path, job, inventory, "--dry-run", expect=0)
    rollback = step(preview["devices"][0], "rollback (if a step fails)")
    assert "no ip ospf area 1" in rollback["output"] and "ip ospf area 0" in rollback["output"]
    result = run_job(tmp_path, job, inventory, expect=1)
    by = {d["host"]: d for d in result["devices"]}
    assert (by["r1"]["status"], by["r1"]["error_class"]) == ("rolled_back", "CheckFailed")
    assert "parsed.neighbors | length == 2" in by["r1"]["error"]
    assert "+ ip ospf area 1" in step(by["r1"], "links to area 1")["diff"]
    assert not step(by["r1"], "rollback")["failed"]
    for router in ("r2", "r3", "r4"):
        assert (by[router]["status"], by[router]["error_class"]) == ("skipped",
                                                                    "RolloutStopped")
    # what the routers say: r1's config is as it was, r2 was never touched, OSPF recovers
    after = {r: vtysh(practice_lab, r, "show", "running-config") for r in ("r1", "r2")}
    assert after == before
    wait_converged(practice_lab.labs, practice_lab.state, timeout=60)
    # and the notification that says so
    message = hook.wait(1, 30)[0]
    hook.close()
    assert result["run_id"] in message["message"]
    assert "r1: rolled_back, CheckFailed" in message["message"]
    assert "r2: skipped, RolloutStopped: rollout stopped" in message["message"]
    shown = json.loads(subprocess.run(
        [sys.executable, "-m", "runner", "--db", f"sqlite:///{tmp_path / 'runner.db'}", "show",
         result["run_id"], "--json"], capture_output=True, text=True, check=True).stdout)
    assert [n["delivered"] for n in shown["notifications"]] == [True]
