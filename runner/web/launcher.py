"""Runs started from the web: jobs found by name in the jobs directory, every input checked
before the request returns, then run in a background thread through the same path as
`runner run`; cancellable (and approvals carried out) the same way."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from runner.errors import Conflict, InputError, NotFound
from runner.job.load import JobFile, load_job
from runner.job.prepare import Prepared, prepare_job
from runner.job.run import RunOptions, execute, new_run_id, rerun_targets
from runner.records import RunResult, now_iso
from runner.store.results import ResultsStore
from runner.vocab import DeviceStatus, RunStatus
from runner.web.config import WebConfig

log = logging.getLogger("runner.web")
START_TIMEOUT_S = 30.0  # how long a request waits for its run to be recorded


@dataclass(frozen=True)
class JobEntry:
    name: str
    path: Path
    description: str
    changes_config: bool
    scheduled: bool
    needs_approval: bool  # its schedule says approval: required: "run" previews


@dataclass(frozen=True)
class Started:
    """A run started from the web: its id, and whether it is a dry run and, of those, a
    preview that waits for approval (a real run of a job that needs approval)."""

    run_id: str
    dry_run: bool
    preview: bool


@dataclass
class Pending:
    """A run accepted whose record comes after its rehearsal on a twin: what its page and
    the API say meanwhile (status running; production not contacted yet)."""

    run_id: str
    job: str
    twin: str
    hosts: int
    started: str
    dry_run: bool
    state: str = ""  # what it does now: waiting for the twin, rehearsing on it
    accepted: threading.Event = field(default_factory=threading.Event)

    def now(self, state: str) -> None:
        self.state = state
        self.accepted.set()

    def to_json(self) -> dict[str, Any]:
        """The run's progress document while it is rehearsed (`/api/runs/ID/progress`)."""
        return {"run_id": self.run_id, "job": self.job, "status": str(RunStatus.RUNNING),
                "dry_run": self.dry_run, "started": self.started, "finished": None,
                "total": self.hosts, "done": 0, "summary": {},
                "rehearsal": {"twin": self.twin, "state": self.state or "starting",
                              "production_contacted": False}}


def job_files(jobs_dir: Path) -> list[Path]:
    from runner.job.load import job_files as files

    return files(jobs_dir)


class _Announcing:
    """The results store, telling the launcher when the run's row exists."""

    def __init__(self, store: ResultsStore) -> None:
        self._store = store
        self.started = threading.Event()
        self.on_start: Callable[[], None] | None = None

    def start_run(self, run: RunResult, hosts: list[str] | None = None,
                  decision: dict[str, Any] | None = None) -> None:
        self._store.start_run(run, hosts, decision)
        self.started.set()
        if self.on_start is not None:
            self.on_start()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def _executing(prep: Prepared, store: _Announcing, options: RunOptions
               ) -> tuple[Callable[[], RunResult], Pending | None]:
    """The run, rehearsed on its twin first when the job's schedule says `rehearse:` (as
    from every entry point; a twin that is not up fails it as rehearsal_failed); with it,
    for a rehearsed run, what to show until its record exists (after the rehearsal)."""
    schedule = prep.job.spec.schedule
    twin = schedule.twin(options.settings.twin) if schedule is not None else None
    results = cast(ResultsStore, store)
    if twin is None:
        return (lambda: execute(prep, results, options)), None
    from runner.job.rehearse import unattended
    from runner.lab.twin.rehearsal import open_twin

    assert options.run_id is not None
    pending = Pending(options.run_id, prep.job.spec.name, twin, len(prep.hosts), now_iso(),
                      options.dry_run)
    return (lambda: unattended(
        prep, results, options, twin, lambda name: open_twin(options.settings, name),
        on_wait=pending.now,
        on_begin=lambda: pending.now("the rehearsal is running on the twin"))), pending


