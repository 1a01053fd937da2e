"""Start-up (issue 28): a command imports what it uses when it uses it. `runner --help` lists
the commands from runner.cli.COMMANDS without importing one, every command's --help loads
no database, broker or SSH library, `validate` no database or broker (nor Nornir without
-i, nor asyncio with it), and a small local run no Celery or Redis (nor Alembic once its
database is at head, nor PostgreSQL's dialect on SQLite). pydantic looks up no plugin
unless the user's environment says so, and a platform's patterns compile when used. A
job's pydantic models build their validators when used (the job's one, not one per model
at import), asyncssh loads without running a compiler, and what a command loaded is
frozen, not collected, at exit. Each is a real `python -m runner` process whose
sys.modules is read as it exits. CPU figures: bench/startup.py."""

from __future__ import annotations

import ast
import json
import os
import re
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from runner import cli as cli_module
from runner.cli import COMMANDS, LazyCommand, LazyGroup, cli
from runner.inventory import platforms
from runner.inventory.secretlines import compile_rule
from runner.job.commands import RUN_GC_THRESHOLD
from runner.job.load import load_job
from runner.job.prepare import prepare_job
from runner.redact import Redactor
from runner.registry import Registry
from runner.store import migrate
from tests.support.base import ROOT, TEMPLATES, write_inventory
from tests.support.commands import Imported, command_paths, imports_of
from tests.support.fleet import FleetSpec, start_fleet
from tests.support.jobs import write_job

DATABASE = ("sqlalchemy", "alembic")
BROKER = ("celery", "kombu", "redis")
SSH = ("asyncssh", "netmiko", "scrapli", "paramiko")
# What no help page may load: each costs more CPU than the help page itself.
NOT_FOR_HELP = (*DATABASE, *BROKER, *SSH)
COMMAND_MODULES = sorted({entry.module for entry in COMMANDS})
# What running a job needs and checking one does not: `validate` loads none of them.
NOT_FOR_CHECKING = ("runner.job.run", "runner.job.approval", "runner.execution",
                    "runner.dispatch", "runner.store", "runner.job.backups")


