"""Secrets from outside the files: `{env: NAME}` / `{file: /path}` references in inventories
and a job's secret_vars, checked where written, read only where sessions open, masked like
passwords; and weak credentials (short, or equal to the username) masked without
shredding device output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from runner.errors import InventoryError, JobError, SecretUnavailable
from runner.execution.executor import Work
from runner.execution.rollout import run_devices
from runner.inventory.files import inventory_schema
from runner.inventory.loading import load_inventory
from runner.inventory.secretref import SecretRef, SecretResolver
from runner.job.load import load_job
from runner.job.prepare import prepare, read_secrets, session_secrets
from runner.job.render import Templates, secret_dependent
from runner.job.spec import JobSpec, json_schema
from runner.redact import MASK, Redactor
from runner.settings import Settings
from runner.vocab import Engine, SecretSource
from tests.support.base import ROOT, write_inventory

ENV = "RUNNER_TEST_ROUTER_PASSWORD"


# ---- the syntax, where it is written ----------------------------------------------------

BAD_REFERENCES = {
    "env_name": ("r1:\n  password: {env: 1BAD}\n", 2, "r1.password.env: expected an "
                 "environment variable name: letters, digits and _, not first a digit "
                 "(got '1BAD')"),
    "both": ("r1:\n  password: {env: A, file: /b}\n", 2,
             "r1.password: give exactly one of env or file: {env: NAME} or "
             "{file: /absolute/path}"),
    "neither": ("r1:\n  password: {}\n", 2, "r1.password: give exactly one of env or file"),
    "misspelt": ("r1:\n  password:\n    evn: A\n", 3, "r1.password.evn: unknown field 'evn' "
                 "(a secret reference is {env: NAME} or {file: /absolute/path})"),
    "relative_file": ("r1:\n  connection_options:\n    netmiko:\n      password: "
                      "{file: secrets/r1}\n", 4, "r1.connection_options.netmiko.password.file:"
                      " expected an absolute path: it is read on the machine that opens the "
                      "session (got 'secrets/r1')"),
    "extras_secret": ("r1:\n  connection_options:\n    asyncssh:\n      extras:\n"
                      "        secret: {env: [A]}\n", 5,
                      "r1.connection_options.asyncssh.extras.secret.env: expected a string"),
    "number_still_a_string_error": ("r1:\n  username: 1234\n", 2,
                                    "r1.username: expected a string (got 1234)"),
}


@pytest.mark.parametrize("case", BAD_REFERENCES.values(), ids=BAD_REFERENCES.keys())
def test_a_bad_reference_names_file_line_and_field(tmp_path: Path,
                                                   case: tuple[str, int, str]) -> None:
    hosts, line, text = case
    inv = write_inventory(tmp_path, hosts, defaults="platform: cisco_ios\n")
    with pytest.raises(InventoryError) as info:
        load_inventory(inv)
    assert str(info.value).startswith(f"{inv / 'hosts.yaml'}:{line}: {text}"), str(info.value)


def test_references_are_in_the_json_schemas(tmp_path: Path) -> None:
    job_schema, hosts_schema = json_schema(), inventory_schema("hosts")
    defaults_schema = inventory_schema("defaults")
    for schema in (job_schema, hosts_schema, defaults_schema):
        jsonschema.validators.validator_for(schema).check_schema(schema)
    job = {"name": "j", "steps": [{"command": "show version"}],
           "secret_vars": {"community": {"env": "SNMP_COMMUNITY"},
                           "key": {"file": "/run/secrets/key"}}}
    jsonschema.validate(job, job_schema)
    for bad in ({"env": "A", "file": "/b"}, {}, "literal", {"file": "relative"},
                {"env": "1A"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**job, "secret_vars": {"x": bad}}, job_schema)
    hosts = {"r1": {"password": {"env": "P"}, "username": "u", "connection_options": {
        "netmiko": {"password": {"file": "/p"}, "extras": {"secret": {"env": "S"}}}}}}
    jsonschema.validate(hosts, hosts_schema)
    jsonschema.validate({"password": {"file": "/run/secrets/router"}, "port": None},
                        defaults_schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"r1": {"password": {"env": "A", "file": "/b"}}}, hosts_schema)
    # Nornir's own test inventory and the shipped one validate
    for directory in (Path(__file__).parent / "data" / "nornir_inventory", ROOT / "inventory"):
        for name, schema in (("hosts.yaml", hosts_schema), ("groups.yaml", hosts_schema),
                             ("defaults.yaml", defaults_schema)):
            if (directory / name).exists():
                jsonschema.validate(yaml.safe_load((directory / name).read_text()) or {},
                                    schema)
    proc = subprocess.run([sys.executable, "-m", "runner", "schema", "hosts"],
                          capture_output=True, text=True, check=True)
    assert json.loads(proc.stdout) == hosts_schema


# ---- reading a reference -----------------------------------------------------------------


def test_env_and_file_references_read_on_this_machine(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "Fr0m-the-env")
    assert SecretRef(SecretSource.ENV, ENV).read() == "Fr0m-the-env"
    secret = tmp_path / "router"
    secret.write_text("Fr0m-a-file\n", encoding="utf-8")
    here = (tmp_path,)
    assert SecretRef(SecretSource.FILE, str(secret)).read(here) == "Fr0m-a-file"
    secret.write_text("two  \nlines\r\n", encoding="utf-8")
    assert SecretRef(SecretSource.FILE, str(secret)).read(here) == "two  \nlines"
    where = dict(path="hosts.yaml", line=3, field="r1.password")
    problems = {
        SecretRef(SecretSource.ENV, "RUNNER_TEST_UNSET_VAR", **where):
            "hosts.yaml:3: r1.password: environment variable RUNNER_TEST_UNSET_VAR is not set "
            "on this machine",
        SecretRef(SecretSource.FILE, str(tmp_path / "nope")):
            f"file {tmp_path / 'nope'} cannot be read on this machine: No such file or "
            "directory",
        SecretRef(SecretSource.FILE, str(tmp_path)): f"file {tmp_path} is not a regular file",
    }
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # refused without being opened: reading it would block forever
    problems[SecretRef(SecretSource.FILE, str(fifo))] = f"file {fifo} is not a regular file"
    big = tmp_path / "big"
    big.write_bytes(b"x" * (64 * 1024 + 1))
    problems[SecretRef(SecretSource.FILE, str(big))] = f"file {big} is larger than 64 KiB"
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe")
    problems[SecretRef(SecretSource.FILE, str(binary))] = f"file {binary} is not UTF-8 text"
    empty = tmp_path / "empty"
    empty.write_text("\n", encoding="utf-8")
    problems[SecretRef(SecretSource.FILE, str(empty))] = f"file {empty} is empty"
    monkeypatch.setenv("RUNNER_TEST_EMPTY", "")
    problems[SecretRef(SecretSource.ENV, "RUNNER_TEST_EMPTY")] = \
        "environment variable RUNNER_TEST_EMPTY is empty"
    for ref, message in problems.items():
        with pytest.raises(SecretUnavailable) as info:
            ref.read(here)
        assert str(info.value) == message
        assert info.value.error_class == "SecretUnavailable"


def test_the_inventory_keeps_references_until_a_session_needs_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    (tmp_path / "inv").mkdir()
    key = tmp_path / "inv" / "enable"  # the inventory's own directory: no setting needed
    key.write_text("En4ble-from-file\n", encoding="utf-8")
    inv = load_inventory(write_inventory(
        tmp_path, "r1: {groups: [core]}\nr2: {password: Plain-text-pw}\n",
        "core:\n  password: {env: " + ENV + "}\n",
        "platform: cisco_ios\nusername: ops\nconnection_options:\n  asyncssh:\n    extras:\n"
        f"      secret: {{file: {key}}}\n"))
    # loading reads nothing: the variable is not even set yet
    ref = inv.hosts["r1"].password
    assert isinstance(ref, SecretRef) and str(ref) == "{env: " + ENV + "}"
    assert inv.secret_refs("r1", "asyncssh") == [
        SecretRef(SecretSource.ENV, ENV, str(inv.source / "groups.yaml"), 2, "core.password"),
        SecretRef(SecretSource.FILE, str(key), str(inv.source / "defaults.yaml"), 6,
                  "defaults.connection_options.asyncssh.extras.secret")]
    with pytest.raises(SecretUnavailable, match=rf"groups.yaml:2: core.password: environment "
                                                rf"variable {ENV} is not set"):
        inv.connect_params("r1", "asyncssh")
    assert inv.credentials(["r1"], SecretResolver([inv.directory])) == (
        {"En4ble-from-file"}, {"ops"})
    assert inv.credentials(["r1"], SecretResolver()) == (set(), {"ops"})  # may read no file
    assert inv.credentials(["r1"], None) == (set(), {"ops"})  # a dispatcher reads nothing
    monkeypatch.setenv(ENV, "Rout3r-from-env")
    params = inv.connect_params("r1", "asyncssh")
    assert (params.username, params.password, params.extras["secret"]) == (
        "ops", "Rout3r-from-env", "En4ble-from-file")
    assert "Rout3r-from-env" not in repr(params)
    assert inv.credentials(["r1", "r2"], SecretResolver([inv.directory])) == (
        {"Rout3r-from-env", "En4ble-from-file", "Plain-text-pw"}, {"ops"})


def project(tmp_path: Path, port: int, password: str = "{env: " + ENV + "}",
            job_extra: str = "") -> tuple[Path, Path]:
    inv = write_inventory(tmp_path, f"r1: {{hostname: 127.0.0.1, port: {port}}}\n",
                defaults=f"platform: cisco_ios\nusername: admin\npassword: {password}\n")
    job = tmp_path / "job.yml"
    job.write_text(f"name: j\ntimeouts: {{connect: 3}}\n{job_extra}"
                   "steps:\n  - command: show version\n", encoding="utf-8")
    return inv, job


def test_each_secret_source_is_looked_up_once_and_each_reference_read_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run's secrets are checked and read in one pass over its hosts (100,000 hosts: a
    pass costs seconds before the first device), looked up once per secret source (hosts
    without credentials of their own share their groups' and the defaults'), each shared
    reference read once; a host with its own reference, or its own driver, is looked up
    on its own."""
    hosts = "".join(f"r{i}: {{hostname: 127.0.0.{i + 1}, port: 22}}\n" for i in range(50))
    hosts += (f"own: {{hostname: 127.0.1.1, password: {{env: {ENV}_OWN}}}}\n"
              "other-driver: {hostname: 127.0.1.2, data: {driver: scrapli}}\n")
    inv = write_inventory(tmp_path, hosts, defaults=(
        "platform: cisco_ios\nusername: admin\npassword: {env: " + ENV + "}\n"))
    job = tmp_path / "job.yml"
    job.write_text("name: j\nsteps:\n  - command: show version\n", encoding="utf-8")
    monkeypatch.setenv(ENV, "Sup3r-from-env")
    monkeypatch.setenv(f"{ENV}_OWN", "Own-from-env")
    prep = prepare(job, inv, tmp_path)
    looked_up: list[str] = []
    read: list[SecretRef] = []
    refs_of, value_of = prep.inventory.secret_refs, SecretResolver.value

    def counted_refs(host: str, driver: str) -> list[SecretRef]:
        looked_up.append(host)
        return refs_of(host, driver)

    def counted_value(self: SecretResolver, value: object, *args: object) -> object:
        if isinstance(value, SecretRef):
            read.append(value)
        return value_of(self, value, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(prep.inventory, "secret_refs", counted_refs)
    monkeypatch.setattr(SecretResolver, "value", counted_value)
    resolver = session_secrets(prep, read=True)
    assert resolver is not None and looked_up == ["r0", "own", "other-driver"]
    assert [r.name for r in read] == [ENV, f"{ENV}_OWN"]
    looked_up.clear()
    read.clear()
    assert session_secrets(prep, read=False) is None  # Celery: checked, not read
    assert looked_up == ["r0", "own", "other-driver"] and read == []


def test_a_reference_that_cannot_be_read_is_an_input_error_before_any_device(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        listener: tuple[int, list[tuple[str, int]]]) -> None:
    port, seen = listener
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.delenv("RUNNER_TEST_COMMUNITY", raising=False)
    inv, job = project(tmp_path, port,
                       job_extra="secret_vars:\n  community: {env: RUNNER_TEST_COMMUNITY}\n")
    prep = prepare(job, inv, tmp_path)  # loading and selecting read nothing
    with pytest.raises(InventoryError) as info:
        read_secrets(prep)
    assert str(info.value) == (f"{inv / 'defaults.yaml'}:3: defaults.password: environment "
                               f"variable {ENV} is not set on this machine")
    monkeypatch.setenv(ENV, "Sup3r-from-env")
    with pytest.raises(JobError) as job_info:
        read_secrets(prep)
    assert str(job_info.value) == (f"{job}:4: secret_vars.community: environment variable "
                                   "RUNNER_TEST_COMMUNITY is not set on this machine")
    env = {k: v for k, v in os.environ.items() if k not in (ENV, "RUNNER_TEST_COMMUNITY")}
    cli = [sys.executable, "-m", "runner", "--db", f"sqlite:///{tmp_path / 'r.db'}", "run",
           str(job), "-i", str(inv), "--json"]
    proc = subprocess.run(cli, capture_output=True, text=True, check=False, env=env)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"error: {inv / 'defaults.yaml'}:3: defaults.password: environment variable {ENV} is "
        "not set on this machine"]
    assert seen == []
    assert not (tmp_path / "r.db").exists() or b"Sup3r" not in (tmp_path / "r.db").read_bytes()
    env.update({ENV: "Sup3r-from-env", "RUNNER_TEST_COMMUNITY": "C0mmunity-from-env"})
    proc = subprocess.run(cli, capture_output=True, text=True, check=False, env=env)
    assert proc.returncode == 1, proc.stderr  # read: the listener was contacted (no SSH)
    assert seen
    assert json.loads(proc.stdout)["devices"][0]["status"] == "unreachable"
    for value in ("Sup3r-from-env", "C0mmunity-from-env"):
        assert value not in proc.stdout + proc.stderr
        assert value.encode() not in (tmp_path / "r.db").read_bytes()


