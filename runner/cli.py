"""The `runner` command line: one entry point; errors become one message and an exit code."""

from __future__ import annotations

import importlib
import signal
import sys
from dataclasses import replace
from types import FrameType

import click

from runner import __version__, logsetup
from runner.cli_common import echo
from runner.errors import RunnerError
from runner.settings import Settings

# command -> module that defines it: a command's module (and the libraries it needs: lab,
# scheduler, Celery) loads only when that command runs, so `runner run` starts quickly.
COMMANDS = {
    "run": "runner.job.commands", "validate": "runner.job.commands",
    "schema": "runner.job.commands", "history": "runner.job.commands",
    "show": "runner.job.commands", "approve": "runner.job.commands",
    "reject": "runner.job.commands", "cancel": "runner.job.commands",
    "compliance": "runner.job.compliance_commands",
    "remediate": "runner.job.compliance_commands",
    "serve": "runner.schedule.commands",
    "schedule": "runner.schedule.commands", "workflow": "runner.schedule.commands",
    "worker": "runner.dispatch.commands",
    "lab": "runner.lab.commands", "twin": "runner.lab.twin.commands",
    "db": "runner.store.commands",
    "device": "runner.store.commands", "web": "runner.web.commands",
    "token": "runner.web.commands",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMANDS.get(cmd_name)
        if module is None:
            return None
        command = getattr(importlib.import_module(module), cmd_name)
        assert isinstance(command, click.Command)
        return command


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
    logsetup.configure(verbose)


_TERMINATED: list[bool] = []  # SIGTERM arrived (asyncio may re-raise it as a plain Ctrl-C)


def _terminate(_signum: int, _frame: FrameType | None) -> None:
    """SIGTERM stops a command as Ctrl-C does (runs finish as interrupted, with a record
    per device; a lab being brought up is removed), with exit code 143."""
    _TERMINATED.append(True)
    raise KeyboardInterrupt


def main() -> None:
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
