"""Golden config on real FRR routers (jobs/compliance.yml): the routers match their
intended OSPF and BGP; a drift made by hand over SSH in vtysh is found (feature by feature,
section aware), notified once (not again while it stays), previewed, remediated through
the pipeline (hier_config's commands, FRR's driver), and the router is compliant again with
OSPF still Full; the history says when it drifted and which run fixed it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncssh

from runner.lab.converge import wait_converged
from tests.support.base import ROOT
from tests.support.jobs import run_job, shipped_job
from tests.support.lab import RunningLab, step, vtysh
from tests.support.receivers import JsonReceiver

DRIFT = ["configure terminal", "interface eth1", "ip ospf cost 50", "exit",
         "router bgp 65000", "no neighbor CORE timers connect 5", "timers bgp 10 30", "exit",
         "end"]


def by_hand(lab: RunningLab, node: str, lines: list[str]) -> str:
    """An engineer's SSH session to the router's vtysh (a terminal, its host key checked),
    typing config lines one by one at the prompt."""
    async def go() -> str:
        async with asyncssh.connect(lab.ip(node), username="admin", password="admin",
                                    known_hosts=str(lab.known_hosts)) as conn:
            process = await conn.create_process(term_type="vt100")
            seen = ""
            for line in [*lines, "exit"]:
                process.stdin.write(line + "\n")
                seen += await asyncio.wait_for(process.stdout.readuntil("#"), 30) \
                    if line != "exit" else ""
            await asyncio.wait_for(process.wait_closed(), 30)
            return seen
    return asyncio.run(go())


def cli(tmp_path: Path, *args: str,
        expect: int | None = 0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "runner", "--db", f"sqlite:///{tmp_path / 'runner.db'}",
         *args], capture_output=True, text=True, check=False, cwd=tmp_path, timeout=300)
    assert expect is None or proc.returncode == expect, proc.stderr + proc.stdout
    return proc


def by_host(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["host"]: d for d in result["devices"]}


def test_drift_made_by_hand_is_found_notified_once_and_remediated(
        practice_lab: RunningLab, tmp_path: Path) -> None:
    inventory = practice_lab.lab_dir / "inventory"
    hook = JsonReceiver()
    templates = str(ROOT / "templates")
    job = shipped_job(tmp_path, "compliance.yml", notify=[])

    # the lab as shipped is as intended (tests before this one may have left changes on the
    # shared lab: a remediation puts them right first)
    first = json.loads(cli(tmp_path, "run", str(job), "-i", str(inventory), "--templates",
                           templates, "--json", expect=None).stdout)
    if first["summary"]["non_compliant"]:
        cli(tmp_path, "remediate", first["run_id"], "-i", str(inventory), "--templates",
            templates)
        first = run_job(tmp_path, job, inventory, expect=0)
    assert first["summary"]["ok"] == 4, first
    for device in first["devices"]:
        assert device["compliance"]["ospf"]["compliant"], device["compliance"]
        assert device["compliance"]["bgp"]["compliant"], device["compliance"]

    shipped_job(tmp_path, "compliance.yml",  # from now on, new drift is notified
             notify=[{"url": hook.url("drift"), "on": ["drift", "failed"]}])

    # an engineer changes r2 by hand, in vtysh over SSH
    by_hand(practice_lab, "r2", DRIFT)
    assert "ip ospf cost 50" in vtysh(practice_lab, "r2", "show", "running-config")

    found = run_job(tmp_path, job, inventory, expect=3)  # drift: exit code 3
    devices = by_host(found)
    assert devices["r2"]["status"] == "non_compliant" and devices["r2"]["error"] is None
    assert {devices[r]["status"] for r in ("r1", "r3", "r4")} == {"ok"}
    ospf, bgp = devices["r2"]["compliance"]["ospf"], devices["r2"]["compliance"]["bgp"]
    assert not ospf["compliant"] and ospf["missing"] == []
    assert ospf["extra"] == ["interface eth1", " ip ospf cost 50"]  # in its section
    assert (ospf["missing_count"], ospf["extra_count"], bgp["extra_count"]) == (0, 1, 1)
    assert bgp["missing"] == ["router bgp 65000", " neighbor CORE timers connect 5"]
    assert bgp["extra"] == ["router bgp 65000", " timers bgp 10 30"]
    # hier_config's remediation, as FRR takes it: negations and additions in their sections
    assert ospf["remediation"] == ["interface eth1", " no ip ospf cost 50", " exit"]
    assert bgp["remediation"] == ["router bgp 65000", " no timers bgp 10 30",
                                  " neighbor CORE timers connect 5", " exit"]
    message = hook.wait(1, 30)[0]["message"]
    assert "New drift (1 devices" in message and "r2: ospf (0 missing, 1 extra), bgp (1 " \
        "missing, 1 extra)" in message

    # the same drift the next night is no news
    again = run_job(tmp_path, job, inventory, expect=3)
    shown = json.loads(cli(tmp_path, "show", again["run_id"], "--json").stdout)
    assert shown["notifications"] == []
    latest = json.loads(cli(tmp_path, "compliance", "--json", expect=3).stdout)
    assert latest["summary"] == {"bgp": {"compliant": 3, "non_compliant": 1},
                                 "ospf": {"compliant": 3, "non_compliant": 1}}
    drifted = [r for r in latest["latest"] if r["status"] == "non_compliant"]
    assert {(r["host"], r["since_run"]) for r in drifted} == {("r2", found["run_id"])}

    # a preview sends nothing and shows the commands, the diff and the rollback
    before = vtysh(practice_lab, "r2", "show", "running-config")
    preview = json.loads(cli(tmp_path, "remediate", found["run_id"], "-i", str(inventory),
                             "--templates", templates, "--dry-run", "--json").stdout)
    assert [d["host"] for d in preview["devices"]] == ["r2"]
    assert preview["remediates"] == found["run_id"] and preview["dry_run"]
    fix = step(preview["devices"][0], "golden config: remediation")
    assert "no ip ospf cost 50" in fix["output"] and "- ip ospf cost 50" in fix["diff"]
    assert "+ neighbor CORE timers connect 5" in fix["diff"]
    assert "ip ospf cost 50" in step(preview["devices"][0],
                                     "rollback (if a step fails)")["output"]
    assert vtysh(practice_lab, "r2", "show", "running-config") == before

    # remediated through the pipeline: pushed, checked again, OSPF post-check, compliant
    done = json.loads(cli(tmp_path, "remediate", found["run_id"], "-i", str(inventory),
                          "--templates", templates, "--json").stdout)
    r2 = by_host(done)["r2"]
    assert (done["remediates"], r2["status"]) == (found["run_id"], "changed"), r2
    assert r2["compliance"]["ospf"]["compliant"] and r2["compliance"]["bgp"]["compliant"]
    assert step(r2, "ospf")["failed"] is False  # the post-check: OSPF Full on both links
    running = vtysh(practice_lab, "r2", "show", "running-config")
    assert "ip ospf cost 50" not in running and "timers bgp 10 30" not in running
    assert "neighbor CORE timers connect 5" in running

    after = run_job(tmp_path, job, inventory, expect=0)
    assert after["summary"]["ok"] == 4
    wait_converged(practice_lab.labs, practice_lab.state, timeout=60)
    history = json.loads(cli(tmp_path, "compliance", "--history", "--host", "r2",
                             "--json").stdout)
    ospf_events = [(e["event"], e["run_id"], e["remediates"]) for e in history
                   if e["feature"] == "ospf"]
    assert ospf_events[:2] == [("fixed", done["run_id"], found["run_id"]),
                               ("drifted", found["run_id"], None)]
    assert ospf_events[-1][0] == "first"
    hook.close()