def test_on_a_worker_an_unreadable_reference_fails_that_device_clearly(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        listener: tuple[int, list[tuple[str, int]]]) -> None:
    """What a Celery worker runs (the local executor on the worker's inventory): the device
    whose secret cannot be read fails with SecretUnavailable, nothing is contacted."""
    port, seen = listener
    monkeypatch.delenv(ENV, raising=False)
    inv, job = project(tmp_path, port)
    spec = load_job(job).spec
    for engine in (Engine.LOCAL, Engine.PROCESSES):
        (record,) = run_devices(Work(spec, load_inventory(inv), ROOT / "templates", "t",
                                     Settings(lock_dir=tmp_path / "locks"), processes=1),
                                ["r1"], engine)
        assert (record.status, record.error_class, record.error) == (
            "failed", "SecretUnavailable", f"{inv / 'defaults.yaml'}:3: defaults.password: "
            f"environment variable {ENV} is not set on this machine")
    spec = JobSpec.model_validate({**spec.model_dump(mode="json"),
                                   "secret_vars": {"c": {"file": str(tmp_path / "none")}}})
    monkeypatch.setenv(ENV, "Sup3r-from-env")
    # A worker reads files only under its own RUNNER_SECRETS_DIR (whatever the job says).
    (record,) = run_devices(Work(spec, load_inventory(inv), ROOT / "templates", "t",
                                 Settings(lock_dir=tmp_path / "locks")), ["r1"], Engine.LOCAL)
    assert (record.error_class, record.error) == ("SecretUnavailable", (
        f"secret_vars.c: file {tmp_path / 'none'} is outside the directories secrets are "
        "read from (nowhere); put it there, or name its directory in RUNNER_SECRETS_DIR"))
    (record,) = run_devices(Work(spec, load_inventory(inv), ROOT / "templates", "t",
                                 Settings(lock_dir=tmp_path / "locks",
                                          secrets_dirs=(tmp_path,))), ["r1"], Engine.LOCAL)
    assert (record.error_class, record.error) == ("SecretUnavailable", (
        f"secret_vars.c: file {tmp_path / 'none'} cannot be read on this machine: No such "
        "file or directory"))
    assert seen == []


