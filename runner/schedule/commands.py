"""`runner serve`, `runner schedule list|occurrences|run` and `runner workflow list|show`."""

from __future__ import annotations

import json
import logging
import signal
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import click

from runner.cli_common import ALL_DEVICES, echo, engine_option, results_store, settings_of
from runner.errors import InputError
from runner.job.commands import OVERRIDE_BLACKOUT
from runner.job.notify import DEFAULT_EVENTS, NotifyTarget, url_problem
from runner.job.output import Progress, rehearsal_text, run_table, table
from runner.records import now_iso
from runner.vocab import Approval, EngineChoice, NotifyEvent

# The scheduler, its store and the run machinery load as a command runs, not for --help.
if TYPE_CHECKING:
    from runner.schedule.server import Scheduler
    from runner.store.results import ResultsStore
    from runner.store.schedule import ScheduleStore

JOBS = click.option("--jobs", "jobs_dir", type=click.Path(path_type=Path), default=Path("jobs"),
                    show_default=True, help="Directory of job files.")
INVENTORY = click.option("-i", "--inventory", type=click.Path(path_type=Path),
                         default=Path("inventory"), show_default=True)
TEMPLATES = click.option("--templates", type=click.Path(path_type=Path),
                         default=Path("templates"), show_default=True)
STORE = click.option("--store", "store_url", metavar="URL",
                     help="Schedule state database (default: the results database).")


def _stores(ctx: click.Context, store_url: str | None) -> tuple[ResultsStore, ScheduleStore]:
    from runner.store.schedule import ScheduleStore

    results = results_store(ctx)
    return results, ScheduleStore(store_url or results.url)


@click.command()
@JOBS
@INVENTORY
@TEMPLATES
@STORE
@click.option("--max-runs", type=int, default=4, show_default=True,
              help="Jobs running at once.")
@click.option("--stop-grace", type=float, default=60, show_default=True,
              help="Seconds running jobs get to finish on SIGTERM before interruption.")
@engine_option
@click.option("--shard-size", type=click.IntRange(1, 100_000), default=50, show_default=True)
@click.option("--notify", "notify_urls", metavar="URL", multiple=True,
              help="Apprise URL notified about runs of jobs that name no `notify:` targets "
                   "(repeatable).")
@click.option("--notify-on", type=click.Choice([e.value for e in NotifyEvent]), multiple=True,
              help="Events that send the --notify targets (repeatable; default: "
                   f"{', '.join(DEFAULT_EVENTS)}).")
@click.option("--metrics-port", type=click.IntRange(1, 65535),
              help="Serve Prometheus metrics (as runner web's /metrics) on 127.0.0.1:PORT.")
@click.option("--listen", metavar="HOST:PORT",
              help="Accept signed webhooks, POST /hooks/JOB, for jobs with a "
                   "trigger.webhook (every server may listen: each delivery runs once).")
@click.option("--syslog", "syslog_at", metavar="HOST:PORT",
              help="Receive syslog (UDP and TCP) for jobs with a trigger.syslog rule.")
@click.option("--twin", metavar="NAME",
              help="The twin that jobs whose schedule says `rehearse: required` rehearse on "
                   "(default: RUNNER_TWIN, else `twin`).")
@click.pass_context
def serve(ctx: click.Context, jobs_dir: Path, inventory: Path, templates: Path,
          store_url: str | None, max_runs: int, stop_grace: float, engine: EngineChoice,
          shard_size: int, notify_urls: tuple[str, ...], notify_on: tuple[str, ...],
          metrics_port: int | None, listen: str | None, syslog_at: str | None,
          twin: str | None) -> None:
    """Run the scheduled jobs in --jobs until SIGTERM; SIGHUP or any edit reloads them.
    Also: workflow steps (`after:`), webhooks (--listen), syslog rules (--syslog),
    freshness backups, and blackout windows (blackouts.yml in --jobs)."""
    if not jobs_dir.is_dir():
        raise InputError("jobs directory not found", path=jobs_dir)
    # A stop asked while serve starts (its metrics may already answer) is kept and obeyed
    # once the scheduler is up, a clean stop rather than death by the default handler.
    early: list[int] = []
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda got, _frame: early.append(got))
    notify = notify_targets(notify_urls, notify_on)
    logging.getLogger("runner").setLevel(logging.INFO)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    results, store = _stores(ctx, store_url)
    if metrics_port is not None:
        from runner.store.metrics import serve_metrics

        serve_metrics(metrics_port, results, store, settings_of(ctx))
    from runner.schedule.server import Scheduler

    scheduler = Scheduler(jobs_dir, store, results, inventory, templates, max_runs=max_runs,
                          stop_grace=stop_grace, engine=engine, shard_size=shard_size,
                          settings=settings_of(ctx), notify=notify,
                          twin=twin or settings_of(ctx).twin)
    listeners(scheduler, listen, syslog_at)
    sys.exit(scheduler.serve(early))