def _env(tmp_path: Path) -> dict[str, str]:
    """This environment without a broker or a database named: the defaults a user has."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("RUNNER_BROKER_URL", "RUNNER_RESULT_URL", "RUNNER_DB_URL")}
    return {**env, "RUNNER_HOME": str(tmp_path / "home"),
            "RUNNER_LOCK_DIR": str(tmp_path / "locks")}


def test_runner_help_imports_no_command_module(tmp_path: Path) -> None:
    for args in (["--help"], ["-h"]):
        seen = imports_of(args, tmp_path, _env(tmp_path))
        assert seen.proc.returncode == 0, seen.proc.stderr
        assert "Commands:" in seen.proc.stdout and "validate" in seen.proc.stdout
        assert seen.of(*NOT_FOR_HELP) == []
        assert seen.of("pydantic", "yaml", "jinja2", "nornir") == []
        assert [m for m in COMMAND_MODULES if seen.loaded(m)] == []
        assert seen.loaded("runner.cli") and seen.loaded("click")  # the probe sees imports
        assert seen.frozen > 0  # at exit what it loaded is frozen, not collected


def test_every_help_page_loads_no_database_broker_or_ssh_library(tmp_path: Path) -> None:
    paths = list(command_paths(cli))
    assert ("lab", "sim") in paths and ("db", "upgrade") in paths and ("token", "create") \
        in paths
    env = _env(tmp_path)
    with ThreadPoolExecutor(max_workers=2) as pool:
        seen = dict(zip(paths, pool.map(
            lambda path: imports_of([*path, "--help"], tmp_path, env), paths), strict=True))
    problems = {" ".join(path) or "(runner)": found.of(*NOT_FOR_HELP)
                for path, found in seen.items() if found.of(*NOT_FOR_HELP)}
    assert problems == {}
    for path, found in seen.items():
        assert found.proc.returncode == 0, (path, found.proc.stderr[-2000:])
        assert "Usage: " in found.proc.stdout, path


def _check_job(tmp_path: Path) -> Path:
    return write_job(tmp_path / "jobs", "facts", driver="asyncssh", steps=[
        {"name": "version", "command": "show version"},
        {"name": "interfaces", "command": "show ip interface brief",
         "parse": {"textfsm": "textfsm/frr_show_interface_brief.textfsm"}}])


def test_validate_loads_no_database_broker_or_ssh_library(tmp_path: Path) -> None:
    job = _check_job(tmp_path)
    inventory = write_inventory(tmp_path, "r1: {hostname: 127.0.0.1, platform: cisco_ios}\n")
    env = _env(tmp_path)
    # Each with what it must not load besides; without -i no inventory (Nornir, and the
    # ruamel.yaml it reads its config with), with -i no asyncio or ssl (the inventory reads
    # the drivers' table, not their sessions), and a job without templates or checks no
    # Jinja2.
    for args, nor in ((["validate", str(job), "--templates", str(TEMPLATES)],
                       ("nornir", "ruamel", "jinja2")),
                      (["validate", str(job), "--templates", str(TEMPLATES), "-i",
                        str(inventory)], ("jinja2", "asyncio", "ssl")),
                      # its siblings are not validated (jobs/compliance.yml's notify URL
                      # would load Apprise): facts.yml has no `after:`, its name is its own
                      (["validate", str(ROOT / "jobs" / "facts.yml"), "--templates",
                        str(TEMPLATES)], ("nornir", "apprise"))):
        seen = imports_of(args, tmp_path, env)
        assert seen.proc.returncode == 0, (args, seen.proc.stdout, seen.proc.stderr)
        assert seen.proc.stdout.rstrip().endswith(": ok"), seen.proc.stdout
        assert seen.of(*DATABASE, *BROKER, *SSH, *nor, "apprise", "multiprocessing") == [], args
        assert seen.loaded("nornir.core.inventory") == ("-i" in args), args  # the control
        # what it loads is collected young and rarely, as a run's is, not as it loads
        assert seen.threshold == RUN_GC_THRESHOLD, args
        # checking is runner.job.prepare's: no engine, dispatcher, store or run module
        assert _within(seen, *NOT_FOR_CHECKING) == [], args
        assert seen.loaded("runner.job.spec") and seen.loaded("runner.job.prepare")
        # one validator built, the job's (the ~30 models inside it are in it), and the
        # inventory files' with -i: no model builds its own at import
        assert _runner_models(seen) == {JOB_MODEL, *(INVENTORY_MODELS if "-i" in args
                                                     else ())}, args
    bad = write_job(tmp_path / "bad", "bad", steps=[{"name": "x", "command": 3}])
    seen = imports_of(["validate", str(bad)], tmp_path, env)
    assert seen.proc.returncode == 2 and "bad.yml" in seen.proc.stderr
    assert seen.of(*DATABASE, *BROKER, *SSH) == []
    assert _within(seen, *NOT_FOR_CHECKING) == []
    assert _runner_models(seen) == {JOB_MODEL}


JOB_MODEL = "runner.job.spec.JobSpec"
INVENTORY_MODELS = ("runner.inventory.files.EntriesFile", "runner.inventory.files.DefaultsEntry")


def _runner_models(seen: Imported) -> set[str]:
    return {m for m in seen.built if m.startswith("runner.")}


def test_no_model_of_a_job_or_an_inventory_builds_its_validator_at_import(
        tmp_path: Path) -> None:
    """Every model of the job, blackouts and inventory files defers its build (each wing's
    base sets defer_build): importing them all builds none; the schema command, which
    needs them all, still builds each (the control)."""
    probe = ("import sys, runner.job.load, runner.job.prepare, runner.job.blackouts, "
             "runner.inventory.fleet, runner.inventory.loading, runner.job.run\n"
             "from pydantic import BaseModel\n"
             "todo, seen = [BaseModel], []\n"
             "while todo:\n"
             "    for sub in todo.pop().__subclasses__():\n"
             "        todo.append(sub)\n"
             "        if sub.__module__.startswith('runner.'):\n"
             "            seen.append((sub.__qualname__, sub.__pydantic_complete__))\n"
             "print(sorted(seen))\n")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=_env(tmp_path),
                          capture_output=True, text=True, check=True)
    models = dict(ast.literal_eval(proc.stdout))
    assert {"JobSpec", "CommandStep", "BlackoutWindow", "EntriesFile", "HostEntry",
            "NotifyTarget", "TriggerSpec", "ScheduleSpec", "SecretRefSpec"} <= set(models)
    assert [name for name, built in models.items() if built] == []
    env = _env(tmp_path)
    for kind, model in (("job", JOB_MODEL), ("blackouts", "runner.job.blackouts.BlackoutsFile"),
                        ("hosts", "runner.inventory.files.EntriesFile")):
        seen = imports_of(["schema", kind], tmp_path, env)
        assert seen.proc.returncode == 0 and model in seen.built, kind


def _within(seen: Imported, *prefixes: str) -> list[str]:
    """The imported modules that are, or are inside, one of these dotted names."""
    return sorted(m for m in seen.modules
                  if any(m == p or m.startswith(p + ".") for p in prefixes))


def test_a_small_local_run_loads_no_broker_and_alembic_only_to_upgrade(
        tmp_path: Path) -> None:
    env = _env(tmp_path)
    job = write_job(tmp_path / "jobs", "show", driver="asyncssh",
                    steps=[{"name": "show", "command": ["show version"]}])
    url = f"sqlite:///{tmp_path / 'runner.db'}"
    with start_fleet(tmp_path, FleetSpec(5, "127.128.0.1")) as fleet:
        runs: list[Imported] = []
        for _ in range(2):  # a new database (its schema made), then one at head
            runs.append(imports_of(["--db", url, "run", str(job), "-i", str(fleet.inventory),
                                    "--engine", "local", "--json"], tmp_path, env))
    for seen in runs:
        assert seen.proc.returncode == 0, seen.proc.stderr[-3000:]
        devices = json.loads(seen.proc.stdout)["devices"]
        assert sorted(d["host"] for d in devices) == fleet.hosts
        assert {d["status"] for d in devices} == {"ok"}
        assert seen.of(*BROKER) == []
        # a show job: no other driver, no template or check engine, no config trees
        assert seen.of("netmiko", "scrapli", "paramiko", "jinja2", "hier_config") == []
        assert seen.loaded("sqlalchemy") and seen.loaded("asyncssh")  # what it did use
        assert seen.loaded("sqlalchemy.dialects.sqlite")
        assert seen.of("multiprocessing") == []  # no engine process: none of its machinery
        assert _runner_models(seen) == {JOB_MODEL, *INVENTORY_MODELS}
    first, second = runs
    assert first.loaded("alembic")  # the new database's schema was made by Alembic
    assert second.of("alembic") == []  # at head: one query said so
    # Alembic loads every dialect it has; at head, SQLite's alone (PostgreSQL's: ~20 ms)
    assert _within(second, "sqlalchemy.dialects.postgresql") == []


def test_the_command_list_says_what_each_command_says() -> None:
    """COMMANDS' one-line help is the start of each command's own help: the `Commands:`
    listing is the same, at every terminal width, as click makes from the commands."""
    for entry in COMMANDS:
        command = cli.get_command(click.Context(cli), entry.name)
        assert command is not None and command.name == entry.name, entry
        assert command.short_help is None and not command.hidden and not command.deprecated
        assert " ".join((command.help or "").split()).startswith(entry.help), entry.name
        for limit in range(10, 400, 7):
            stub = click.Command(entry.name, help=entry.help)
            assert stub.get_short_help_str(limit) == command.get_short_help_str(limit), \
                (entry.name, limit)
    for width in (40, 50, 60, 80, 100, 120, 200):
        ctx = click.Context(cli, info_name="runner", terminal_width=width,
                            max_content_width=width)
        listed, loaded = ctx.make_formatter(), ctx.make_formatter()
        cli.format_commands(ctx, listed)
        click.Group.format_commands(cli, ctx, loaded)  # click's own: every module imported
        assert listed.getvalue() == loaded.getvalue(), width
    assert CliRunner().invoke(cli, ["--help"]).exit_code == 0


def test_a_command_whose_help_moved_on_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above fails when the table and a command disagree."""
    entry = COMMANDS.get("history")
    stale = LazyCommand(entry.name, entry.module, "List the runs.")
    table = Registry("command", lambda c: c.name,
                     [stale if e.name == "history" else e for e in COMMANDS])
    monkeypatch.setattr(cli_module, "COMMANDS", table)
    ctx = click.Context(cli, info_name="runner", terminal_width=80)
    listed, loaded = ctx.make_formatter(), ctx.make_formatter()
    LazyGroup.format_commands(cli, ctx, listed)
    click.Group.format_commands(cli, ctx, loaded)
    assert "List the runs." in listed.getvalue()
    assert listed.getvalue() != loaded.getvalue()


