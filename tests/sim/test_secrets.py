"""Secrets from outside the files, on the simulator with every driver: a password from the
environment, an enable secret from a file and a secret template variable are read where the
sessions open, used, and found nowhere runner writes (--json, -vv logs, `runner show`, the
database); weak passwords (short, or equal to the username) run and stay masked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
import yaml

from runner.redact import MASK
from tests.support.fleet import Fleet, FleetSpec, start_fleet

DRIVERS = ["netmiko", "scrapli", "asyncssh"]
ENABLE = "Ena6le-fr0m-file"
COMMUNITY = "C0mmunity-fr0m-env"


def simulator(tmp_path_factory: pytest.TempPathFactory,
              spec: FleetSpec) -> AbstractContextManager[Fleet]:
    """Four devices of their own (started and stopped by `with`)."""
    return start_fleet(tmp_path_factory.mktemp("sim-secrets"), spec)


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with simulator(tmp_path_factory,
                   FleetSpec(4, "127.112.0.1", extra=("--enable-secret", ENABLE))) as fleet:
        yield fleet


def runner(tmp_path: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "runner", "--db", f"sqlite:///{tmp_path / 'r.db'}", *args]


def referenced_inventory(sim: Fleet, tmp_path: Path, secret_file: Path) -> Path:
    """The simulator's inventory with the password as {env: ...} and the enable secret as
    {file: ...}: no secret written in it."""
    inventory = tmp_path / "inventory"
    inventory.mkdir()
    for name in ("hosts.yaml", "groups.yaml"):
        (inventory / name).write_text((sim.inventory / name).read_text(encoding="utf-8"),
                                      encoding="utf-8")
    defaults = sim.defaults
    defaults["password"] = {"env": "RUNNER_SIM_TEST_PASSWORD"}
    for options in defaults["connection_options"].values():
        options["extras"]["secret"] = {"file": str(secret_file)}
    (inventory / "defaults.yaml").write_text(yaml.safe_dump(defaults), encoding="utf-8")
    return inventory


def everything_written(tmp_path: Path, *procs: subprocess.CompletedProcess[str]) -> list[str]:
    """stdout and stderr of these runs, `runner show --json` of each, and the database."""
    texts = [t for p in procs for t in (p.stdout, p.stderr)]
    for proc in procs:
        run_id = json.loads(proc.stdout)["run_id"]
        texts.append(subprocess.run(runner(tmp_path, "show", run_id, "--json"),
                                    capture_output=True, text=True, check=True).stdout)
    texts.append((tmp_path / "r.db").read_bytes().decode(errors="replace"))
    return texts


@pytest.mark.parametrize("driver", DRIVERS)
def test_secrets_from_env_and_files_are_used_and_written_nowhere(
        sim: Fleet, tmp_path: Path, driver: str) -> None:
    password = sim.password
    secret_file = tmp_path / "enable"
    secret_file.write_text(ENABLE + "\n", encoding="utf-8")
    inventory = referenced_inventory(sim, tmp_path, secret_file)
    assert password not in "".join(p.read_text() for p in inventory.iterdir())
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "community.j2").write_text(
        "snmp-server community {{ community }} RO\n"
        "logging host 192.0.2.44 vrf {{ community }}\n"
        # what a filter makes of a secret is a secret too: the whole line is masked
        "logging host 192.0.2.46 vrf {{ community | upper }}\n"
        "logging host 192.0.2.47 vrf {{ community | reverse }}\n", encoding="utf-8")
    job = tmp_path / "job.yml"
    job.write_text(yaml.safe_dump({
        "name": "secrets", "driver": driver,
        "secret_vars": {"community": {"env": "RUNNER_SIM_TEST_COMMUNITY"}},
        "steps": [{"config": {"template": "community.j2"}},
                  # the device holds the real value: the reference was read where the
                  # session opened (checks see output and vars before masking)
                  {"command": "show running-config", "expect": [
                      "('logging host 192.0.2.44 vrf ' ~ vars.community) in output",
                      "vars.community | length == 18"]}]}), encoding="utf-8")
    host = sim.hosts[DRIVERS.index(driver)]
    # the enable secret's file lies beside the inventory: RUNNER_SECRETS_DIR names its place
    env = {**os.environ, "RUNNER_SIM_TEST_PASSWORD": password,
           "RUNNER_SIM_TEST_COMMUNITY": COMMUNITY, "RUNNER_SECRETS_DIR": str(tmp_path)}
    procs = [subprocess.run(runner(tmp_path, *verbose, "run", str(job), "-i", str(inventory),
                                   "--templates", str(templates), "--limit", host, "--json"),
                            capture_output=True, text=True, check=False, timeout=300, env=env)
             for verbose in ([], ["-vv"])]
    for proc in procs:
        assert proc.returncode == 0, proc.stderr[-2000:]
        (device,) = json.loads(proc.stdout)["devices"]
        assert device["status"] in ("changed", "ok"), device
    assert "DEBUG" in procs[1].stderr  # -vv did log
    output = json.loads(procs[0].stdout)["devices"][0]["steps"][1]["output"]
    assert "logging host 192.0.2.4" not in output  # each line that used it: masked whole
    assert output.count(MASK) >= 4
    derived = (COMMUNITY.upper(), COMMUNITY[::-1])
    for text in everything_written(tmp_path, *procs):
        for value in (password, ENABLE, COMMUNITY, *derived):
            assert value not in text, (value, text[:2000])


def run_json(tmp_path: Path, inventory: Path, job: dict[str, Any],
             *verbose: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "job.yml"
    path.write_text(yaml.safe_dump(job), encoding="utf-8")
    return subprocess.run(runner(tmp_path, *verbose, "run", str(path), "-i", str(inventory),
                                 "--json"), capture_output=True, text=True, check=False,
                          timeout=300)


def test_a_short_password_runs_and_is_masked_where_it_is_a_credential(
        tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    """Refused before (exit 2); now the run works and the password is masked as a
    credential and as a whole parsed value, without shredding the rest."""
    short = "q~7"
    with simulator(tmp_path_factory, FleetSpec(4, "127.112.0.11", password=short)) as sim:
        host = sim.hosts[0]
        job = {"name": "short", "driver": "asyncssh", "targets": {"hosts": [host]}, "steps": [
            {"config": {"lines": [f"snmp-server community {short} RO"]}},
            {"command": "show running-config | include community",
             "parse": {"ttp": "snmp-server community {{ community }} RO"}},
            {"command": "show running-config"}]}
        procs = [run_json(tmp_path, sim.inventory, job, *v) for v in ([], ["-vv"])]
        for proc in procs:
            assert proc.returncode == 0, proc.stderr[-2000:]
        steps = json.loads(procs[0].stdout)["devices"][0]["steps"]
        # the simulator's own community line, and the one pushed with the password: a
        # parsed field named community holds a secret, whatever its value
        assert steps[1]["parsed"] == [{"community": MASK}, {"community": MASK}]
        assert "interface" in steps[2]["output"]  # the rest of the config is intact
        for text in everything_written(tmp_path, *procs):
            assert short not in text, text[:2000]


def test_a_password_equal_to_the_username_runs_and_is_masked(
        tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    same = "netops"
    with simulator(tmp_path_factory, FleetSpec(4, "127.112.0.21", password=same,
                                               extra=("--username", same))) as sim:
        host = sim.hosts[0]
        job = {"name": "same", "driver": "netmiko", "targets": {"hosts": [host]}, "steps": [
            {"config": {"lines": [f"username {same} privilege 15 password 0 {same}",
                                  f"snmp-server location rack-of-{same}"]}},
            {"command": "show running-config"}]}
        procs = [run_json(tmp_path, sim.inventory, job, *v) for v in ([], ["-vv"])]
        for proc in procs:
            assert proc.returncode == 0, proc.stderr[-2000:]
        output = json.loads(procs[0].stdout)["devices"][0]["steps"][1]["output"]
        assert f"snmp-server location rack-of-{MASK}" in output
        assert "interface" in output
        for text in everything_written(tmp_path, *procs):
            assert same not in text, text[:2000]
