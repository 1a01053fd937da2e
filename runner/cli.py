"""The `runner` command line: one entry point; errors become one message and an exit code."""

from __future__ import annotations

import atexit
import gc
import importlib
import os
import signal
import sys
from dataclasses import dataclass, replace
from types import FrameType
from typing import Any

import click

from runner import __version__, logsetup
from runner.cli_common import TWIN_OPENER, echo
from runner.errors import RunnerError
from runner.registry import Registry
from runner.settings import Settings


@dataclass(frozen=True)
class LazyCommand:
    """A command of `runner`: the module that defines it (imported only when the command
    runs or shows its own help: with it the libraries it needs, the database, Celery, the
    lab) and the first sentence of its help, which `runner --help` lists without importing
    anything (tests/unit/test_startup.py checks it against the command's docstring)."""

    name: str
    module: str
    help: str


_JOB, _COMPLIANCE = "runner.job.commands", "runner.job.compliance_commands"
_SCHEDULE, _STORE, _WEB = "runner.schedule.commands", "runner.store.commands", \
    "runner.web.commands"
COMMANDS: Registry[LazyCommand] = Registry("command", lambda c: c.name, [
    LazyCommand("run", _JOB, "Run JOB_FILE now on its targets."),
    LazyCommand("validate", _JOB, "Check job files without contacting any device, and "
                "blackouts.yml files (the blackout windows beside job files)."),
    LazyCommand("schema", _JOB, "Print a JSON Schema (for editors): of job files (default), "
                "of blackouts.yml (the blackout windows beside the job files), of the "
                "inventory's hosts.yaml and groups.yaml (and containerlab's flat file), or of "
                "its defaults.yaml."),
    LazyCommand("history", _JOB, "List recent runs."),
    LazyCommand("show", _JOB, "Show one run (a unique prefix of its id is enough)."),
    LazyCommand("approve", _JOB, "Carry out the change that preview RUN_ID showed (status "
                "awaiting_approval): the job as previewed, on the devices it would change; a "
                "device whose config moved since the preview is skipped (ConfigDrift)."),
    LazyCommand("reject", _JOB, "Say no to the change that preview RUN_ID showed; nothing is "
                "sent."),
    LazyCommand("cancel", _JOB, "Stop a running run, whichever process or machine runs it: "
                "that process sees the request within seconds; devices in progress end as "
                "interrupted, the others skipped."),
    LazyCommand("compliance", _COMPLIANCE, "Each device's latest compliance per feature, as "
                "the last run of a compliance job found it (or, with --history, its "
                "changes)."),
    LazyCommand("remediate", _COMPLIANCE, "Fix the drift compliance run RUN_ID found: on each "
                "non-compliant device, the remediation hier_config builds against its config "
                "now (adds, `no` lines, section exits), pushed with the job's rollout and "
                "checks, rolled back on failure, then checked again (NotCompliant and rolled "
                "back if it still is not); previewed for approval when the job's schedule "
                "requires it."),
    LazyCommand("serve", _SCHEDULE, "Run the scheduled jobs in --jobs until SIGTERM; SIGHUP or "
                "any edit reloads them."),
    LazyCommand("schedule", _SCHEDULE, "Scheduled jobs: what runs when, and firing one now."),
    LazyCommand("workflow", _SCHEDULE, "Workflow runs: an occurrence of a job that others "
                "follow (`after:`) and its steps."),
    LazyCommand("worker", "runner.dispatch.commands", "Start a worker (broker and results: "
                "RUNNER_BROKER_URL, RUNNER_RESULT_URL; silent for RUNNER_WORKER_LOST_AFTER "
                "seconds, its shards go to other workers)."),
    LazyCommand("lab", "runner.lab.commands", "Labs of emulated routers from containerlab "
                "topology files."),
    LazyCommand("twin", "runner.lab.twin.commands", "Twins: a lab copy of production built "
                "from its config backups."),
    LazyCommand("db", _STORE, "The results and schedule database: its schema version, runs "
                "kept in files."),
    LazyCommand("device", _STORE, "A device's whole story: its inventory facts (never a "
                "secret), its newest runs with their status, its backups per repository, its "
                "compliance, who holds its lease now."),
    LazyCommand("web", _WEB, "Serve the dashboard, the REST API (/api/, docs at /docs) and "
                "/metrics."),
    LazyCommand("token", _WEB, "API and dashboard tokens: create (shown once), list, revoke."),
])


class _Listing(click.Group):
    """The `Commands:` section of `runner --help`, from COMMANDS alone, in their order."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return COMMANDS.names()

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.find(cmd_name)
        if entry is None:
            return None
        command = getattr(importlib.import_module(entry.module), cmd_name)
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # click's own listing (its width and shortening rules), given each command's first
        # sentence instead of the command: `runner --help` imports no command module.
        _Listing(commands=[click.Command(c.name, help=c.help) for c in COMMANDS]) \
            .format_commands(ctx, formatter)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="runner")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("--db", metavar="URL",
              help="Results database (SQLAlchemy URL); default $RUNNER_DB_URL, else "
                   ".runner/results.db.")
@click.pass_context
def cli(ctx: click.Context, verbose: int, db: str | None) -> None:
    """Network-automation job runner for device fleets."""
    settings = Settings.from_env()  # the one read of the environment; passed down from here
    ctx.obj = settings if db is None else replace(settings, db_url=db)
    ctx.meta[TWIN_OPENER] = _open_twin
    logsetup.configure(verbose)


def _open_twin(settings: Settings, name: str) -> Any:
    """Twin `name` for `runner run --rehearse` (runner.lab.twin.rehearsal), imported only
    when a run is rehearsed."""
    module = importlib.import_module("runner.lab.twin.rehearsal")
    return module.open_twin(settings, name)


_TERMINATED: list[bool] = []  # SIGTERM arrived (asyncio may re-raise it as a plain Ctrl-C)


def _terminate(_signum: int, _frame: FrameType | None) -> None:
    """SIGTERM stops a command as Ctrl-C does (runs finish as interrupted, with a record
    per device; a lab being brought up is removed), with exit code 143."""
    _TERMINATED.append(True)
    raise KeyboardInterrupt


# pydantic looks up its plugins (the `pydantic` entry points of every installed package)
# as it builds its first validator: ~5 ms of a `validate`'s CPU. runner uses none: off,
# unless the user's environment says otherwise (an empty value turns them back on).
PYDANTIC_PLUGINS = ("PYDANTIC_DISABLE_PLUGINS", "__all__")


def main() -> None:
    os.environ.setdefault(*PYDANTIC_PLUGINS)  # before any command imports pydantic
    # At exit the interpreter collects what it loaded (every class, function and module is
    # in a reference cycle): 15-40 ms of a short command's CPU to free memory the OS takes
    # back anyway. Frozen first, the last collections pass them by; what reference
    # counting frees is freed as before, and the atexit hooks registered later (logging's
    # flush, thread pools' joins) run before this one.
    atexit.register(gc.freeze)
    # Commands with their own SIGTERM handling (serve, worker) install it over this one.
    signal.signal(signal.SIGTERM, _terminate)
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:  # click's form of Ctrl-C (and of our SIGTERM)
        echo("terminated" if _TERMINATED else "aborted", err=True)
        sys.exit(143 if _TERMINATED else 130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except RunnerError as exc:
        echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        echo("terminated" if _TERMINATED else "interrupted", err=True)
        sys.exit(143 if _TERMINATED else 130)
