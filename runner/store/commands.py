"""`runner db`: the database's schema version for operators who migrate by hand (`current`,
`upgrade`), and `import` of runs the database could not take while it was away."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from runner.cli_common import echo, results_store, settings_of
from runner.errors import Conflict, InputError
from runner.store import migrate, unsaved
from runner.store.database import open_engine


def _version_json(version: migrate.Version) -> dict[str, Any]:
    return {"database": version.url, "revision": version.revision, "head": version.head,
            "state": version.state, "at_head": version.at_head}


@click.group()
def db() -> None:
    """The results and schedule database: its schema version, runs kept in files.

    Every runner start brings the schema to head by itself (one process at a time); these
    commands are for operators who would rather do it by hand, and see where it stands."""


@db.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def current(ctx: click.Context, as_json: bool) -> None:
    """The database's schema revision, and whether it is this runner's head. Changes
    nothing."""
    version = migrate.current(open_engine(settings_of(ctx).database_url(), migrate=False))
    if as_json:
        echo(json.dumps(_version_json(version), indent=2))
    else:
        echo(f"{version.url}: {version.describe()}")


@db.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def upgrade(ctx: click.Context, as_json: bool) -> None:
    """Bring the database's schema to this runner's head (an empty database gets the whole
    schema; one made before migrations is adopted, every run kept)."""
    engine = open_engine(settings_of(ctx).database_url(), migrate=False)
    before = migrate.current(engine)
    after = migrate.upgrade(engine)
    if as_json:
        echo(json.dumps({**_version_json(after), "before": before.revision,
                               "before_state": before.state}, indent=2))
    elif before.at_head:
        echo(f"{after.url}: already at head {after.head}")
    else:
        echo(f"{after.url}: upgraded from {before.revision or before.state} to "
             f"{after.revision} (head)")


@db.command(name="import")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--replace", is_flag=True,
              help="Overwrite a stored run of the same id that this file does not complete "
                   "(without it, such a run is left as it is and the import fails).")
@click.option("--max-size", type=click.IntRange(1, 64 * 1024), default=unsaved.MAX_BYTES //
              (1024 * 1024), show_default=True, metavar="MIB",
              help="Refuse files larger than this many MiB.")
@click.pass_context
def import_runs(ctx: click.Context, files: tuple[Path, ...], replace: bool,
                max_size: int) -> None:
    """Store runs that were kept in files (RUNNER_HOME/unsaved/run-ID.json) because the
    database was away when they ended. A run the database holds unfinished (running, or
    interrupted by the start that found it) is completed; one it holds as the file has it
    is left unchanged (importing twice changes nothing); any other stored run of that id
    is never overwritten without --replace. Every file is checked before any is stored."""
    store = results_store(ctx)
    kept = [(path, unsaved.load(path, max_size * 1024 * 1024)) for path in files]
    for path, (run, status, error, hosts) in kept:
        try:
            outcome = store.import_run(run, status, error, hosts, replace=replace)
        except Conflict as exc:
            raise InputError(str(exc), path=path) from None
        echo(f"{path}: run {run.run_id} {outcome} ({len(run.devices)} device records, "
             f"{status})")