def test_the_schema_head_read_as_text_is_alembics(tmp_path: Path) -> None:
    assert migrate.plain_head() == migrate.head()

    def versions(*files: str) -> Path:
        directory = tmp_path / f"v{len(list(tmp_path.iterdir()))}"
        directory.mkdir()
        (directory / "__init__.py").write_text("", encoding="utf-8")
        for i, text in enumerate(files):
            (directory / f"v{i:04d}_x.py").write_text(text, encoding="utf-8")
        return directory

    first = 'revision: str = "0001"\ndown_revision: str | None = None\n'
    assert migrate.stated_head(versions(
        first, "revision = '0002'  # quoted so\ndown_revision = '0001'\n")) == "0002"
    assert migrate.stated_head(versions(
        first, 'revision = "0002"\ndown_revision = "0001"\n',
        'revision = "0003"\ndown_revision = "0001"\n')) is None  # two heads: Alembic's call
    assert migrate.stated_head(versions(
        first, 'revision = REV\ndown_revision = "0001"\n')) is None  # not stated plainly
    assert migrate.stated_head(versions(first, 'down_revision = "0001"\n')) is None
    assert migrate.stated_head(versions()) is None


_FOUND = ("import json, warnings\n"
          "warnings.simplefilter('ignore')\n"
          "import {module}\n"
          "from asyncssh.crypto import pq, umac\n"
          "print(json.dumps([pq.mlkem_available, pq.sntrup_available, pq._oqs_lib,\n"
          "                  umac._nettle_lib]))\n")