def test_secret_vars_travel_as_references_and_render_as_values(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    job = tmp_path / "job.yml"
    job.write_text("name: j\nvars: {site: ams}\nsecret_vars:\n  community: {env: SNMP_C}\n"
                   "  key: {file: /run/secrets/tacacs}\nsteps:\n  - command: show version\n",
                   encoding="utf-8")
    spec = load_job(job).spec
    sent = json.dumps(spec.model_dump(mode="json"))  # what crosses the broker
    assert '"secret_vars": {"community": {"env": "SNMP_C", "file": null}, "key": ' \
           '{"env": null, "file": "/run/secrets/tacacs"}}' in sent
    assert JobSpec.model_validate(json.loads(sent)) == spec
    monkeypatch.setenv("SNMP_C", "C0mmunity-value")
    resolver = SecretResolver()
    with pytest.raises(SecretUnavailable, match=r"secret_vars\.key: file /run/secrets/tacacs"):
        resolver.variables(spec.secret_vars)
    one = {"community": spec.secret_vars["community"]}
    assert resolver.variables(one) == {"community": "C0mmunity-value"}
    assert "C0mmunity-value" not in sent


# ---- masking -------------------------------------------------------------------------------

OUTPUT = """\
r1#show running-config
username admin privilege 15 secret 5 $1$abc
username ab password 0 ab
snmp-server community ab RO
interface Ethernet0/1
 description link to abcore, tab, ab-1, lab
 ip address 10.0.0.1 255.255.255.0
administratively down 1 1 ab
{"password": "ab", "user": "admin"}
login as admin with password: ab
"""


def test_weak_credentials_are_masked_where_they_are_credentials_and_nowhere_else() -> None:
    # "ab": shorter than 4; "admin": the username is the password
    redactor = Redactor(["ab", "admin"], usernames=["admin"])
    text = redactor.text(OUTPUT)
    assert text.splitlines() == [
        "r1#show running-config",
        f"username {MASK} privilege 15 secret 5 $1$abc",
        f"username ab password 0 {MASK}",
        f"snmp-server community {MASK} RO",
        "interface Ethernet0/1",
        " description link to abcore, tab, ab-1, lab",
        " ip address 10.0.0.1 255.255.255.0",
        "administratively down 1 1 ab",
        f'{{"password": "{MASK}", "user": "{MASK}"}}',
        f"login as {MASK} with password: {MASK}",
    ]
    assert redactor.value({"pw": "ab", "n": ["admin", "ab c", 1]}) == \
        {"pw": MASK, "n": [MASK, "ab c", 1]}
    # a 1-character password shreds nothing but itself as a credential
    one = Redactor(["1"])
    assert one.text("Gi0/1 up 1 1\npassword 1\nsecret 7 1\n") == \
        f"Gi0/1 up 1 1\npassword {MASK}\nsecret 7 {MASK}\n"
    # a strong value is masked anywhere, as before
    assert Redactor(["Hunter2"]).text("xHunter2y") == f"x{MASK}y"
    # a password equal to the username but not known as one: an ordinary value
    assert Redactor(["admin"]).text("administrator") == f"{MASK}istrator"


# ---- where a {file: ...} may point ---------------------------------------------------------


def confined_project(tmp_path: Path, job_ref: str, inv_ref: str | None = None
                     ) -> tuple[Path, Path]:
    inv = write_inventory(tmp_path, "r1: {hostname: 127.0.0.1, port: 9}\n",
                          defaults="platform: cisco_ios\nusername: u\npassword: "
                          + (inv_ref or "pw-plain") + "\n")
    job = tmp_path / "jobs" / "job.yml"
    job.parent.mkdir()
    job.write_text("name: j\ntimeouts: {connect: 1}\nsecret_vars:\n"
                   f"  sh: {job_ref}\nsteps:\n  - command: show version\n", encoding="utf-8")
    return inv, job


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runner", *args], capture_output=True,
                          text=True, check=False, env=env)


