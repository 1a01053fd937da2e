"""`runner run`, `validate`, `schema`, `history`, `show`: jobs from the command line."""

from __future__ import annotations

import gc
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from runner.cli_common import (
    ALL_DEVICES,
    echo,
    echo_json,
    engine_option,
    results_store,
    settings_of,
    twin_opener,
)
from runner.errors import InputError, RecordsNotStored, RunnerError
from runner.job.output import (
    Progress,
    account_lines,
    diffs,
    rehearsal_text,
    run_table,
    table,
)
from runner.vocab import DeviceStatus, EngineChoice

# What a command needs beyond its options is imported as it runs: `runner run --help` and
# `runner validate` load no database, Celery or Redis (tests/unit/test_startup.py).
if TYPE_CHECKING:
    from runner.job.prepare import Prepared
    from runner.job.rehearse import Rehearsal, Twin
    from runner.job.run import RunOptions
    from runner.records import DeviceResult, RunResult
    from runner.store.results import ResultsStore

# `runner run`'s garbage collector: young collections every 50,000 allocations (not 700), a
# full one rarely (see run()). Its process lives for one run.
RUN_GC_THRESHOLD = (50_000, 20, 100)
INVENTORY_HELP = "Nornir inventory: a directory with hosts.yaml (+ groups, defaults) or a file."
OVERRIDE_BLACKOUT = click.option(
    "--override-blackout", metavar="REASON",
    help="Run even inside a blackout window (blackouts.yml beside the job file, or the "
         "job's own): recorded with the run, with who and REASON.")


def _store(ctx: click.Context) -> ResultsStore:
    return results_store(ctx)


def _statuses(_ctx: click.Context, _param: click.Parameter,
              value: str | None) -> list[DeviceStatus] | None:
    if value is None:
        return None
    try:
        return [DeviceStatus(v.strip()) for v in value.split(",") if v.strip()]
    except ValueError as exc:
        raise click.BadParameter(f"{exc}; expected some of {', '.join(DeviceStatus)}") \
            from None


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
@click.option("--rerun", "rerun_of", metavar="RUN_ID",
              help="Only the devices of that run (of this job) that did not end ok or changed.")
@click.option("--status", "statuses", metavar="STATUS,...", callback=_statuses,
              help="With --rerun: only devices that ended with these statuses "
                   f"({', '.join(DeviceStatus)}).")
@click.option("--no-approval", "no_approval", is_flag=True,
              help="For a job whose schedule says approval: required: send the change now, "
                   "without an approved preview (recorded as an override, with who and "
                   "--reason). Without it such a job is previewed for approval.")
@click.option("--reason", metavar="TEXT", help="Why (recorded with --no-approval).")
@OVERRIDE_BLACKOUT
@click.option("--rehearse", metavar="TWIN",
              help="Run the job on twin TWIN first (`runner twin up`: the same devices, "
                   "batches, checks and rollback); production only if every device there "
                   "ended ok or changed, else the run ends rehearsal_failed (exit 4) with "
                   "production untouched. The twin is reset (`twin sync`) afterwards.")
@click.option("--keep", is_flag=True,
              help="With --rehearse: leave the twin as the rehearsal left it (no reset).")