def test_asyncssh_loads_without_running_a_compiler(tmp_path: Path) -> None:
    """asyncssh looks for liboqs and libnettle as it loads. Through runner.drivers.sshlib
    (how runner imports it) that is ldconfig's cache and the loader's directories, never a
    compiler or linker run (ctypes.util's fallbacks for a library ldconfig does not list,
    ~20 ms of CPU each), and it finds here what asyncssh alone finds."""
    tools, ran = tmp_path / "bin", tmp_path / "ran.txt"
    tools.mkdir()
    for name in ("gcc", "cc", "ld"):  # what find_library runs besides /sbin/ldconfig
        tool = tools / name
        tool.write_text(f"#!/bin/sh\necho {name} >> {ran}\nexit 1\n", encoding="utf-8")
        tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    env = _env(tmp_path)
    watched = {**env, "PATH": f"{tools}{os.pathsep}{env.get('PATH', '')}"}

    def found(module: str, run_env: dict[str, str]) -> list[object]:
        proc = subprocess.run([sys.executable, "-c", _FOUND.format(module=module)],
                              cwd=tmp_path, env=run_env, capture_output=True, text=True,
                              check=True)
        return list(json.loads(proc.stdout))

    alone = found("asyncssh", env)  # with this machine's own gcc and ld, if any
    assert found("asyncssh", watched) == alone
    if alone[2] is None:  # no liboqs in ldconfig's cache: asyncssh alone ran the compiler
        assert "gcc" in ran.read_text(encoding="utf-8")
        ran.unlink()
    assert found("runner.drivers.sshlib", watched) == alone
    assert not ran.exists()


def test_the_loader_search_looks_where_dlopen_does(tmp_path: Path) -> None:
    from runner.drivers.sshlib import DEFAULT_DIRS, loader_search

    libs = tmp_path / "lib"
    libs.mkdir()
    (libs / "libdemo.so.3").write_bytes(b"")
    cache = {"cached": "libcached.so.1"}
    find = loader_search(cache.get, {"LD_LIBRARY_PATH": f"/nonexistent:{libs}"})
    assert find("cached") == "libcached.so.1"  # ldconfig's cache first
    assert find("demo") == str(libs / "libdemo.so.3")  # then LD_LIBRARY_PATH
    assert find("runner-no-such-library") is None
    assert loader_search(cache.get, {})("demo") is None  # not where the loader looks
    assert "/usr/lib" in DEFAULT_DIRS


_PLUGIN = """\
\"\"\"A pydantic plugin that says, in a file, that pydantic loaded it.\"\"\"
import os
from pathlib import Path

Path(os.environ["PLUGIN_MARK"]).write_text("loaded", encoding="utf-8")


class Plugin:
    def new_schema_validator(self, *args, **kwargs):
        return None, None, None


plugin = Plugin()
"""