def listeners(scheduler: Scheduler, listen: str | None, syslog_at: str | None) -> None:
    """--listen and --syslog, bound now (a taken address is an error, exit 2), started
    with the server."""
    from runner.schedule.intake import Devices, accept_webhook, find_hook, syslog_handler
    from runner.schedule.syslog import address

    log = logging.getLogger("runner.serve")
    if listen is not None:
        from runner.schedule.hooks import HookServer

        host, port = address(listen, "--listen")
        hooks = HookServer(host, port, lambda name: find_hook(scheduler, name),
                           lambda delivery: accept_webhook(scheduler, delivery),
                           lambda: scheduler.clock.now().timestamp())
        scheduler.services.append(hooks)
        log.info("webhooks on http://%s/hooks/JOB", hooks.address)
    if syslog_at is not None:
        from runner.schedule.syslog import SyslogListener

        host, port = address(syslog_at, "--syslog")
        scheduler.services.append(SyslogListener(
            host, port, syslog_handler(scheduler, Devices(scheduler.inventory))))
        log.info("syslog on %s:%d (UDP and TCP)", host, port)


def notify_targets(urls: tuple[str, ...], events: tuple[str, ...]) -> list[NotifyTarget]:
    """--notify URLs (checked now; errors never quote them) with the --notify-on events."""
    if events and not urls:
        raise InputError("--notify-on needs a --notify URL to apply to", field="--notify-on")
    on = [NotifyEvent(e) for e in events] or list(DEFAULT_EVENTS)
    for url in urls:
        problem = url_problem(url)
        if problem:
            raise InputError(problem, field="--notify")
    return [NotifyTarget(url=url, on=on) for url in urls]


@click.group()
def schedule() -> None:
    """Scheduled jobs: what runs when, and firing one now."""


@schedule.command(name="list")
@JOBS
@STORE
@click.option("-n", "--next", "count", type=click.IntRange(0, 1000), default=3,
              show_default=True, help="Fire times to show per job.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document (a list of jobs).")
@click.pass_context
def list_(ctx: click.Context, jobs_dir: Path, store_url: str | None, count: int,
          as_json: bool) -> None:
    """Each job `runner serve` starts by itself (a schedule, `after:`, a webhook or syslog
    trigger, freshness): when, in words; its next starts outside blackout windows (an
    occurrence inside one skipped, or moved to the window's end); the window holding it
    now; its last run."""
    results, store = _stores(ctx, store_url)
    from runner.schedule.listing import schedule_list

    listed = schedule_list(jobs_dir, store, results, count,
                           warn=lambda message: None if message.startswith(
                               "invalid job file") or "already used" in message
                           else echo(f"warning: {message}", err=True))
    from runner.schedule.health import invalid_files, scheduler_status

    state = scheduler_status(store)
    for bad in invalid_files(jobs_dir, store, state):  # with what serve does with each
        echo(f"warning: invalid job file: {bad['error']} ({bad['serve']})", err=True)
    if as_json:
        echo(json.dumps(listed, indent=2))
        return
    rows = [("JOB", "WHEN", "NEXT", "BLACKOUT", "LAST RUN")]
    for item in listed:
        zone = ZoneInfo(item["timezone"])
        times = [datetime.fromisoformat(t).astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z")
                 for t in item["next"]]
        last = item["last_run"]
        last_text = f"{last['started'][:19]} {last['status']} ({last['run_id']})" if last \
            else "never"
        windows = item["blackouts"]
        held = "; ".join(w["text"] + (" (some devices)" if w["devices_only"] else "")
                         for w in windows["now"])
        if not held and windows["next"]:
            start = datetime.fromisoformat(windows["next"]["start"]).astimezone(zone)
            held = f"next: {windows['next']['window']} from {start:%Y-%m-%d %H:%M %Z}"
        when = "on events" if item["schedule"] is None else "no more"
        if item["paused"]:
            when, times = f"paused by {item['paused']['paused_by']}", []
        rows.append((item["job"], item["when"], ", ".join(times) or when, held or "-",
                     last_text))
    echo(table(rows) if len(rows) > 1 else f"no scheduled jobs in {jobs_dir}")
    if not state["running"] and len(rows) > 1:
        echo(f"note: nothing fires until `runner serve` runs ({state['detail']})",
             err=True)