@pytest.mark.parametrize("target", ["/etc/shadow", "/root/.ssh/id_rsa", "/proc/self/environ",
                                    "../outside/secret", "link-to-shadow"])
def test_a_file_reference_outside_its_places_is_refused_at_load(tmp_path: Path,
                                                                target: str) -> None:
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_text("Outs1de-value\n", encoding="utf-8")
    inv, job = confined_project(tmp_path, "{file: PLACEHOLDER}")
    (job.parent / "link-to-shadow").symlink_to("/etc/shadow")  # inside, leading out
    path = target if target.startswith("/") else str(job.parent / target)
    job.write_text(job.read_text(encoding="utf-8").replace("PLACEHOLDER", path),
                   encoding="utf-8")
    db = f"sqlite:///{tmp_path / 'r.db'}"
    for args in (("run", str(job), "-i", str(inv)), ("validate", str(job), "-i", str(inv))):
        proc = cli("--db", db, *args)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.splitlines() == [
            f"error: {job}:4: secret_vars.sh.file: file {path} is outside the "
            f"directories secrets are read from ({job.parent}); put it there, or name its "
            "directory in RUNNER_SECRETS_DIR"], proc.stderr
    assert not (tmp_path / "r.db").exists() or b"Outs1de" not in (tmp_path / "r.db").read_bytes()