@ALL_DEVICES
@click.pass_context
def run(ctx: click.Context, job_file: Path, inventory: Path, templates: Path,
        limit: str | None, dry_run: bool, as_json: bool, show_diff: bool | None,
        engine: EngineChoice, shard_size: int, processes: int, rerun_of: str | None,
        statuses: list[DeviceStatus] | None, no_approval: bool, reason: str | None,
        override_blackout: str | None, rehearse: str | None, keep: bool,
        show_all: bool) -> None:
    """Run JOB_FILE now on its targets. Exit 0: all ok/changed; 3: drift found (some
    devices non_compliant, none failed); 4: --rehearse failed on the twin (production not
    contacted); 1: any other; 2: bad input.
    A job whose schedule says `approval: required` is previewed instead (status
    awaiting_approval; `runner approve RUN_ID` carries it out), unless --no-approval.
    Inside a blackout window (blackouts.yml beside the job file) it is refused with exit 2
    naming the window, unless --override-blackout REASON (recorded)."""
    # This process runs one job and exits. With the collector's default thresholds its
    # full collections (each a walk of every object the run holds, growing with the run)
    # took ~1.2-2.5 s of a 2,000-device run's ~7 s of CPU; collected young and rarely in
    # full instead (engine processes fork from here and keep it), ~0.5 s. Set before the
    # imports below (the database, SSH, the inventory's), which live until the run ends:
    # collecting them while they load cost a 5-device run ~0.03 s of its ~0.5 s.
    gc.set_threshold(*RUN_GC_THRESHOLD)
    from runner.job.approval import gate, override, who
    from runner.job.load import load_job
    from runner.job.prepare import prepare
    from runner.job.run import (
        RunOptions,
        blackout_override,
        check_override,
        execute,
        rerun_targets,
    )

    store = _store(ctx)
    only = None
    _check_flags(statuses is not None and rerun_of is None, reason, no_approval, dry_run,
                 rehearse, keep)
    if rerun_of is not None:  # "" (an unset variable) is an error, not "every target"
        job = load_job(job_file)
        rerun_of, only = rerun_targets(store, rerun_of, job.spec.name, statuses)
        if not only:
            echo(f"run {rerun_of}: no device to run again", err=True)
            sys.exit(0)
    prep = prepare(job_file, inventory, templates, limit, only,
                   kept=settings_of(ctx).kept_inventories)
    spec = prep.job.spec
    if no_approval and not spec.needs_approval:
        raise InputError(f"job {spec.name!r} needs no approval (its schedule does not say "
                         "approval: required): --no-approval overrides nothing",
                         field="--no-approval")
    me = who()
    options = RunOptions(
        settings=settings_of(ctx), dry_run=dry_run, on_device_done=[Progress(len(prep.hosts))],
        engine=engine, shard_size=shard_size, processes=processes or None, rerun_of=rerun_of,
        started_by=me, override=override(me, reason) if no_approval else None,
        blackout_override=blackout_override(override_blackout, me))
    preview = gate(spec, options)
    check_override(prep, options)
    if rehearse is None and spec.schedule is not None:
        rehearse = spec.schedule.twin(options.settings.twin)  # from every entry point
    twin = twin_opener(ctx)(options.settings, rehearse) if rehearse is not None else None
    if preview:
        echo(f"job {spec.name} needs approval (schedule.approval: required): this run "
             "previews the change and sends nothing" + (
                 " to production (the twin is changed)" if twin else ""), err=True)
    # What is loaded now (the inventory: ~340,000 objects at 100,000 hosts) lives until the
    # run ends: kept out of every later collection (0.1 s each at that size), and engine
    # processes forked from here never write to its pages by collecting it (copy-on-write).
    gc.collect()
    gc.freeze()
    try:
        if twin is not None:
            run_result = _rehearsed(prep, store, options, twin, keep, as_json)
        else:
            run_result = execute(prep, store, options)
    except RecordsNotStored as exc:  # the run's outcome still shows; then the error, exit 1
        if exc.run is not None:
            _show(exc.run, as_json, show_diff if show_diff is not None else dry_run, show_all)
        raise
    shown_diffs = show_diff if show_diff is not None else (dry_run or preview)
    _show(run_result, as_json, shown_diffs, show_all, store)
    if preview and not run_result.rehearsal_failed:
        echo(f"awaiting approval: runner approve {run_result.run_id} (or runner "
             f"reject {run_result.run_id})", err=as_json)
        sys.exit(0)
    sys.exit(run_result.exit_code)


def _check_flags(status_alone: bool, reason: str | None, no_approval: bool, dry_run: bool,
                 rehearse: str | None, keep: bool) -> None:
    """`runner run`'s options that only make sense together."""
    if status_alone:
        raise InputError("--status goes with --rerun RUN_ID", field="--status")
    if reason is not None and not no_approval:
        raise InputError("--reason goes with --no-approval", field="--reason")
    if keep and rehearse is None:
        raise InputError("--keep goes with --rehearse TWIN", field="--keep")
    if rehearse is not None and not rehearse.strip():
        raise InputError("--rehearse needs a twin's name (`runner twin up --name`)",
                         field="--rehearse")
    if no_approval and dry_run:
        raise InputError("--no-approval sends a change; --dry-run sends nothing: choose one",
                         field="--no-approval")


