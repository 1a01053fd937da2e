"""`runner run`, `validate`, `schema`, `history`, `show`: jobs from the command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from runner.cli_common import engine_option, settings_of
from runner.errors import InputError
from runner.job.load import load_job
from runner.job.spec import json_schema
from runner.output import Progress, diffs, run_table, table
from runner.results import ResultsStore
from runner.run import RunOptions, check_job, execute, prepare
from runner.vocab import EngineChoice

INVENTORY_HELP = "Nornir inventory: a directory with hosts.yaml (+ groups, defaults) or a file."


def _store(ctx: click.Context) -> ResultsStore:
    return ResultsStore(settings_of(ctx).database_url())


@click.command()
@click.argument("job_file", type=click.Path(path_type=Path))
@click.option("-i", "--inventory", type=click.Path(path_type=Path), default=Path("inventory"),
              show_default=True, help=INVENTORY_HELP)
@click.option("--templates", type=click.Path(path_type=Path), default=Path("templates"),
              show_default=True, help="Directory of Jinja2 and parser templates.")
@click.option("-l", "--limit", help="Only these hosts or groups (comma-separated, globs).")
@click.option("--dry-run", is_flag=True, help="Render config, show the diff, send nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option("--diff/--no-diff", "show_diff", default=None,
              help="Print config diffs (default: on for --dry-run).")
@engine_option
@click.option("--shard-size", type=click.IntRange(1, 100_000), default=50, show_default=True,
              help="Hosts per shard with --engine celery.")
@click.option("--processes", type=click.IntRange(0, 256), default=0, show_default=True,
              help="Local engine processes; 0: one per usable core when the run is large.")
@click.pass_context
def run(ctx: click.Context, job_file: Path, inventory: Path, templates: Path,
        limit: str | None, dry_run: bool, as_json: bool, show_diff: bool | None,
        engine: EngineChoice, shard_size: int, processes: int) -> None:
    """Run JOB_FILE now on its targets. Exit 0: all ok/changed; 1: any other; 2: bad input."""
    prep = prepare(job_file, inventory, templates, limit)
    store = _store(ctx)
    progress = Progress(len(prep.hosts))
    run_result = execute(prep, store, RunOptions(
        settings=settings_of(ctx), dry_run=dry_run, on_device_done=[progress], engine=engine,
        shard_size=shard_size, processes=processes or None))
    if as_json:
        click.echo(json.dumps(run_result.to_json(), indent=2))
    else:
        if show_diff if show_diff is not None else dry_run:
            text = diffs(run_result)
            if text:
                click.echo(text + "\n")
        click.echo(run_table(run_result))
    sys.exit(0 if run_result.ok else 1)


@click.command()
@click.argument("job_files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--templates", type=click.Path(path_type=Path), default=Path("templates"),
              show_default=True)
@click.option("-i", "--inventory", type=click.Path(path_type=Path),
              help="Also check the targets against this inventory.")
def validate(job_files: tuple[Path, ...], templates: Path, inventory: Path | None) -> None:
    """Check job files without contacting any device. Exit 2 when one is invalid."""
    failed = False
    for path in job_files:
        try:
            if inventory is not None:
                prepare(path, inventory, templates)
            else:
                check_job(load_job(path), templates)
            click.echo(f"{path}: ok")
        except InputError as exc:
            click.echo(f"error: {exc}", err=True)
            failed = True
    sys.exit(2 if failed else 0)


@click.command()
def schema() -> None:
    """Print the job file JSON Schema (for editors)."""
    click.echo(json.dumps(json_schema(), indent=2))


@click.command()
@click.option("-n", "--limit", type=int, default=20, show_default=True)
@click.option("--job", help="Only runs of this job.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def history(ctx: click.Context, limit: int, job: str | None, as_json: bool) -> None:
    """List recent runs."""
    rows = _store(ctx).list_runs(limit, job)
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        click.echo("no runs yet")
        return
    out = [("RUN", "JOB", "STARTED", "STATUS", "DRY", "SUMMARY")]
    for r in rows:
        summary = " ".join(f"{k}={v}" for k, v in (r["summary"] or {}).items() if v)
        out.append((r["run_id"], r["job"], r["started"][:19], r["status"],
                    "yes" if r["dry_run"] else "", summary))
    click.echo(table(out))


@click.command()
@click.argument("run_id")
@click.option("--host", help="Only this device, with its steps' output.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def show(ctx: click.Context, run_id: str, host: str | None, as_json: bool) -> None:
    """Show one run (a unique prefix of its id is enough)."""
    row, run_result = _store(ctx).get_run(run_id)
    if host is not None:
        run_result.devices = [d for d in run_result.devices if d.host == host]
        if not run_result.devices:
            raise InputError(f"run {run_result.run_id} has no device {host!r}")
    if as_json:
        data = run_result.to_json()
        data["status"] = row["status"]
        data["notifications"] = row["notifications"] or []
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"status {row['status']}  started {row['started']}  finished {row['finished']}")
    click.echo(run_table(run_result))
    for sent in row["notifications"] or []:
        outcome = "delivered" if sent["delivered"] else f"NOT delivered: {sent['error']}"
        click.echo(f"notified {sent['url']} ({', '.join(sent['events'])}): {outcome}")
    if host is not None:
        for step in run_result.devices[0].steps:
            click.echo(f"\n== {step.name} ({step.kind})" + (" FAILED" if step.failed else ""))
            for label, value in (("output", step.output), ("diff", step.diff),
                                 ("error", step.error)):
                if value:
                    click.echo(f"-- {label}\n{value.rstrip()}")
            if step.parsed is not None:
                click.echo(f"-- parsed\n{json.dumps(step.parsed, indent=2)}")
