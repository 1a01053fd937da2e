"""`runner compliance` (each device's latest compliance per feature, and its history) and
`runner remediate` (a compliance run's drift fixed through the normal pipeline)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from runner.cli_common import ALL_DEVICES, echo, engine_option, results_store, settings_of
from runner.errors import InputError
from runner.job.commands import echo_run_json
from runner.job.output import Progress, diffs, run_table, table
from runner.records import RunResult
from runner.vocab import ComplianceState, EngineChoice, StepKind

INVENTORY_HELP = "Nornir inventory: a directory with hosts.yaml (+ groups, defaults) or a file."


@click.command()
@click.option("--feature", help="Only this feature.")
@click.option("--status", type=click.Choice([s.value for s in ComplianceState]),
              help="Only devices in this state.")
@click.option("--host", help="Only this device.")
@click.option("--history", is_flag=True,
              help="The changes instead: when each device drifted and was fixed, by which "
                   "run (newest first).")
@click.option("-n", "--limit", type=click.IntRange(1, 100_000), default=200,
              show_default=True, help="With --history: at most this many changes.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def compliance(ctx: click.Context, feature: str | None, status: str | None,
               host: str | None, history: bool, limit: int, as_json: bool) -> None:
    """Each device's latest compliance per feature, as the last run of a compliance job
    found it (or, with --history, its changes). Exit 0: every device listed is compliant;
    3: some are not (drift)."""
    from runner.store import compliance as store_compliance
    from runner.store.compliance import compliance_document

    store = results_store(ctx)
    if history:
        events = store_compliance.history(store, host, feature, limit)
        if as_json:
            echo(json.dumps(events, indent=2))
            return
        listed = [("AT", "DEVICE", "FEATURE", "EVENT", "NOW", "RUN", "REMEDIATES")]
        listed += [(e["at"][:19], e["host"], e["feature"], e["event"], e["status"],
                    e["run_id"], e["remediates"] or "") for e in events]
        echo(table(listed) if events else "no compliance checks yet")
        return
    where = store_compliance.StateFilter(feature, ComplianceState(status) if status else None,
                                         host)
    rows = store_compliance.latest(store, where)
    drift = any(r["status"] == ComplianceState.NON_COMPLIANT for r in rows)
    if as_json:
        echo(json.dumps(compliance_document(rows), indent=2))
        sys.exit(3 if drift else 0)
    if not rows:
        echo("no compliance checks yet" if where == store_compliance.StateFilter()
             else "no device matches")
        return
    out = [("DEVICE", "FEATURE", "STATUS", "MISSING", "EXTRA", "SINCE", "CHECKED", "RUN")]
    out += [(r["host"], r["feature"], r["status"], str(r["missing_count"] or 0),
             str(r["extra_count"] or 0), r["since"][:19], r["checked"][:19], r["run_id"])
            for r in rows]
    echo(table(out))
    summary = compliance_document(rows)["summary"]
    echo("\n" + "  ".join(f"{name}: {c['compliant']} compliant, "
                          f"{c['non_compliant']} non-compliant"
                          for name, c in summary.items()))
    sys.exit(3 if drift else 0)


@click.command()
@click.argument("run_id")
@click.option("--feature", "features", multiple=True,
              help="Only this feature (again for more; default: every non-compliant one).")
@click.option("--host", "hosts", multiple=True,
              help="Only this device (again for more; default: every non-compliant one).")
@click.option("--dry-run", is_flag=True,
              help="Preview each device's remediation (the commands, the diff, the rollback) "
                   "and send nothing.")
@click.option("--job", "job_file", type=click.Path(path_type=Path),
              help="The compliance job's file (default: the one the run used).")
@click.option("-i", "--inventory", type=click.Path(path_type=Path), default=Path("inventory"),
              show_default=True, help=INVENTORY_HELP)
@click.option("--templates", type=click.Path(path_type=Path), default=Path("templates"),
              show_default=True, help="Directory of Jinja2 and parser templates.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option("--no-approval", "no_approval", is_flag=True,
              help="For a job whose schedule says approval: required: remediate now, "
                   "without an approved preview (recorded as an override with --reason).")
@click.option("--reason", metavar="TEXT", help="Why (recorded with --no-approval).")
@engine_option
@ALL_DEVICES
@click.pass_context
def remediate(ctx: click.Context, run_id: str, features: tuple[str, ...],
              hosts: tuple[str, ...], dry_run: bool, job_file: Path | None, inventory: Path,
              templates: Path, as_json: bool, no_approval: bool, reason: str | None,
              engine: EngineChoice, show_all: bool) -> None:
    """Fix the drift compliance run RUN_ID found: on each non-compliant device, the
    remediation hier_config builds against its config now (adds, `no` lines, section
    exits), pushed with the job's rollout and checks, rolled back on failure, then checked
    again (NotCompliant and rolled back if it still is not); previewed for approval when
    the job's schedule requires it. The run records `remediates: RUN_ID`. Exit codes as
    `runner run`."""
    from runner.job.approval import gate, override, who
    from runner.job.remediate import plan
    from runner.job.run import RunOptions, execute

    if reason is not None and not no_approval:
        raise InputError("--reason goes with --no-approval", field="--reason")
    if no_approval and dry_run:
        raise InputError("--no-approval sends a change; --dry-run sends nothing: choose one",
                         field="--no-approval")
    store = results_store(ctx)
    made = plan(store, run_id, inventory, templates, list(features), list(hosts), job_file)
    for host, why in made.skipped.items():
        if hosts:
            echo(f"{host}: not remediated ({why} in run {made.run_id} for "
                 f"{', '.join(made.features)})", err=True)
    if made.prepared is None:
        echo(f"run {made.run_id}: no non-compliant device to remediate", err=True)
        sys.exit(0)
    spec = made.prepared.job.spec
    if no_approval and not spec.needs_approval:
        raise InputError(f"job {spec.name!r} needs no approval: --no-approval overrides "
                         "nothing", field="--no-approval")
    me = who()
    options = RunOptions(settings=settings_of(ctx), dry_run=dry_run, engine=engine,
                         remediates=made.run_id, started_by=me,
                         on_device_done=[Progress(len(made.prepared.hosts))],
                         override=override(me, reason) if no_approval else None)
    preview = gate(spec, options)
    if preview:
        echo(f"job {spec.name} needs approval (schedule.approval: required): this run "
             "previews the remediation and sends nothing", err=True)
    result = execute(made.prepared, store, options)
    if as_json:
        echo_run_json(result, store, account=False)
    else:
        _show(result, dry_run or preview, show_all, made.run_id, made.features)
    if preview:
        echo(f"awaiting approval: runner approve {result.run_id} (or runner reject "
             f"{result.run_id})", err=as_json)
        sys.exit(0)
    sys.exit(result.exit_code)


def _show(result: RunResult, previewed: bool, show_all: bool, remediated: str,
          features: list[str]) -> None:
    """A remediation run as people read it; a preview with what an approver reads: each
    device's commands line by line, the diff they would make, the rollback."""
    if previewed:
        for device in result.devices:
            for step in device.steps:
                if step.kind is StepKind.CONFIG and step.output:
                    echo(f"--- {device.host}: {step.name}: would send\n"
                         f"{step.output.rstrip()}")
        shown = diffs(result)
        if shown:
            echo(shown + "\n")
    echo(f"remediates run {remediated} ({', '.join(features)})")
    echo(run_table(result, show_all))