def _rehearsed(prep: Prepared, store: ResultsStore, options: RunOptions, twin: Twin,
               keep: bool, as_json: bool) -> RunResult:
    """`run --rehearse`: the twin first (its progress and outcome on stderr), then
    production if the rehearsal passed."""
    from runner.job.rehearse import rehearse

    echo(f"rehearsing on twin {twin.name} ({len(prep.hosts)} device(s), inventory "
         f"{twin.inventory})", err=True)
    production = options.on_device_done
    options.on_device_done = [Progress(len(prep.hosts))]

    def rehearsed(outcome: Rehearsal) -> None:
        options.on_device_done = production
        echo(rehearsal_text(outcome.to_json(), with_diffs=False), err=True)
        if outcome.passed:
            echo("running on production", err=True)

    return rehearse(prep, store, options, twin, keep=keep, on_rehearsed=rehearsed,
                    on_wait=lambda why: echo(f"{why} (Ctrl-C stops)", err=True))


def echo_run_json(run_result: RunResult, store: ResultsStore | None, *,
                  account: bool = True) -> None:
    """A finished run's JSON document, its records streamed from the store (the run
    itself keeps only a summary of each stored record): as `runner show --json` prints it
    (`account`: with its status and who did what), or the run's own form. When the store
    cannot be read, what this process knows (a record it slimmed says `"stored": true`)."""
    if store is not None:
        from runner.store.queries import run_chunks

        try:
            chunks = run_chunks(store, run_result.run_id, account=account)
        except RunnerError:  # the database went away since
            pass
        else:
            echo_json(chunks)
            return
    echo(json.dumps(run_result.to_json(), indent=2))


def _show(run_result: RunResult, as_json: bool, with_diffs: bool, show_all: bool,
          store: ResultsStore | None = None) -> None:
    if as_json:
        echo_run_json(run_result, store)
        return
    if run_result.rehearsal is not None:
        echo(rehearsal_text(run_result.rehearsal, with_diffs=with_diffs or
                            run_result.rehearsal_failed, show_all=show_all,
                            dry_run=run_result.dry_run) + "\n")
    if with_diffs:
        text = diffs(run_result)
        if text:
            echo(text + "\n")
    echo(run_table(run_result, show_all))


@click.command()
@click.argument("job_files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--templates", type=click.Path(path_type=Path), default=Path("templates"),
              show_default=True)
@click.option("-i", "--inventory", type=click.Path(path_type=Path),
              help="Also check the targets against this inventory.")
@click.pass_context
def validate(ctx: click.Context, job_files: tuple[Path, ...], templates: Path,
             inventory: Path | None) -> None:
    """Check job files without contacting any device, and blackouts.yml files (the blackout
    windows beside job files). A job's `after:` is checked against the jobs of its
    directory (an unknown parent or a workflow cycle is an error at its line). Exit 2 when
    one is invalid."""
    # A check runs once and exits: its imports (pydantic, the job's models) are collected
    # young and rarely, as a run's are (~0.01 s of its ~0.14 s of CPU, by the default
    # thresholds), not as they load.
    gc.set_threshold(*RUN_GC_THRESHOLD)
    from runner.job.blackouts import is_calendar, read_calendar
    from runner.job.load import directory_problem, load_job
    from runner.job.prepare import check_job, check_secret_files, prepare_job

    failed = False
    problems: dict[Path, dict[Path, InputError]] = {}  # by directory, when loaded whole
    for path in job_files:
        try:
            if is_calendar(path):
                count = len(read_calendar(path).windows)
                echo(f"{path}: ok ({count} blackout window{'s' * (count != 1)})")
                continue
            job = load_job(path)
            if inventory is not None:
                check_secret_files(prepare_job(job, inventory, templates),
                                   settings_of(ctx).secrets_dirs)
            else:
                check_job(job, templates)
            problem = directory_problem(job, problems)
            if problem is not None:  # named as the user named the file
                raise type(problem)(problem.message, path=path, line=problem.line,
                                    field=problem.field)
            echo(f"{path}: ok")
        except InputError as exc:
            echo(f"error: {exc}", err=True)
            failed = True
    sys.exit(2 if failed else 0)


