"""What every `runner` subcommand shares: the settings the `runner` group read from the
environment, and the options that mean the same everywhere (--engine)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

import click

from runner.logsetup import terminal_safe
from runner.settings import Settings
from runner.vocab import EngineChoice

if TYPE_CHECKING:
    from runner.store.results import ResultsStore


def echo(message: object = "", *, err: bool = False, nl: bool = True) -> None:
    """click.echo, with control characters escaped (logsetup.terminal_safe): what runner
    prints comes from devices, exercise and topology files as well as from runner."""
    click.echo(terminal_safe(str(message)), err=err, nl=nl)


def echo_json(chunks: Iterable[str]) -> None:
    """A JSON document printed from its text chunks (then a newline), in pieces of ~1 MiB.
    Not passed through terminal_safe: json.dumps' text (ensure_ascii) holds no control
    character but the newlines between its tokens (each one inside a string is escaped),
    and scanning a 100,000-device document for them cost seconds."""
    piece: list[str] = []
    size = 0
    for chunk in chunks:
        piece.append(chunk)
        size += len(chunk)
        if size >= 1 << 20:
            click.echo("".join(piece), nl=False)
            piece, size = [], 0
    click.echo("".join(piece))


def settings_of(ctx: click.Context) -> Settings:
    """The settings the `runner` group read (or from the environment, for a bare command)."""
    root = ctx.find_root().obj
    return root if isinstance(root, Settings) else Settings.from_env()


def results_store(ctx: click.Context) -> ResultsStore:
    """The results database the settings name (--db, RUNNER_DB_URL), its schema at head."""
    from runner.store.results import ResultsStore

    settings = settings_of(ctx)
    return ResultsStore(settings.database_url(), settings.db_retry)


# The `runner` group's own way to open a twin for `run --rehearse` (ctx.meta): the lab is a
# layer above the job's commands, so the command line, on top of both, hands it down.
TWIN_OPENER = "twin-opener"


def twin_opener(ctx: click.Context) -> Callable[[Settings, str], Any]:
    """How to open a twin (runner.job.rehearse.TwinOpener, given the settings)."""
    opener = ctx.meta.get(TWIN_OPENER)
    if opener is None:
        raise click.UsageError("--rehearse needs the `runner` command line (no twin "
                               "machinery here)")
    return cast("Callable[[Settings, str], Any]", opener)


ENGINE_HELP = ("auto: engine processes (one per core) for large runs, else this process; "
               "local: this process; processes: one engine process per core (--processes); "
               "celery: shards on `runner worker` machines.")


def engine_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--engine, for every command that runs jobs; its value is an EngineChoice."""
    return click.option("--engine", type=click.Choice([e.value for e in EngineChoice]),
                        default=EngineChoice.AUTO.value, show_default=True, help=ENGINE_HELP,
                        callback=lambda _c, _p, value: EngineChoice(value))(fn)


ALL_DEVICES = click.option(
    "--all", "show_all", is_flag=True,
    help="List every device in the table (past 50 devices only the ones that did not end "
         "ok or changed are listed, the rest counted).")