def test_runner_secrets_dir_and_the_inventory_directory(tmp_path: Path) -> None:
    vault = tmp_path / "vault"
    vault.mkdir()
    (vault / "key").write_text("Vau1t-value\n", encoding="utf-8")
    inv, job = confined_project(tmp_path, f"{{file: {vault / 'key'}}}",
                                f"{{file: {vault / 'key'}}}")
    proc = cli("validate", str(job), "-i", str(inv))
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: {inv / 'defaults.yaml'}:3: defaults.password: file "
                                  f"{vault / 'key'} is outside the directories secrets are "
                                  f"read from ({inv}); put it there")
    env = {**os.environ, "RUNNER_SECRETS_DIR": f"/nonexistent{os.pathsep}{vault}"}
    assert cli("validate", str(job), "-i", str(inv), env=env).returncode == 0
    bad = cli("validate", str(job), "-i", str(inv), env={**env, "RUNNER_SECRETS_DIR": "vault"})
    assert bad.returncode == 2
    assert "RUNNER_SECRETS_DIR: 'vault' is not an absolute path" in bad.stderr
    # Beside the inventory, its own references need no setting.
    (inv / "pw").write_text("Inv-value\n", encoding="utf-8")
    (inv / "defaults.yaml").write_text(f"platform: cisco_ios\nusername: u\npassword: "
                                       f"{{file: {inv / 'pw'}}}\n", encoding="utf-8")
    assert cli("validate", str(job), "-i", str(inv), env=env).returncode == 0