@schedule.command(name="pause")
@click.argument("name")
@JOBS
@STORE
@click.option("--reason", help="Why (recorded, shown with each skipped occurrence).")
@click.pass_context
def pause_(ctx: click.Context, name: str, jobs_dir: Path, store_url: str | None,
           reason: str | None) -> None:
    """Pause scheduled job NAME: every `runner serve` on this store records its
    occurrences as skipped (saying who paused it and why) until `runner schedule resume`."""
    from runner.job.approval import who
    from runner.schedule.health import pause

    _, store = _stores(ctx, store_url)
    done = pause(jobs_dir, store, name, who(), reason)
    echo(f"paused {done['job']} (by {done['paused_by']} at {done['paused_at']})")


@schedule.command(name="resume")
@click.argument("name")
@STORE
@click.pass_context
def resume_(ctx: click.Context, name: str, store_url: str | None) -> None:
    """Resume paused scheduled job NAME: its next occurrence fires as usual."""
    from runner.schedule.health import resume

    _, store = _stores(ctx, store_url)
    resume(store, name)
    echo(f"resumed {name}")


@schedule.command(name="status")
@JOBS
@STORE
@click.option("--json", "as_json", is_flag=True, help="One JSON document (GET /api/scheduler "
              "with the paused schedules and invalid job files).")
@click.pass_context
def status_(ctx: click.Context, jobs_dir: Path, store_url: str | None, as_json: bool) -> None:
    """Whether a scheduler (`runner serve`) is running: its lease holder and last
    heartbeat; paused schedules; invalid job files and what serve does with each."""
    from runner.schedule.health import invalid_files, scheduler_status

    _, store = _stores(ctx, store_url)
    state = scheduler_status(store)
    document = {**state, "paused": list(store.paused().values()),
                "invalid": invalid_files(jobs_dir, store, state)}
    if as_json:
        echo(json.dumps(document, indent=2))
        return
    echo(("running: " if state["running"] else "NOT running: ") + state["detail"]
         + (f" (last heartbeat {state['heartbeat']})" if state["heartbeat"] else ""))
    for row in document["paused"]:
        echo(f"paused: {row['job']} by {row['paused_by']} at {row['paused_at']}"
             + (f": {row['reason']}" if row["reason"] else ""))
    for bad in document["invalid"]:
        echo(f"invalid: {bad['error']}\n  {bad['serve']}")


@schedule.command(name="occurrences")
@click.argument("name")
@STORE
@click.option("-n", "--limit", type=click.IntRange(1, 1000), default=30, show_default=True,
              help="Occurrences to show, newest first.")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON document (as GET /api/schedules/NAME/occurrences).")
@click.pass_context
def occurrences_(ctx: click.Context, name: str, store_url: str | None, limit: int,
                 as_json: bool) -> None:
    """Job NAME's last occurrences: what became of each (done, failed, missed, skipped, or
    awaiting approval, then approved, rejected or expired, then the carried-out run's
    outcome), its run and why."""
    results, store = _stores(ctx, store_url)
    from runner.store.occurrences import recent_occurrences

    found = recent_occurrences(store, results, name, limit)
    if as_json:
        echo(json.dumps(found, indent=2))
        return
    if not found:
        echo(f"no occurrences of {name} recorded")
        return
    rows = [("OCCURRENCE", "TRIGGER", "STATUS", "RUN", "CARRIED OUT BY", "BY", "REASON")]
    for item in found:
        decision = item["decision"] or {}
        rows.append((item["occurrence"], item["trigger"], item["status"],
                     item["run_id"] or "", item["carried_out_by"] or "",
                     decision.get("by") or item["by"] or "",
                     (item["reason"] or decision.get("reason") or "")[:80]))
    echo(table(rows))