@click.command()
@click.argument("kind", type=click.Choice(["job", "blackouts", "hosts", "defaults"]),
                default="job")
def schema(kind: str) -> None:
    """Print a JSON Schema (for editors): of job files (default), of blackouts.yml (the
    blackout windows beside the job files), of the inventory's hosts.yaml and groups.yaml
    (and containerlab's flat file), or of its defaults.yaml."""
    if kind == "job":
        from runner.job.spec import json_schema

        echo(json.dumps(json_schema(), indent=2))
        return
    if kind == "blackouts":
        from runner.job.blackouts import blackouts_schema

        echo(json.dumps(blackouts_schema(), indent=2))
        return
    from runner.inventory.files import inventory_schema

    echo(json.dumps(inventory_schema("hosts" if kind == "hosts" else "defaults"),
                          indent=2))


@click.command()
@click.option("-n", "--limit", type=int, default=20, show_default=True)
@click.option("--job", help="Only runs of this job.")
@click.option("--workflow", metavar="ID", help="Only the runs of this workflow run.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def history(ctx: click.Context, limit: int, job: str | None, workflow: str | None,
            as_json: bool) -> None:
    """List recent runs."""
    from runner.store.queries import RunFilter, run_rows

    rows = run_rows(_store(ctx), RunFilter(job=job, workflow=workflow), limit)
    if as_json:
        echo(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        echo("no runs yet")
        return
    out = [("RUN", "JOB", "STARTED", "STATUS", "DRY", "BY", "SUMMARY")]
    for r in rows:
        summary = " ".join(f"{k}={v}" for k, v in (r["summary"] or {}).items() if v)
        out.append((r["run_id"], r["job"], r["started"][:19], r["status"],
                    "yes" if r["dry_run"] else "", r.get("started_by") or "", summary))
    echo(table(out))


@click.command()
@click.argument("run_id")
@click.option("--host", help="Only this device, with its steps' output.")
@click.option("--failed", is_flag=True,
              help="Only the devices that did not end ok or changed (what --rerun runs).")
@click.option("--json", "as_json", is_flag=True)
@ALL_DEVICES
@click.pass_context
def show(ctx: click.Context, run_id: str, host: str | None, failed: bool,
         as_json: bool, show_all: bool) -> None:
    """Show one run (a unique prefix of its id is enough)."""
    from runner.store.queries import run_chunks, run_document, run_for_show, run_links

    if as_json and not failed and host is None:  # streamed: a run of any size
        echo_json(run_chunks(_store(ctx), run_id))
        return
    from runner.job.output import FULL_TABLE_UP_TO

    store = _store(ctx)
    # Only what is printed is read: a run of 100,000 devices prints at once.
    whole = host is None and not failed
    row, run_result, counts = run_for_show(
        store, run_id, host=host, steps=as_json or host is not None,
        statuses=[s for s in DeviceStatus if not s.success] if failed else None,
        failing_past=FULL_TABLE_UP_TO if whole and not show_all else None)
    if host is not None and not run_result.devices:
        raise InputError(f"run {run_result.run_id} has no device {host!r}")
    links = run_links(store, row)
    if as_json:
        echo(json.dumps(run_document(row, run_result, links), indent=2))
        return
    rerun = f"  rerun of {row['rerun_of']}" if row.get("rerun_of") else ""
    echo(f"status {row['status']}  started {row['started']}  finished "
         f"{row['finished']}{rerun}")
    for line in account_lines(row, links):
        echo(line)
    if row.get("error"):
        echo(f"error: {row['error']}")
    if run_result.rehearsal is not None:
        echo(rehearsal_text(run_result.rehearsal, show_all=show_all,
                            dry_run=run_result.dry_run))
    echo(run_table(run_result, show_all, counts if whole else None))
    for sent in row["notifications"] or []:
        outcome = "delivered" if sent["delivered"] else f"NOT delivered: {sent['error']}"
        echo(f"notified {sent['url']} ({', '.join(sent['events'])}): {outcome}")
    if host is not None:
        _echo_steps(run_result.devices[0])


def _echo_steps(device: DeviceResult) -> None:
    """`runner show --host`: each step of the device with its output, diff and parsed."""
    for step in device.steps:
        echo(f"\n== {step.name} ({step.kind})" + (" FAILED" if step.failed else "")
             + (f" {step.not_run}" if step.not_run else ""))
        for label, value in (("output", step.output), ("diff", step.diff),
                             ("error", step.error)):
            if value:
                echo(f"-- {label}\n{value.rstrip()}")
        if step.parsed is not None:
            echo(f"-- parsed\n{json.dumps(step.parsed, indent=2)}")


@click.command()
@click.argument("run_id")
@click.option("-i", "--inventory", type=click.Path(path_type=Path),
              help="Inventory (default: the one the preview used).")
@click.option("--templates", type=click.Path(path_type=Path),
              help="Templates directory (default: the one the preview used).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@engine_option
@click.option("--shard-size", type=click.IntRange(1, 100_000), default=50, show_default=True,
              help="Hosts per shard with --engine celery.")
@click.option("--processes", type=click.IntRange(0, 256), default=0, show_default=True,
              help="Local engine processes; 0: one per usable core when the run is large.")
@OVERRIDE_BLACKOUT
@ALL_DEVICES
@click.pass_context
def approve(ctx: click.Context, run_id: str, inventory: Path | None, templates: Path | None,
            as_json: bool, engine: EngineChoice, shard_size: int, processes: int,
            override_blackout: str | None, show_all: bool) -> None:
    """Carry out the change that preview RUN_ID showed (status awaiting_approval): the job
    as previewed, on the devices it would change; a device whose config moved since the
    preview is skipped (ConfigDrift). Exit codes as `runner run`."""
    from runner.job.approval import approve as carry_out
    from runner.job.approval import who
    from runner.job.run import RunOptions, blackout_override

    store = _store(ctx)
    _, preview = store.get_run(run_id)
    progress = Progress(len([d for d in preview.devices if d.status is DeviceStatus.CHANGED]))
    me = who()
    result = carry_out(store, run_id, RunOptions(
        settings=settings_of(ctx), on_device_done=[progress], engine=engine,
        shard_size=shard_size, processes=processes or None,
        blackout_override=blackout_override(override_blackout, me)), inventory, templates,
        by=me)
    if as_json:
        echo_run_json(result, store, account=False)
    else:
        rehearsed = preview.rehearsal
        if rehearsed is not None:
            echo(f"the preview was rehearsed on twin {rehearsed.get('twin')} (twin run "
                 f"{rehearsed.get('run_id')}): passed; `runner show {preview.run_id}` has "
                 "the evidence")
        echo(f"approved {preview.run_id} by {result.started_by}: carried out as run "
             f"{result.run_id}\n{run_table(result, show_all)}")
    sys.exit(result.exit_code)


@click.command()
@click.argument("run_id")
@click.pass_context
def cancel(ctx: click.Context, run_id: str) -> None:
    """Stop a running run, whichever process or machine runs it: that process sees the
    request within seconds; devices in progress end as interrupted, the others skipped."""
    from runner.job.approval import who

    store = _store(ctx)
    full = store.resolve(run_id)
    if not store.request_cancel(full, who()):
        status = store.get_run(full)[0]["status"]
        raise InputError(f"run {full} is not running (it is {status})")
    echo(f"cancel requested for run {full}")


@click.command()
@click.argument("run_id")
@click.option("--reason", help="Why (recorded with the decision).")
@click.pass_context
def reject(ctx: click.Context, run_id: str, reason: str | None) -> None:
    """Say no to the change that preview RUN_ID showed; nothing is sent."""
    from runner.job.approval import reject as say_no

    echo(f"rejected {say_no(_store(ctx), run_id, reason)}")