def test_a_file_swapped_for_a_symlink_after_the_check_is_still_refused(tmp_path: Path) -> None:
    """The reading side checks what it opened, not the name it checked."""
    secret = tmp_path / "jobs" / "s"
    secret.parent.mkdir()
    secret.symlink_to("/etc/hostname")
    ref = SecretRef(SecretSource.FILE, str(secret), field="secret_vars.s")
    with pytest.raises(SecretUnavailable, match="is outside the directories"):
        ref.read((secret.parent,))


# ---- what a secret reaches through a template ----------------------------------------------


def test_lines_that_depend_on_a_secret_are_found_whatever_the_filter(tmp_path: Path) -> None:
    (tmp_path / "t.j2").write_text(
        "hostname r1\n"
        "snmp-server community {{ community }} RO\n"
        "logging host 192.0.2.1 vrf {{ community | upper }}\n"
        "description {{ community[:3] }}-{{ community | length }}\n"
        "banner motd {{ community | reverse }}\n"
        "ntp server 192.0.2.2{{ ' prefer' if community | length > 50 else '' }}\n"
        "tacacs-server key {{ code | int + 1 }}\n", encoding="utf-8")
    templates = Templates(tmp_path)
    context = {"community": "S3cret-Comm", "code": "4711", "host": {}}
    lines, derived = secret_dependent(lambda c: templates.render("t.j2", "cisco_ios", c),
                                      context, ["community", "code"])
    assert lines[0] == "hostname r1" and len(lines) == 7
    assert {"snmp-server community S3cret-Comm RO", "logging host 192.0.2.1 vrf S3CRET-COMM",
            "description S3c-11", "banner motd mmoC-terc3S", "tacacs-server key 4712"} <= derived
    assert {"S3CRET-COMM", "mmoC-terc3S", "S3c-11", "4712"} <= derived
    assert "hostname r1" not in derived and not any("ntp" in d for d in derived)
    # a template whose shape depends on the secret: every line counts as secret
    (tmp_path / "shape.j2").write_text("a\n{% if community == 'S3cret-Comm' %}b\n{% endif %}",
                                       encoding="utf-8")
    _, derived = secret_dependent(lambda c: templates.render("shape.j2", "cisco_ios", c),
                                  context, ["community"])
    assert {"a", "b"} <= derived


def test_a_false_check_never_shows_what_it_made_of_a_secret() -> None:
    from runner.errors import CheckFailed
    from runner.inventory.secretref import SecretValue
    from runner.job.checks import check

    context = {"output": "snmp community is public", "parsed": [], "host": {},
               "vars": {"community": SecretValue("S3cret-Comm"), "site": "ams"}}
    with pytest.raises(CheckFailed) as info:
        check("(vars.community | upper) in output and vars.site == 'ams'", context)
    message = str(info.value)
    assert "S3CRET-COMM" not in message and "S3cret" not in message
    assert message.endswith("is false: saw (a value made of a secret)")
    with pytest.raises(CheckFailed) as info:
        check("vars.site == 'rtm'", context)  # no secret in it: values shown as before
    assert 'saw "ams" == "rtm"' in str(info.value)