@schedule.command(name="run")
@click.argument("name")
@JOBS
@INVENTORY
@TEMPLATES
@OVERRIDE_BLACKOUT
@ALL_DEVICES
@click.pass_context
def run_now(ctx: click.Context, name: str, jobs_dir: Path, inventory: Path,
            templates: Path, override_blackout: str | None, show_all: bool) -> None:
    """Fire job NAME now (outside its schedule), in the foreground; inside a blackout
    window only with --override-blackout REASON (recorded)."""
    from runner.job.prepare import prepare
    from runner.job.run import RunOptions, blackout_override, check_override, execute
    from runner.schedule.jobsdir import JobsDir

    jobs = JobsDir(jobs_dir)
    jobs.reload()
    if name not in jobs.jobs:
        raise InputError(f"no scheduled job named {name!r} in {jobs_dir} "
                         f"(scheduled: {', '.join(sorted(jobs.jobs)) or 'none'})")
    prep = prepare(jobs.jobs[name].job.path, inventory, templates)
    results = results_store(ctx)
    schedule = prep.job.spec.schedule
    preview = schedule is not None and schedule.approval is Approval.REQUIRED
    from runner.job.approval import who

    me = who()
    options = RunOptions(
        settings=settings_of(ctx), occurrence=f"{name}@manual-{now_iso()}",
        on_device_done=[Progress(len(prep.hosts))], started_by=me,
        preview_window=schedule.approval_seconds if preview and schedule else None,
        blackout_override=blackout_override(override_blackout, me))
    check_override(prep, options)
    twin = schedule.twin(options.settings.twin) if schedule is not None else None
    if twin is not None:
        from runner.job.rehearse import unattended
        from runner.lab.twin.rehearsal import open_twin

        result = unattended(prep, results, options, twin,
                            lambda n: open_twin(options.settings, n))
        echo(rehearsal_text(result.rehearsal or {}, show_all=show_all))
    else:
        result = execute(prep, results, options)
    echo(run_table(result, show_all))
    if preview and not result.rehearsal_failed:
        echo(f"awaiting approval: runner approve {result.run_id} (or runner reject "
             f"{result.run_id})")
        sys.exit(0)
    sys.exit(result.exit_code)


@click.group()
def workflow() -> None:
    """Workflow runs: an occurrence of a job that others follow (`after:`) and its steps."""


@workflow.command(name="list")
@STORE
@click.option("--job", help="Only workflow runs started by this job.")
@click.option("-n", "--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON document (as GET "
              "/api/workflows).")
@click.pass_context
def workflow_list(ctx: click.Context, store_url: str | None, job: str | None, limit: int,
                  as_json: bool) -> None:
    """Recent workflow runs, newest first: each with its steps' outcomes."""
    from runner.schedule.listing import workflow_documents

    results, store = _stores(ctx, store_url)
    found = workflow_documents(store, results, limit, job)
    if as_json:
        echo(json.dumps(found, indent=2))
        return
    if not found:
        echo("no workflow runs recorded")
        return
    rows = [("WORKFLOW", "ORIGIN", "STARTED", "STATUS", "STEPS")]
    for item in found:
        steps = ", ".join(f"{s['job']}={s['outcome'] or s['status']}" for s in item["steps"])
        rows.append((item["id"], item["origin"], item["started"][:19], item["status"],
                     steps))
    echo(table(rows))


@workflow.command(name="show")
@click.argument("workflow_id")
@STORE
@click.option("--json", "as_json", is_flag=True, help="One JSON document (as GET "
              "/api/workflows/ID).")
@click.pass_context
def workflow_show(ctx: click.Context, workflow_id: str, store_url: str | None,
                  as_json: bool) -> None:
    """One workflow run (a unique prefix of its id is enough): each step, what it
    waited for, what became of it and why, its run."""
    from runner.schedule.listing import workflow_document

    results, store = _stores(ctx, store_url)
    document = workflow_document(store, results, workflow_id)
    if as_json:
        echo(json.dumps(document, indent=2))
        return
    echo(f"workflow {document['id']}  {document['status']}  started "
         f"{document['started']} by {document['origin']}"
         + (f"  finished {document['finished']}" if document["finished"] else ""))
    rows = [("STEP", "AFTER", "STATUS", "OUTCOME", "RUN", "WHY")]
    for step in document["steps"]:
        after = ", ".join(f"{p['job']} ({p['when']})" for p in step["after"]) or "-"
        if len(step["after"]) > 1:
            after = f"{step['join']}: {after}"
        rows.append((step["job"], after, step["status"], step["outcome"] or "",
                     step["run_id"] or "", (step["reason"] or "")[:80]))
    echo(table(rows))
