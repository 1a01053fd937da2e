"""The `runner` command line: one entry point; errors become one message and an exit code."""

from __future__ import annotations

import logging
import sys

import click

from runner import __version__
from runner.dispatch.commands import worker
from runner.errors import RunnerError
from runner.job_commands import history, run, schema, show, validate
from runner.lab.commands import lab
from runner.schedule.commands import schedule, serve


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="runner")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("--db", envvar="RUNNER_DB_URL", metavar="URL",
              help="Results database (SQLAlchemy URL); default .runner/results.db.")
@click.pass_context
def cli(ctx: click.Context, verbose: int, db: str | None) -> None:
    """Network-automation job runner for device fleets."""
    ctx.obj = {"db": db}
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)


for command in (run, validate, schema, history, show, serve, schedule, worker, lab):
    cli.add_command(command)


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except RunnerError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
