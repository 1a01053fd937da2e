"""Hostile and careless use, on the simulator, with every driver: secrets stay out of every
output (diffs, previews, config echoes, -vv logs, the database), unknown and changed host
keys are refused, runs never stay `running` (SIGTERM, SIGKILL, a failing backup dir), and
templates and answers are bounded."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from runner.lab.netns import wait_for
from tests.support.base import free_port
from tests.support.fleet import Fleet, FleetSpec, start_fleet
from tests.support.jobs import run_runner, write_job
from tests.support.memory import peak_rss

DRIVERS = ["netmiko", "scrapli", "asyncssh"]
ENABLE = "Ena6le-h4rden"
# Secret config lines that are not inventory credentials: each value must never show.
SECRET_LINES = {"snmp-server community C0mmunityX RO": "C0mmunityX",
                "username ops secret 0 Us3rS3cretX": "Us3rS3cretX",
                "tacacs-server key T4cacsKeyX": "T4cacsKeyX"}
BGP = ["router bgp 65000", " neighbor 192.0.2.7 password N3ighb0rX"]


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    # logins land in user exec: every driver sends the enable secret
    with start_fleet(tmp_path_factory.mktemp("sim-hard"),
                     FleetSpec(16, "127.110.0.1", faults=("slow=4",), slow_delay=0.5,
                               extra=("--enable-secret", ENABLE))) as fleet:
        yield fleet


def runner(tmp_path: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "runner", "--db", f"sqlite:///{tmp_path / 'runner.db'}", *args]


@pytest.mark.parametrize("driver", DRIVERS)
def test_secret_lines_never_show_in_previews_diffs_echoes_logs_or_the_database(
        sim: Fleet, tmp_path: Path, driver: str) -> None:
    host = sim.healthy()[DRIVERS.index(driver)]
    job = write_job(tmp_path, "secrets", driver=driver, steps=[
        {"config": {"lines": [*SECRET_LINES, *BGP]}},
        {"command": "show running-config"}])
    secrets = [*SECRET_LINES.values(), "N3ighb0rX", ENABLE, sim.password]
    outputs = []
    for args in (("--dry-run",), ("-vv",)):
        proc = run_runner(tmp_path, job, sim.inventory, *args, "--limit", host)
        assert proc.returncode == 0, proc.stderr[-2000:]
        outputs += [proc.stdout, proc.stderr]
        device = json.loads(proc.stdout)["devices"][0]
        assert device["status"] == "changed"
        assert "snmp-server community ********" in device["steps"][0]["diff"]
    shown = subprocess.run(runner(tmp_path, "show", json.loads(proc.stdout)["run_id"],
                                  "--host", host), capture_output=True, text=True, check=True)
    outputs.append(shown.stdout)
    outputs.append((tmp_path / "runner.db").read_bytes().decode(errors="replace"))
    assert "DEBUG" in outputs[3]  # -vv did log
    for text in outputs:
        for secret in secrets:
            assert secret not in text, (secret, text[:3000])


# Secret lines as people type them and devices echo them: case, blanks, abbreviations, the
# secret mid-line, both SNMPv3 passwords, in sub-modes. Each value must reach nothing
# runner stores: --json, `runner show --json`, the database, the backup repository.
MEANING = ["USERNAME  carol  SECRET  0  Cx7Upper1", "username dave sec 0 Dx7Abbrev2",
           "username erin secret 0 Ex7Second3 privilege 15", "enable  Secret  9  $9$Fx7En4",
           "snmp-server  COMMUNITY  Gx7Comm5  RO",
           "snmp-server host 192.0.2.9 version 2c Hx7Trap6",
           "snmp-server user mon grp v3 auth sha Ix7Auth7 priv aes 128 Jx7Priv8",
           "tacacs-server host 192.0.2.10 key 7 Kx7Tacacs9",
           "radius-server host 192.0.2.11 auth-port 1645 acct-port 1646 key Lx7Radius10",
           "crypto isakmp key 0 Mx7Isakmp11 address 192.0.2.20",
           "ntp authentication-key 1 md5 Nx7Ntp12 7",
           "interface GigabitEthernet0/1", " ip ospf authentication-key 7 Ox7Ospf13",
           " ip ospf message-digest-key 1 md5 Px7Md5x14",
           " standby 1 authentication md5 key-string 7 Qx7Hsrp15",
           "router bgp 65000", " neighbor 192.0.2.7 password 7 Rx7Bgp16",
           "line vty 0 4", " password 7 Sx7Vty17"]


def test_secret_lines_found_by_meaning_reach_no_stored_data(sim: Fleet,
                                                            tmp_path: Path) -> None:
    secrets = sorted({w for line in MEANING for w in line.split() if "x7" in w})
    assert len(secrets) == 17
    backups = tmp_path / "backups"
    job = write_job(tmp_path, "meaning", driver="asyncssh", steps=[
        {"config": {"lines": MEANING}},
        {"command": "show running-config"},
        # the archive log: each line as it was typed, after a `|`
        {"command": "show archive log config all"},
        {"backup": {"dir": str(backups)}}])
    proc = run_runner(tmp_path, job, sim.inventory, "--limit", sim.healthy()[8])
    assert proc.returncode == 0, proc.stderr[-2000:]
    device = json.loads(proc.stdout)["devices"][0]
    assert device["status"] == "changed", device
    archive = device["steps"][2]["output"]
    assert "|USERNAME  carol  SECRET  0  ********" in archive
    assert "|snmp-server user mon grp v3 auth sha ******** priv aes 128 ********" in archive
    shown = subprocess.run(runner(tmp_path, "show", json.loads(proc.stdout)["run_id"],
                                  "--json"), capture_output=True, text=True, check=True)
    history = subprocess.run(["git", "-C", str(backups), "log", "-p", "--all"],
                             capture_output=True, text=True, check=True)
    stored = [proc.stdout, proc.stderr, shown.stdout, history.stdout,
              (tmp_path / "runner.db").read_bytes().decode(errors="replace"),
              *(p.read_text(encoding="utf-8") for p in backups.rglob("*")
                if p.is_file() and ".git" not in p.parts)]
    assert any("snmp-server  COMMUNITY" in t or "snmp-server COMMUNITY" in t for t in stored)
    for text in stored:
        for secret in secrets:
            assert secret not in text, (secret, text[:3000])


def inventory_without_known_hosts(sim: Fleet, tmp_path: Path, **data: Any) -> Path:
    """The simulator's inventory with no known_hosts for any driver (as many inventories
    are written), plus host data."""
    inventory = tmp_path / "no-known-hosts"
    inventory.mkdir()
    (inventory / "hosts.yaml").write_text((sim.inventory / "hosts.yaml").read_text())
    (inventory / "groups.yaml").write_text(yaml.safe_dump({"sim": {"data": data}}))
    defaults = sim.defaults
    for options in defaults["connection_options"].values():
        extras = options["extras"]
        options["extras"] = {"secret": extras["secret"]}
    (inventory / "defaults.yaml").write_text(yaml.safe_dump(defaults), encoding="utf-8")
    return inventory


@pytest.mark.parametrize("driver", DRIVERS)
def test_unknown_host_keys_are_refused_unless_the_inventory_opts_out(
        sim: Fleet, tmp_path: Path, driver: str) -> None:
    host = sim.healthy()[3]
    env = {**os.environ, "HOME": str(tmp_path)}  # no ~/.ssh/known_hosts to fall back on
    job = write_job(tmp_path, "show", driver=driver, retries={"count": 2, "backoff": 0},
                    steps=[{"command": "show clock"}])
    refused = run_runner(tmp_path, job, inventory_without_known_hosts(sim, tmp_path), "--limit",
                  host, env=env)
    device = json.loads(refused.stdout)["devices"][0]
    assert (device["status"], device["error_class"], device["attempts"]) == (
        "failed", "HostKeyMismatch", 1), device
    opted_out = tmp_path / "opted"
    opted_out.mkdir()
    allowed = run_runner(opted_out, job, inventory_without_known_hosts(
        sim, opted_out, host_key_checking=False), "--limit", host, env=env)
    assert allowed.returncode == 0, allowed.stderr
    assert "host key checking is off" in allowed.stderr


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_changed_host_key_is_a_mismatch_never_retried(sim: Fleet, tmp_path: Path,
                                                        driver: str) -> None:
    host = sim.healthy()[4]
    inventory = tmp_path / "inv"
    inventory.mkdir()
    text = {n: (sim.inventory / n).read_text() for n in ("hosts.yaml", "groups.yaml",
                                                         "defaults.yaml")}
    forged = tmp_path / "known_hosts"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                    str(tmp_path / "k")], check=True)
    key = (tmp_path / "k.pub").read_text().split()[:2]
    hosts = yaml.safe_load(text["hosts.yaml"])
    forged.write_text(f"[{hosts[host]['hostname']}]:{hosts[host]['port']} {' '.join(key)}\n")
    for name, body in text.items():
        known = str(sim.inventory.parent / "known_hosts")
        (inventory / name).write_text(body.replace(known, str(forged)))
    job = write_job(tmp_path, "show", driver=driver, retries={"count": 2, "backoff": 0},
                    steps=[{"command": "show clock"}])
    proc = run_runner(tmp_path, job, inventory, "--limit", host)
    device = json.loads(proc.stdout)["devices"][0]
    assert (device["status"], device["error_class"], device["attempts"]) == (
        "failed", "HostKeyMismatch", 1), device


def slow_job(tmp_path: Path, sim: Fleet) -> tuple[Path, list[str]]:
    slow = sim.slow
    job = write_job(tmp_path, "slow", driver="asyncssh", concurrency=2,
                    targets={"hosts": slow}, steps=[{"command": ["show clock"] * 20}])
    return job, slow


def history(tmp_path: Path) -> list[dict[str, Any]]:
    return list(json.loads(subprocess.run(runner(tmp_path, "history", "--json"),
                                          capture_output=True, text=True,
                                          check=True).stdout))


def run_status(tmp_path: Path) -> str | None:
    """The newest run's status; None before runner.db or its run row exists (the store is
    created, and migrated, a moment before the run is recorded in it)."""
    if not (tmp_path / "runner.db").exists():
        return None
    runs = history(tmp_path)
    return str(runs[0]["status"]) if runs else None


def stored(tmp_path: Path) -> tuple[dict[str, Any], list[tuple[str, str, str | None]]]:
    runs = history(tmp_path)
    assert runs, "no run recorded"
    db = sqlite3.connect(tmp_path / "runner.db")
    rows = db.execute("select host, status, error_class from devices where run_id = ?",
                      (runs[0]["run_id"],)).fetchall()
    db.close()
    return runs[0], rows


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_a_run_killed_or_terminated_is_never_left_running(sim: Fleet, tmp_path: Path,
                                                          how: str) -> None:
    job, slow = slow_job(tmp_path, sim)
    proc = subprocess.Popen(runner(tmp_path, "run", str(job), "-i", str(sim.inventory)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path, start_new_session=True)
    try:
        wait_for(lambda: run_status(tmp_path) == "running", 60, "the run to start")
        if how == "SIGTERM":
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 143 and "terminated" in err
        else:
            os.killpg(proc.pid, signal.SIGKILL)  # the whole process group: nothing cleans up
            proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    run_row, rows = stored(tmp_path)  # this runner start finds the dead run (SIGKILL)
    assert run_row["status"] == "interrupted"
    assert sorted(r[0] for r in rows) == sorted(slow)  # one record per device
    in_flight = [r for r in rows if r[1] == "failed"]
    assert in_flight and all(r[2] == "Interrupted" for r in in_flight)
    if how == "SIGTERM":
        assert {r[1:] for r in rows} <= {("failed", "Interrupted"),
                                        ("skipped", "Interrupted")}


def test_a_backup_dir_that_is_a_file_is_refused_before_any_device(sim: Fleet,
                                                                   tmp_path: Path) -> None:
    (tmp_path / "backups").write_text("a file where the backup repository should be")
    job = write_job(tmp_path, "backup", driver="asyncssh",
                    steps=[{"backup": {"dir": str(tmp_path / "backups")}}])
    proc = run_runner(tmp_path, job, sim.inventory, "--limit", sim.healthy()[5])
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == (
        f"error: {job}:5: steps[0].backup.dir: {tmp_path / 'backups'} exists and is not a "
        "directory (expected the backup git repository, or a path to create it at)")


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a small tmpfs")
def test_a_backup_on_a_full_disk_fails_the_run_clearly_and_loses_nothing(
        sim: Fleet, tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)],
                   check=True)
    try:
        (disk / "filler").write_bytes(b"\0" * (256 * 1024 - 4096))
        job = write_job(tmp_path, "backup", driver="asyncssh",
                        steps=[{"backup": {"dir": str(disk / "backups")}}])
        proc = run_runner(tmp_path, job, sim.inventory, "--limit", sim.healthy()[5])
        assert proc.returncode == 1
        assert proc.stderr.strip().splitlines()[-1].startswith("error: ")
        run_row, rows = stored(tmp_path)
        assert run_row["status"] == "failed" and [r[1] for r in rows] == ["ok"]
        shown = json.loads(subprocess.run(runner(tmp_path, "show", run_row["run_id"],
                                                 "--json"), capture_output=True, text=True,
                                          check=True).stdout)
        assert shown["error"] and "backup" in shown["error"].lower()
        (disk / "filler").unlink()  # space again: the next run backs up as usual
        again = run_runner(tmp_path, job, sim.inventory, "--limit", sim.healthy()[5])
        assert again.returncode == 0, again.stderr
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_hostile_templates_fail_fast_within_the_budget(sim: Fleet,
                                                       tmp_path: Path) -> None:
    """Loops, sizes and memory: each bomb fails its device, and the `runner run` process
    that rendered it stays small (its own peak RSS: tests/support/memory.py)."""
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "loops.j2").write_text(
        "{% for i in range(99999) %}{% for j in range(99999) %}x{% endfor %}{% endfor %}\n")
    (templates / "huge.j2").write_text("description {{ 'a' * 10**8 }}\n")
    (templates / "wide.j2").write_text(
        "{% for i in range(90000) %}description {{ i }} padding padding\n{% endfor %}")
    (templates / "zfill.j2").write_text("description {{ 'a'.zfill(3000000000) }}\n")
    (templates / "doubling.j2").write_text(
        "{% set ns = namespace(s='ab') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}"
        "{% endfor %}description {{ ns.s }}\n")
    too_big = "more than the 1,048,576 bytes one value may hold (limits.template_value)"
    for name, expected in (("loops.j2", "loops more than 1,000,000 times"),
                           ("huge.j2", too_big),
                           ("wide.j2", "more than the job's limits.rendered (1,048,576"),
                           ("zfill.j2", "padded text (about 3,000,000,000 bytes), " + too_big),
                           ("doubling.j2", too_big)):
        job = write_job(tmp_path, "t", driver="asyncssh", timeouts={"device": 10},
                        steps=[{"config": {"template": name}}])
        out = tmp_path / f"{name}.json"
        with out.open("w", encoding="utf-8") as stdout:
            _, peak = peak_rss(runner(tmp_path, "run", str(job), "-i", str(sim.inventory),
                                      "--templates", str(templates), "--json", "--limit",
                                      sim.healthy()[6]), tmp_path / f"{name}.hwm",
                               stdout=stdout)
        device = json.loads(out.read_text(encoding="utf-8"))["devices"][0]
        assert (device["status"], device["error_class"]) == ("failed", "RenderFailed")
        assert expected in device["error"]
        assert peak < 300 * 2**20, (name, peak)
    assert (tmp_path / "runner.db").stat().st_size < 5_000_000  # nothing huge was stored


def test_an_answer_past_the_output_limit_fails_the_device_clearly(sim: Fleet,
                                                                 tmp_path: Path) -> None:
    job = write_job(tmp_path, "big", driver="asyncssh", limits={"output": 2048},
                    steps=[{"command": "show clock"}, {"command": "show running-config"}])
    proc = run_runner(tmp_path, job, sim.inventory, "--limit", sim.healthy()[7])
    device = json.loads(proc.stdout)["devices"][0]
    assert (device["status"], device["error_class"]) == ("failed", "OutputTooLarge")
    assert "more than the job's limits.output (2,048)" in device["error"]
    assert len(device["steps"][1]["output"]) < 2048


def test_celery_with_the_broker_down_is_a_record_per_device_not_a_traceback(
        sim: Fleet, tmp_path: Path) -> None:
    job = write_job(tmp_path, "show", driver="asyncssh",
                    steps=[{"command": "show clock"}])
    hosts = sim.healthy()[:3]
    env = {**os.environ, "RUNNER_BROKER_URL": f"redis://:Br0kerPw9@127.0.0.1:{free_port()}/0"}
    proc = run_runner(tmp_path, job, sim.inventory, "--engine", "celery", "--limit",
               ",".join(hosts), env=env)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and "Br0kerPw9" not in proc.stderr + proc.stdout
    devices = json.loads(proc.stdout)["devices"]
    assert [(d["host"], d["status"], d["error_class"]) for d in devices] == [
        (h, "failed", "BrokerLost") for h in hosts]
    assert "is unreachable" in devices[0]["error"] and "not contacted" in devices[0]["error"]