def test_pydantic_plugins_are_off_unless_the_user_says_otherwise(tmp_path: Path) -> None:
    """An installed pydantic plugin (an entry point of the `pydantic` group, as a package
    declares it) is not looked up by `runner validate`: runner sets PYDANTIC_DISABLE_PLUGINS
    when the environment has none. A value the user set is kept: empty, pydantic loads the
    plugin (the control); naming another plugin, it loads this one."""
    site = tmp_path / "site"
    (site / "runner_probe_plugin-1.0.dist-info").mkdir(parents=True)
    (site / "runner_probe_plugin.py").write_text(_PLUGIN, encoding="utf-8")
    (site / "runner_probe_plugin-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: runner-probe-plugin\nVersion: 1.0\n", encoding="utf-8")
    (site / "runner_probe_plugin-1.0.dist-info" / "entry_points.txt").write_text(
        "[pydantic]\nprobe = runner_probe_plugin:plugin\n", encoding="utf-8")
    job = write_job(tmp_path / "jobs", "show", steps=[{"name": "v", "command": "show version"}])
    mark = tmp_path / "loaded.txt"
    env = {k: v for k, v in _env(tmp_path).items() if k != "PYDANTIC_DISABLE_PLUGINS"}
    env |= {"PYTHONPATH": str(site), "PLUGIN_MARK": str(mark)}

    def loaded(**extra: str) -> bool:
        mark.unlink(missing_ok=True)
        proc = subprocess.run([sys.executable, "-m", "runner", "validate", str(job)],
                              cwd=tmp_path, env={**env, **extra}, capture_output=True,
                              text=True, check=False)
        assert proc.returncode == 0 and proc.stdout.rstrip().endswith(": ok"), proc.stderr
        return mark.exists()

    assert not loaded()  # runner's default: no lookup
    assert loaded(PYDANTIC_DISABLE_PLUGINS="")  # the user's value wins: plugins on
    assert loaded(PYDANTIC_DISABLE_PLUGINS="another")  # only another plugin off
    assert not loaded(PYDANTIC_DISABLE_PLUGINS="probe")
    # the commands runner starts (engine processes, `runner serve`'s runs) inherit the choice
    probe = ("import atexit, os, sys\n"
             "atexit.register(lambda: print(repr(os.environ.get('PYDANTIC_DISABLE_PLUGINS'))))\n"
             "sys.argv = ['runner', '--help']\n"
             "from runner.cli import main\n"
             "main()\n")
    for given, seen in ((None, "'__all__'"), ("", "''"), ("1", "'1'")):
        run_env = env if given is None else {**env, "PYDANTIC_DISABLE_PLUGINS": given}
        proc = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=run_env,
                              capture_output=True, text=True, check=False)
        assert proc.stdout.rstrip().endswith(seen), (given, proc.stdout, proc.stderr)


_COMPILED = ("volatile", "secrets", "modes", "submodes")


def _compiled(table: Registry[platforms.Platform]) -> dict[str, list[str]]:
    """Per platform, which of its pattern sets have been compiled."""
    return {p.name: [a for a in _COMPILED if a in vars(p)] for p in table}


def test_a_platforms_patterns_are_compiled_when_first_used(tmp_path: Path) -> None:
    """platforms.yaml's patterns (secret-line rules the most of them) are compiled for the
    platforms a command uses, when it uses them: checking a job against an inventory
    compiles none, masking one platform's output compiles that platform's secret rules
    alone; each compiled set is its written patterns, in order."""
    platforms._table.cache_clear()
    try:
        job = write_job(tmp_path / "jobs", "show", steps=[{"name": "v",
                                                           "command": "show version"}])
        inventory = write_inventory(tmp_path, "r1: {hostname: 127.0.0.1, platform: cisco_ios}\n"
                                              "r2: {hostname: 127.0.0.2, platform: eos}\n")
        prep = prepare_job(load_job(job), inventory, TEMPLATES)
        assert sorted(prep.hosts) == ["r1", "r2"]
        table = platforms._table()
        assert len(table.names()) >= 4
        assert _compiled(table) == {p.name: [] for p in table}
        ios = platforms.get("cisco_ios")
        assert ios is not None
        assert Redactor(["hunter22"], ios.secrets).text("enable secret 0 s3cr3t\n") == \
            "enable secret 0 ********\n"
        assert _compiled(table) == {p.name: ["secrets"] if p.name == "cisco_ios" else []
                                    for p in table}
        for platform in table:  # every written pattern compiles (a shipped table's check)
            assert [r.pattern for r in platform.secrets] == \
                [compile_rule(rule).pattern for rule in platform.secret_rules]
            assert [(v.pattern, v.flags & re.M) for v in platform.volatile] == \
                [(v, re.M) for v in platform.volatile_patterns]
            assert [m.pattern for m in platform.modes] == list(platform.mode_patterns)
            assert [m.pattern for m in platform.submodes] == list(platform.submode_patterns)
            assert platform.secrets and platform.volatile
        assert any(p.modes for p in table)
    finally:
        platforms._table.cache_clear()