class Launcher:
    def __init__(self, config: WebConfig, store: ResultsStore) -> None:
        self.config = config
        self.store = store
        self.pool = ThreadPoolExecutor(max_workers=config.max_runs,
                                       thread_name_prefix="web-run")
        self.cancels: dict[str, threading.Event] = {}
        self.lock = threading.Lock()
        self.futures: set[Future[None]] = set()
        self.pending: dict[str, Pending] = {}  # rehearsed runs not recorded yet

    # -- jobs -------------------------------------------------------------------------------

    def jobs(self) -> list[JobEntry]:
        """The valid job files of the jobs directory (invalid ones are left out)."""
        out = []
        for path in job_files(self.config.jobs_dir):
            try:
                job = load_job(path)
            except InputError:
                continue
            spec = job.spec
            out.append(JobEntry(spec.name, path, spec.description,
                                spec.changes_config,
                                spec.schedule is not None, spec.needs_approval))
        return out

    def find(self, name: str) -> JobFile:
        """A job of the jobs directory by its name (or its file's name without .yml)."""
        by_stem = None
        for path in job_files(self.config.jobs_dir):
            try:
                job = load_job(path)
            except InputError as exc:
                if path.stem == name:
                    raise InputError(f"job {name!r}: {exc}", field="job") from None
                continue
            if job.spec.name == name:
                return job
            if path.stem == name:
                by_stem = job
        if by_stem is not None:
            return by_stem
        known = ", ".join(j.name for j in self.jobs()) or "none"
        raise NotFound(f"no job named {name!r} in {self.config.jobs_dir} (jobs: {known})",
                       field="job")

    def needs_approval(self, job_name: str) -> bool | None:
        """Whether the job (as its file says now) needs approval; None if it is gone."""
        try:
            return self.find(job_name).spec.needs_approval
        except InputError:
            return None

    def actions(self, head: dict[str, Any], counts: dict[str, int],
                needs_approval: bool | None = None) -> list[str]:
        """What an operator may do with a run now (the run page's buttons, the API's
        `actions`): cancel a running run; approve (when it previewed a change) or reject a
        preview awaiting approval; run a plain dry run for real on its devices (a preview
        for a job that needs approval); rerun a finished run's failed devices. A decided
        preview (approved, rejected, expired) offers nothing. `needs_approval`: the job's,
        when the caller knows it already."""
        status = head["status"]
        if status == RunStatus.RUNNING:
            return ["cancel"]
        if status == RunStatus.AWAITING_APPROVAL:
            deadline = head.get("approval_deadline") or ""
            if deadline <= now_iso():
                return []  # expired: `runner serve` (or the next decision) records it
            return (["approve"] if counts.get(DeviceStatus.CHANGED) else []) + ["reject"]
        if head.get("approval_deadline") or status in (
                RunStatus.APPROVED, RunStatus.REJECTED, RunStatus.EXPIRED):
            return []  # a preview, decided: nothing of it may be run
        if status == RunStatus.REHEARSAL_FAILED:
            return []  # the twin said no: running it here would skip the rehearsal
        if needs_approval is None:
            needs_approval = self.needs_approval(head["job"])
        if needs_approval is None:
            return []  # the job file is gone (or invalid) now
        if head.get("dry_run"):
            return ["run"]
        failed = sum(n for s, n in counts.items() if not DeviceStatus(s).success)
        return ["rerun"] if failed else []

    # -- runs -------------------------------------------------------------------------------

    def start(self, job_name: str, *, dry_run: bool, by: str, limit: str | None = None,
              rerun_of: str | None = None, statuses: list[DeviceStatus] | None = None,
              no_approval: bool = False, reason: str | None = None,
              override_blackout: str | None = None) -> Started:
        """Check every input, start the run in the background; its run id once recorded.
        `by`: who starts it (recorded). `rerun_of`: only that run's devices that did not end
        ok or changed (or ended in `statuses`). A real run of a job that needs approval is
        a preview awaiting approval, unless `no_approval` (the caller checked the role:
        recorded as an override with `reason`). Inside a blackout window the run is
        refused (400 naming it) unless `override_blackout` says why (recorded)."""
        from runner.job.approval import gate, override
        from runner.job.run import blackout_override, check_override

        job = self.find(job_name)
        only = None
        if rerun_of is not None:
            rerun_of, only = rerun_targets(self.store, rerun_of, job.spec.name, statuses,
                                           field="rerun")
            if not only:
                raise Conflict(f"run {rerun_of}: no device to run again")
        elif statuses:
            raise InputError("statuses go with rerun", field="statuses")
        if no_approval and dry_run:
            raise InputError("no_approval sends a change; dry_run sends nothing: choose one",
                             field="no_approval")
        if no_approval and not job.spec.needs_approval:
            raise InputError(f"job {job.spec.name!r} needs no approval: no_approval "
                             "overrides nothing", field="no_approval")
        prep = prepare_job(job, self.config.inventory, self.config.templates, limit or None,
                           only, self.config.settings.kept_inventories)
        run_id = new_run_id()
        store = _Announcing(self.store)
        options = RunOptions(settings=self.config.settings, dry_run=dry_run, run_id=run_id,
                             engine=self.config.engine, started_by=by, rerun_of=rerun_of,
                             override=override(by, reason) if no_approval else None,
                             blackout_override=blackout_override(override_blackout, by,
                                                                 "override_blackout"))
        preview = gate(job.spec, options)
        check_override(prep, options, field="override_blackout")
        self._launch(run_id, options, store, *_executing(prep, store, options))
        return Started(run_id, dry_run or preview, preview)

    def remediate(self, run_id: str, *, by: str, features: list[str] | None = None,
                  hosts: list[str] | None = None, dry_run: bool = False) -> Started:
        """Remediate a compliance run's drift (`runner remediate`) in the background: every
        name checked first; a job that needs approval makes a preview. Conflict when no
        device of it is out of compliance with those features."""
        from runner.job.approval import gate
        from runner.job.remediate import plan

        made = plan(self.store, run_id, self.config.inventory, self.config.templates,
                    features, hosts)
        if made.prepared is None:
            raise Conflict(f"run {made.run_id}: no device is out of compliance with "
                           f"{', '.join(made.features)}: nothing to remediate")
        prep = made.prepared
        run_id = new_run_id()
        store = _Announcing(self.store)
        options = RunOptions(settings=self.config.settings, dry_run=dry_run, run_id=run_id,
                             engine=self.config.engine, started_by=by,
                             remediates=made.run_id)
        preview = gate(prep.job.spec, options)
        self._launch(run_id, options, store, *_executing(prep, store, options))
        return Started(run_id, dry_run or preview, preview)

    def approve(self, run_id: str, by: str) -> str:
        """Carry out an approved preview in the background; the new run's id. Refused
        (nothing recorded) when there is nothing to approve or someone decided first."""
        from runner.job.approval import approve

        full = self.store.resolve(run_id)
        new_id = new_run_id()
        store = _Announcing(self.store)
        options = RunOptions(settings=self.config.settings, run_id=new_id,
                             engine=self.config.engine)
        return self._launch(new_id, options, store, lambda: approve(
            cast(ResultsStore, store), full, options, by=by))

    def _launch(self, run_id: str, options: RunOptions, store: _Announcing,
                work: Callable[[], RunResult], pending: Pending | None = None) -> str:
        """Start `work` in the background; return once its run is recorded or, for a
        rehearsed run (`pending`), once its rehearsal has begun or waits for the twin."""
        if pending is not None:
            store.on_start = lambda: self._recorded(run_id)
        with self.lock:
            if len(self.futures) >= self.config.max_runs:
                raise Conflict(f"{len(self.futures)} runs started here are still going "
                               f"(runner web --max-runs {self.config.max_runs}); try again "
                               "when one has finished")
            options.cancel = self.cancels[run_id] = threading.Event()
            if pending is not None:
                self.pending[run_id] = pending
            future = self.pool.submit(self._run, work, run_id)
            self.futures.add(future)
        future.add_done_callback(self._forget)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not store.started.wait(0.05) and time.monotonic() < deadline and not (
                pending is not None and pending.accepted.is_set()):
            if future.done():
                error = future.exception()
                if isinstance(error, InputError):
                    raise error
                raise Conflict(f"run {run_id} ended before it was recorded: {error}")
        return run_id

    def _recorded(self, run_id: str) -> None:
        with self.lock:
            self.pending.pop(run_id, None)

    def rehearsing(self, run_id: str) -> Pending | None:
        """The run `run_id` (or a prefix of it) if it is being rehearsed, not recorded yet."""
        with self.lock:
            found = [p for i, p in self.pending.items() if i.startswith(run_id)]
        return found[0] if len(found) == 1 and run_id else None

    def _forget(self, future: Future[None]) -> None:
        with self.lock:
            self.futures.discard(future)

    def _run(self, work: Callable[[], RunResult], run_id: str) -> None:
        try:
            result = work()
            log.info("run %s of %s finished (%s)", run_id, result.job,
                     "ok" if result.ok else "not all ok")
        except InputError as exc:
            log.error("run %s not started: %s", run_id, exc)
            raise
        except Exception:
            log.exception("run %s failed", run_id)
            raise
        finally:
            with self.lock:
                self.cancels.pop(run_id, None)
                self.pending.pop(run_id, None)

    def cancel(self, run_id: str, by: str) -> str:
        """Cancel a running run: this process's at once; another process's (runner run,
        serve, another web) through a request in the store, seen there within seconds.
        Either way the request (who, when) is recorded with the run. Conflict when the run
        is not running."""
        pending = self.rehearsing(run_id)
        if pending is not None:  # rehearsing, not recorded yet: this process runs it
            with self.lock:
                event = self.cancels.get(pending.run_id)
            if event is not None:
                event.set()
                return pending.run_id
        row_status, full = self._status(run_id)
        asked = row_status == RunStatus.RUNNING and self.store.request_cancel(full, by)
        with self.lock:
            event = self.cancels.get(full)
        if event is not None:
            event.set()
            return full
        if not asked:
            raise Conflict(f"run {full} is not running (it is {row_status})")
        return full

    def _status(self, run_id: str) -> tuple[str, str]:
        full = self.store.resolve(run_id)
        from runner.store.queries import run_head

        return str(run_head(self.store, full, hosts=False)["status"]), full

    def running(self) -> list[str]:
        with self.lock:
            return list(self.cancels)

    def close(self, grace: float = 30.0) -> None:
        """Stop: cancel what runs (recorded as interrupted) and wait for it to end."""
        with self.lock:
            events = list(self.cancels.values())
            futures = list(self.futures)
        for event in events:
            event.set()
        wait_futures(futures, timeout=grace)
        self.pool.shutdown(wait=False, cancel_futures=True)
