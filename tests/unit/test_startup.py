"""Start-up (issue 28): a command imports what it uses when it uses it. `runner --help` lists
the commands from runner.cli.COMMANDS without importing one, every command's --help loads
no database, broker or SSH library, `validate` no database or broker, and a small local run
no Celery or Redis (nor Alembic once its database is at head). Each is a real `python -m
runner` process whose sys.modules is read as it exits. CPU figures: bench/startup.py."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from runner import cli as cli_module
from runner.cli import COMMANDS, LazyCommand, LazyGroup, cli
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
    # Each with what it must not load besides; without -i no inventory (Nornir), and a job
    # without templates or checks no Jinja2.
    for args, nor in ((["validate", str(job), "--templates", str(TEMPLATES)],
                       ("nornir", "jinja2")),
                      (["validate", str(job), "--templates", str(TEMPLATES), "-i",
                        str(inventory)], ("jinja2",)),
                      # its siblings are not validated (jobs/compliance.yml's notify URL
                      # would load Apprise): facts.yml has no `after:`, its name is its own
                      (["validate", str(ROOT / "jobs" / "facts.yml"), "--templates",
                        str(TEMPLATES)], ("nornir", "apprise"))):
        seen = imports_of(args, tmp_path, env)
        assert seen.proc.returncode == 0, (args, seen.proc.stdout, seen.proc.stderr)
        assert seen.proc.stdout.rstrip().endswith(": ok"), seen.proc.stdout
        assert seen.of(*DATABASE, *BROKER, *SSH, *nor, "apprise", "multiprocessing") == [], args
        # checking is runner.job.prepare's: no engine, dispatcher, store or run module
        assert _within(seen, *NOT_FOR_CHECKING) == [], args
        assert seen.loaded("runner.job.spec") and seen.loaded("runner.job.prepare")
    bad = write_job(tmp_path / "bad", "bad", steps=[{"name": "x", "command": 3}])
    seen = imports_of(["validate", str(bad)], tmp_path, env)
    assert seen.proc.returncode == 2 and "bad.yml" in seen.proc.stderr
    assert seen.of(*DATABASE, *BROKER, *SSH) == []
    assert _within(seen, *NOT_FOR_CHECKING) == []


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
    first, second = runs
    assert first.loaded("alembic")  # the new database's schema was made by Alembic
    assert second.of("alembic") == []  # at head: one query said so


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
