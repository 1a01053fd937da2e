"""Bad job files: one error naming file, line and field; exit code 2; no device contacted."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest
import yaml

from runner.errors import InputError
from runner.job.load import load_job
from runner.job.prepare import prepare
from tests.support.base import ROOT

BAD = sorted((Path(__file__).parent / "bad_jobs").glob("*.yml"))


@pytest.fixture
def project(tmp_path: Path, listener: tuple[int, list[tuple[str, int]]]) -> Path:
    """A project dir: inventory of two hosts that point at the listener, and templates."""
    port, _ = listener
    inv = tmp_path / "inventory"
    inv.mkdir()
    (inv / "hosts.yaml").write_text(
        f"r1: {{hostname: 127.0.0.1, port: {port}, groups: [routers]}}\n"
        f"r2: {{hostname: 127.0.0.1, port: {port}, groups: [routers]}}\n", encoding="utf-8")
    (inv / "groups.yaml").write_text("routers: {}\n", encoding="utf-8")
    (inv / "defaults.yaml").write_text(
        "platform: cisco_ios\nusername: admin\npassword: Sup3r-Secret\n", encoding="utf-8")
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "broken.j2").write_text("hostname x\n{% for x in %}\n", encoding="utf-8")
    # hostile: parser templates that lead outside templates/, or run code in TTP
    (templates / "shadow.ttp").symlink_to("/etc/shadow")
    (templates / "etc").symlink_to("/etc")
    (templates / "vars.ttp").write_text('<vars load="python">\nimport os\n</vars>\n{{ x }}\n',
                                        encoding="utf-8")
    return tmp_path


def expectation(path: Path) -> tuple[int, str]:
    m = re.match(r"# expect: line (\d+): (.*)", path.read_text(encoding="utf-8").splitlines()[0])
    assert m, path
    return int(m.group(1)), m.group(2)


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_job_file_error_names_file_line_field(path: Path, project: Path) -> None:
    line, text = expectation(path)
    with pytest.raises(InputError) as info:
        prepare(path, project / "inventory", project / "templates")
    err = info.value
    assert str(err).startswith(f"{path}:{line}: "), str(err)
    assert text in str(err), str(err)


# the first few, and every input of the red-team pass (issue 12): tracebacks before
CLI = BAD[:6] + [p for p in BAD[6:] if p.name.startswith("hostile_")]


@pytest.mark.parametrize("path", CLI, ids=[p.stem for p in CLI])
def test_cli_run_exits_2_and_contacts_no_device(
        path: Path, project: Path, listener: tuple[int, list[tuple[str, int]]]) -> None:
    _, seen = listener
    proc = subprocess.run(
        [sys.executable, "-m", "runner", "--db", f"sqlite:///{project / 'r.db'}", "run",
         str(path), "-i", str(project / "inventory"), "--templates", str(project / "templates")],
        capture_output=True, text=True, check=False, cwd=project)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    line, text = expectation(path)
    assert proc.stderr.startswith(f"error: {path}:{line}: "), proc.stderr
    assert text in proc.stderr
    assert seen == []


def test_a_valid_job_does_contact_the_devices(
        project: Path, listener: tuple[int, list[tuple[str, int]]]) -> None:
    """The control for the test above: the same setup with a good job reaches the listener,
    fails cleanly (the listener speaks no SSH) and exits 1, not 2."""
    _, seen = listener
    job = project / "ok.yml"
    job.write_text("name: ok\ntimeouts: {connect: 3}\nsteps:\n  - command: show version\n",
                   encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "runner", "--db", f"sqlite:///{project / 'r.db'}", "run",
         str(job), "-i", str(project / "inventory"), "--json"],
        capture_output=True, text=True, check=False, cwd=project)
    assert proc.returncode == 1, proc.stderr
    result = json.loads(proc.stdout)
    assert {d["status"] for d in result["devices"]} == {"unreachable"}
    assert len(seen) >= 2
    assert "Sup3r-Secret" not in proc.stdout + proc.stderr
    assert b"Sup3r-Secret" not in (project / "r.db").read_bytes()


def test_validate_command(project: Path) -> None:
    good = project / "good.yml"
    good.write_text("name: good\nsteps:\n  - command: show version\n", encoding="utf-8")
    bad = Path(__file__).parent / "bad_jobs" / "bad_driver.yml"
    proc = subprocess.run([sys.executable, "-m", "runner", "validate", str(good), str(bad)],
                          capture_output=True, text=True, check=False, cwd=project)
    assert proc.returncode == 2
    assert f"{good}: ok" in proc.stdout
    assert f"error: {bad}:3: driver:" in proc.stderr


SHIPPED = sorted((ROOT / "jobs").glob("*.yml"))


def test_schema_command_and_shipped_jobs_validate_against_it() -> None:
    proc = subprocess.run([sys.executable, "-m", "runner", "schema"], capture_output=True,
                          text=True, check=True)
    schema = json.loads(proc.stdout)
    jsonschema.validators.validator_for(schema).check_schema(schema)
    assert len(SHIPPED) >= 3
    for path in SHIPPED:
        jsonschema.validate(yaml.safe_load(path.read_text(encoding="utf-8")), schema)
        load_job(path)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"name": "x", "steps": [{"comand": "show"}]}, schema)


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """Accepts TCP connections and never says a word: a device that hangs."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    srv.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield srv.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    srv.close()


@pytest.mark.parametrize("driver", ["netmiko", "scrapli", "asyncssh"])
def test_device_budget_ends_a_hanging_device_as_timed_out(
        tmp_path: Path, silent_listener: int, driver: str) -> None:
    inv = tmp_path / "inventory"
    inv.mkdir()
    (inv / "hosts.yaml").write_text(
        f"hang: {{hostname: 127.0.0.1, port: {silent_listener}, platform: cisco_ios, "
        "username: u, password: p4ssw0rd-x, data: {host_key_checking: false}}\n",
        encoding="utf-8")  # a listener has no host key to know: this test is the budget
    job = tmp_path / "job.yml"
    job.write_text(f"name: hang\ndriver: {driver}\ntimeouts: {{connect: 60, device: 2}}\n"
                   "steps:\n  - command: show version\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "runner", "--db", f"sqlite:///{tmp_path / 'r.db'}", "run",
         str(job), "-i", str(inv), "--json"],
        capture_output=True, text=True, check=False, cwd=tmp_path, timeout=120)
    assert proc.returncode == 1, proc.stderr
    device = json.loads(proc.stdout)["devices"][0]
    assert device["status"] == "timed_out"
    assert device["error_class"] == "DeviceTimeout"
    assert "did not finish within 2s" in device["error"]


RULES = ["two_backups", "secret_var_in_vars", "on_stop_without_rollback",
         "approval_without_config", "rollback_without_config"]


@pytest.mark.parametrize("name", RULES)
def test_rules_across_fields_are_the_models_own(name: str) -> None:
    """What a worker's model_validate sees (no file, no loader) refuses the same jobs."""
    from pydantic import ValidationError

    from runner.job.spec import JobSpec

    path = Path(__file__).parent / "bad_jobs" / f"{name}.yml"
    _, text = expectation(path)
    with pytest.raises(ValidationError) as info:
        JobSpec.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    assert text.split(": ", 1)[1] in str(info.value)
