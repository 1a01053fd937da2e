"""`runner twin` of a simulated fleet: a simulator plays production, the shipped backup job
fills the repository, and the twin serves each device seeded with its backup (no root, no
lab): the same backup job run on the twin's inventory backs up the same configs, `sync`
picks up a change pushed to production, and `down` stops the twin's simulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from runner.lab.system import pid_alive
from tests.support.fleet import FleetSpec, start_fleet
from tests.support.jobs import run_job, shipped_job, write_job
from tests.support.web import Web

SPEC = FleetSpec(3, "127.109.25.1")


def runner(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "RUNNER_HOME"}
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=workdir,
                          capture_output=True, text=True, timeout=300, env=env, check=False)


def twin(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return runner(workdir, "twin", *args)


def backup_job(directory: Path, backups: Path) -> Path:
    directory.mkdir(exist_ok=True)
    return shipped_job(directory, "backup.yml", targets={"groups": ["sim"]},
                       steps=[{"backup": {"dir": str(backups)}}])


def configs(directory: Path) -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(directory.glob("*.cfg"))}


def test_a_twin_of_a_simulated_fleet_serves_its_backups_syncs_and_stops(tmp_path: Path) -> None:
    with start_fleet(tmp_path, SPEC) as fleet:
        backups = tmp_path / "backups"
        prod_job = backup_job(tmp_path / "prodjob", backups)
        run_job(tmp_path, prod_job, fleet.inventory, expect=0)
        hosts = fleet.hosts
        up = twin(tmp_path, "up", "--from-backups", str(backups), "-i", str(fleet.inventory),
                  "--name", "twsim")
        state_file = tmp_path / ".runner" / "twins" / "twsim" / "sim" / "sim.json"
        try:
            assert up.returncode == 0, (up.stdout, up.stderr)
            out = up.stdout
            assert f"0 FRR router(s)\n3 simulated device(s) (the fleet simulator, seeded with " \
                   f"their backups; no links, no routing): {', '.join(hosts)}" in out
            # every device's enable secret and SNMP community: masked in the backup, the lab
            # value in the twin
            assert "replaced by the lab value 'twin-lab-secret' (6 line(s))" in out
            assert f"  {hosts[0]} line " in out and "snmp-server community twin-lab-secret" in out
            assert "running configs equal to their backups: 3/3" in out
            # production's routing is not read for simulated devices: said for each
            assert "routing not compared with production's (no router in the twin):" in out
            for host in hosts:
                assert f"\n  {host}: simulated: routing not compared" in out
            inventory = tmp_path / ".runner" / "twins" / "twsim" / "inventory"
            assert f"inventory (production's host names): {inventory}" in out
            pid = json.loads(state_file.read_text(encoding="utf-8"))["pid"]

            # `lab status` lists the twin beside any other lab: its simulated devices, up
            listed = runner(tmp_path, "lab", "status", "--json")
            assert listed.returncode == 0, listed.stderr
            mine = [st for st in json.loads(listed.stdout) if st["lab"] == "twsim"]
            assert len(mine) == 1 and mine[0]["backend"] == "sim", listed.stdout
            assert mine[0]["inventory"] == str(inventory)
            assert [(n["name"], n["role"], n["ssh"]) for n in mine[0]["nodes"]] == [
                (h, "simulated", True) for h in hosts]
            shown = runner(tmp_path, "lab", "status", "twsim")
            assert shown.returncode == 0, shown.stderr
            assert shown.stdout.startswith("lab twsim  backend: sim  topology: -\n")
            assert f"{hosts[0]}  cisco_ios  simulated  127.77." in shown.stdout
            web = Web(tmp_path, tmp_path / "prodjob", fleet.inventory)
            web.env["RUNNER_HOME"] = str(tmp_path / ".runner")  # where `twin up` put it
            web.start()
            try:
                with web.client(web.token("viewer", "noc")) as client:
                    api = [st for st in client.get("/api/labs").json() if st["lab"] == "twsim"]
                    page = client.get("/labs").text
            finally:
                web.stop()
            assert api == mine
            assert 'data-lab="twsim"' in page and "no links to draw" in page

            # the shipped backup job, run on the twin's inventory, backs up the same configs
            twin_backups = tmp_path / "twin-backups"
            twin_job = backup_job(tmp_path / "twinjob", twin_backups)
            run_job(tmp_path, twin_job, inventory, expect=0)
            assert configs(twin_backups) == configs(backups)
            twin_hosts = yaml.safe_load((inventory / "hosts.yaml").read_text(encoding="utf-8"))
            assert list(twin_hosts) == hosts
            assert all(h["hostname"].startswith("127.77.") for h in twin_hosts.values())

            again = twin(tmp_path, "up", "--from-backups", str(backups), "-i",
                         str(fleet.inventory), "--name", "twsim")
            assert again.returncode == 2
            assert "twin 'twsim' is already up (its simulated devices serve)" in again.stderr

            # a change pushed to production and backed up reaches the twin with `sync`
            push = write_job(tmp_path / "push", "push", hosts=[hosts[1]],
                             steps=[{"config": {"lines": ["ntp server 192.0.2.201"]}}])
            run_job(tmp_path, push, fleet.inventory, expect=0)
            run_job(tmp_path, prod_job, fleet.inventory, expect=0)
            synced = twin(tmp_path, "sync", "twsim")
            assert synced.returncode == 0, (synced.stdout, synced.stderr)
            assert f"simulator restarted with the newest backups (changed: {hosts[1]})" in \
                synced.stdout
            assert "running configs equal to their backups: 3/3" in synced.stdout
            assert not pid_alive(pid)  # the old simulator is gone
            run_job(tmp_path, twin_job, inventory, expect=0)
            assert configs(twin_backups) == configs(backups)
            assert "ntp server 192.0.2.201" in (twin_backups / f"{hosts[1]}.cfg").read_text(
                encoding="utf-8")
            pid = json.loads(state_file.read_text(encoding="utf-8"))["pid"]
        finally:
            down = twin(tmp_path, "down", "twsim")
        assert down.returncode == 0, down.stderr
        assert down.stdout.strip() == "twin twsim removed"
        assert not pid_alive(pid)
        assert not (tmp_path / ".runner" / "twins" / "twsim").exists()
        gone = runner(tmp_path, "lab", "status", "twsim")
        assert gone.returncode != 0 and "twsim" in gone.stderr, (gone.stdout, gone.stderr)
