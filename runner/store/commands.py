"""`runner db`: the database's schema version for operators who migrate by hand (`current`,
`upgrade`), and `import` of runs the database could not take while it was away; `runner
device`: a device's whole story from the store, the inventory and the backups."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from runner.cli_common import echo, results_store, settings_of
from runner.errors import Conflict, InputError
from runner.store import migrate, unsaved


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
    from runner.store.database import open_engine

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
    from runner.store.database import open_engine

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


@click.command()
@click.argument("name", required=False)
@click.option("-i", "--inventory", type=click.Path(path_type=Path), default=Path("inventory"),
              show_default=True, help="The inventory the devices are in.")
@click.option("--jobs", "jobs_dir", type=click.Path(path_type=Path), default=Path("jobs"),
              show_default=True, help="Jobs directory (its backup steps name the backup "
                                      "repositories).")
@click.option("--backups", "backup_dirs", multiple=True, type=click.Path(path_type=Path),
              help="A backup repository besides the jobs' backup dirs (repeatable).")
@click.option("--search", help="Listing: devices whose name or address holds this.")
@click.option("--group", help="Listing: devices in this group (or a group nested in it).")
@click.option("--platform", help="Listing: devices of this platform.")
@click.option("--status", help="Listing: devices whose last run ended so (ok, failed, ...; "
                                "`never`: no run recorded them).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (as GET "
                                                       "/api/devices[/NAME] answers).")
@click.pass_context
def device(ctx: click.Context, name: str | None, inventory: Path, jobs_dir: Path,
           backup_dirs: tuple[Path, ...], search: str | None, group: str | None,
           platform: str | None, status: str | None, as_json: bool) -> None:
    """A device's whole story: its inventory facts (never a secret), its newest runs with
    their status, its backups per repository, its compliance, who holds its lease now.
    Without NAME: the inventory's devices with their last run."""
    from runner.inventory.loading import load_inventory
    from runner.job.backup_index import repositories
    from runner.job.output import table
    from runner.store import devices

    store = results_store(ctx)
    fleet = load_inventory(inventory)
    if name is None:
        _, rows = devices.device_list(store, fleet, devices.DeviceFilter(
            search, group, platform, status))
        if as_json:
            echo(json.dumps(rows, indent=2))
            return
        lines = [("DEVICE", "ADDRESS", "PLATFORM", "LAST RUN", "WHEN", "JOB", "ERROR")]
        for row in rows:
            last = row["last_run"] or {}
            lines.append((row["device"], f"{row['hostname']}:{row['port']}",
                          row["platform"] or "", last.get("status", "never"),
                          last.get("finished") or "", last.get("job", ""),
                          (last.get("error") or "")[:80]))
        echo(table(lines) if rows else "no device matches")
        return
    document = devices.device_document(store, fleet, repositories(jobs_dir, backup_dirs),
                                       settings_of(ctx), name)
    if as_json:
        echo(json.dumps(document, indent=2))
        return
    echo(_device_text(document))


def _device_text(d: dict[str, Any]) -> str:
    """`runner device NAME` for people."""
    out = [d["device"] + ("" if d["in_inventory"] else "  (not in the inventory any more)")]
    if d["in_inventory"]:
        out.append(f"  address   {d['hostname']}:{d['port']}")
        out.append(f"  platform  {d['platform'] or '-'}")
        out.append(f"  groups    {', '.join(d['groups']) or '-'}")
    lease = d["lease"]
    out.append("  lease     " + ("free" if lease is None else lease.get("error")
                                 or f"held by {lease['holder']} ({lease['via']})"))
    backup = d["last_backup"]
    out.append("  backup    " + ("none" if backup is None else
                                 f"{backup['date']} in {backup['repo']} ({backup['commit'][:10]})"))
    out.append("runs (newest first):" if d["runs"] else "runs: none recorded")
    for run in d["runs"]:
        error = f"  {run['error_class'] or 'error'}: {run['error']}" if run["error"] else ""
        out.append(f"  {run['run_id']}  {run['job']}  {run['finished'] or run['started'] or ''}"
                   f"  {run['status']}{error}")
    for b in d["backups"]:
        attempt = b["last_attempt"] or {}
        out.append(f"backups in {b['repo']}: {b['state']}, {b['versions']} version(s)"
                   + (f"; last attempt {attempt['status']}" if attempt else "")
                   + (f": {attempt['error']}" if attempt.get("error") else ""))
    for c in d["compliance"]:
        out.append(f"compliance {c['feature']}: {c['status']} (checked {c['checked']})")
    return "\n".join(out)
