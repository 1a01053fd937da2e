"""Prometheus metrics, read from the stores at scrape time (so every process on the same
database says the same): runs and device results by job and status, run and device
durations, schedule lag and misfires, Celery queue depth, devices leased. Served at /metrics
by `runner web` and by `runner serve --metrics-port`."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import ColumnElement, Connection, DateTime, Float, Select, case, cast, func, select

from runner.errors import InputError
from runner.settings import DEFAULT_QUEUE, Settings, safe_url
from runner.store.results import ResultsStore, devices, runs
from runner.store.schedule import ScheduleStore, occurrences
from runner.vocab import ComplianceState, OccurrenceStatus, RunStatus

log = logging.getLogger("runner.store.metrics")
RUN_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
DEVICE_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
LAG_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 300.0)
CACHE_S = 5.0  # scrapes within this long of the last one get the same figures


def _seconds_between(engine_name: str, start: Any, end: Any) -> ColumnElement[Any] | None:
    """SQL for (end - start) in seconds of two ISO timestamps stored as text."""
    if engine_name == "sqlite":
        return (func.julianday(end) - func.julianday(start)) * 86400.0
    if engine_name == "postgresql":
        return func.extract("epoch", cast(end, DateTime(timezone=True))
                            - cast(start, DateTime(timezone=True)))
    return None


def _histogram(name: str, doc: str, label: str, rows: list[tuple[str, list[int], int, float]],
               buckets: tuple[float, ...]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=[label])
    for key, counts, total, total_sum in rows:
        family.add_metric([key], [*((str(b), c) for b, c in zip(buckets, counts,
                                                               strict=True)),
                                  ("+Inf", total)], total_sum)
    return family


def _bucketed(values: dict[str, list[float]],
              buckets: tuple[float, ...]) -> list[tuple[str, list[int], int, float]]:
    return [(key, [sum(1 for v in vs if v <= b) for b in buckets], len(vs), sum(vs))
            for key, vs in sorted(values.items())]


def _sql_buckets(conn: Connection, query: Select[Any], key: ColumnElement[Any],
                 value: ColumnElement[Any], buckets: tuple[float, ...],
                 ) -> list[tuple[str, list[int], int, float]]:
    """Histogram rows per `key` counted by the database (no row fetched per run or device):
    (key, cumulative count per bucket, count, sum)."""
    sums = [func.sum(case((value <= b, 1), else_=0)) for b in buckets]
    grouped = query.with_only_columns(key, func.count(), func.sum(value), *sums) \
        .group_by(key)
    return [(k, [int(c or 0) for c in cs], int(n), float(total or 0))
            for k, n, total, *cs in conn.execute(grouped)]


class RunnerCollector(Collector):
    def __init__(self, results: ResultsStore, schedule: ScheduleStore | None,
                 settings: Settings) -> None:
        self.results = results
        self.schedule = schedule
        self.settings = settings
        self._lock = threading.Lock()
        self._cached: tuple[float, list[Metric]] | None = None

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            if self._cached is None or time.monotonic() - self._cached[0] > CACHE_S:
                self._cached = (time.monotonic(), self._gather())
            yield from self._cached[1]

    def _gather(self) -> list[Metric]:
        out: list[Metric] = []
        out += self._runs()
        out += self._devices()
        out.append(self._compliance())
        if self.schedule is not None:
            out += self._schedules()
            out += self._freshness()
        out += self._broker()
        out.append(self._local_leases())
        return out

    # -- runs and devices -----------------------------------------------------------------

    def _runs(self) -> list[Metric]:
        engine = self.results.engine
        counts = CounterMetricFamily("runner_runs", "Runs recorded, by job and status "
                                     "(running ones included).", labels=["job", "status"])
        running = GaugeMetricFamily("runner_runs_running", "Runs going now, by job.",
                                    labels=["job"])
        with engine.connect() as conn:
            for job, status, n in conn.execute(select(runs.c.job, runs.c.status, func.count())
                                               .group_by(runs.c.job, runs.c.status)):
                counts.add_metric([job, status], int(n))
                if status == RunStatus.RUNNING:
                    running.add_metric([job], int(n))
        duration = _seconds_between(engine.dialect.name, runs.c.started, runs.c.finished)
        finished = runs.c.finished.is_not(None)
        with engine.connect() as conn:
            if duration is not None:  # bucketed by the database, as device durations are
                known = func.coalesce(duration, 0.0)
                seconds = func.max(known, 0.0) if engine.dialect.name == "sqlite" \
                    else func.greatest(known, 0.0)
                rows = _sql_buckets(conn, select(runs.c.job).where(finished), runs.c.job,
                                    seconds, RUN_BUCKETS)
            else:  # any other database: the arithmetic in Python
                values: dict[str, list[float]] = {}
                for job, start, end in conn.execute(select(
                        runs.c.job, runs.c.started, runs.c.finished).where(finished)):
                    values.setdefault(job, []).append(max(0.0, (
                        datetime.fromisoformat(end)
                        - datetime.fromisoformat(start)).total_seconds()))
                rows = _bucketed(values, RUN_BUCKETS)
        hist = _histogram("runner_run_duration_seconds", "Finished runs' durations, by job.",
                          "job", rows, RUN_BUCKETS)
        return [counts, running, hist]

    def _devices(self) -> list[Metric]:
        counts = CounterMetricFamily("runner_device_results", "Device records, by job and "
                                     "status.", labels=["job", "status"])
        joined = devices.join(runs, devices.c.run_id == runs.c.run_id)
        seconds = cast(func.coalesce(devices.c.duration_s, 0.0), Float)
        with self.results.engine.connect() as conn:
            for job, status, n in conn.execute(
                    select(runs.c.job, devices.c.status, func.count()).select_from(joined)
                    .group_by(runs.c.job, devices.c.status)):
                counts.add_metric([job, status], int(n))
            rows = _sql_buckets(conn, select(runs.c.job).select_from(joined), runs.c.job,
                                seconds, DEVICE_BUCKETS)
        hist = _histogram("runner_device_duration_seconds", "Devices' durations in runs, by "
                          "job.", "job", rows, DEVICE_BUCKETS)
        return [counts, hist]

    def _compliance(self) -> Metric:
        """Devices per feature and state, as their latest compliance check found them."""
        from runner.store.compliance import counts

        gauge = GaugeMetricFamily("runner_compliance_devices", "Devices by compliance "
                                  "feature and state (compliant, non_compliant), as their "
                                  "latest check found them.", labels=["feature", "status"])
        found = counts(self.results)
        for feature in sorted({f for f, _ in found}):
            for state in ComplianceState:  # both states, 0 included: alerts see the drop
                gauge.add_metric([feature, state], found.get((feature, state), 0))
        return gauge

    # -- schedules ------------------------------------------------------------------------

    def _schedules(self) -> list[Metric]:
        assert self.schedule is not None
        outcomes = CounterMetricFamily("runner_schedule_occurrences", "Scheduled occurrences, "
                                       "by job and outcome (done, failed, missed, skipped, "
                                       "...).", labels=["job", "status"])
        misfires = CounterMetricFamily("runner_schedule_misfires", "Occurrences not run "
                                       "because they were too late (misfired or coalesced).",
                                       labels=["job"])
        with self.schedule.engine.connect() as conn:
            rows = conn.execute(select(occurrences.c.job, occurrences.c.occurrence,
                                       occurrences.c.status, occurrences.c.run_id)).all()
        missed: dict[str, int] = {}
        tally: dict[tuple[str, str], int] = {}
        due: dict[str, tuple[str, str]] = {}
        for job, occurrence, status, run_id in rows:
            tally[(job, status)] = tally.get((job, status), 0) + 1
            if status == OccurrenceStatus.MISSED:
                missed[job] = missed.get(job, 0) + 1
            if run_id:
                due[run_id] = (job, occurrence)
        for (job, status), n in sorted(tally.items()):
            outcomes.add_metric([job, status], n)
        for job in sorted({job for job, _ in tally}):
            misfires.add_metric([job], missed.get(job, 0))
        lags: dict[str, list[float]] = {}
        ids = list(due)
        with self.results.engine.connect() as conn:
            for i in range(0, len(ids), 500):
                for run_id, started in conn.execute(select(runs.c.run_id, runs.c.started)
                                                    .where(runs.c.run_id.in_(ids[i:i + 500]))):
                    job, occurrence = due[run_id]
                    lag = (datetime.fromisoformat(started)
                           - datetime.fromisoformat(occurrence)).total_seconds()
                    lags.setdefault(job, []).append(max(0.0, lag))
        lag_hist = _histogram("runner_schedule_lag_seconds", "How late scheduled runs "
                              "started (start minus due time, jitter included), by job.",
                              "job", _bucketed(lags, LAG_BUCKETS), LAG_BUCKETS)
        return [outcomes, misfires, lag_hist]

    def _freshness(self) -> list[Metric]:
        """Backup freshness per job with `freshness:` (as `runner serve` last folded it)."""
        assert self.schedule is not None
        oldest = GaugeMetricFamily("runner_backup_oldest_age_seconds", "Age of the oldest "
                                   "device's newest good backup, by freshness job.",
                                   labels=["job"])
        target = GaugeMetricFamily("runner_backup_freshness_seconds", "The age no device's "
                                   "newest good backup should pass (the job's freshness).",
                                   labels=["job"])
        stale = GaugeMetricFamily("runner_backup_stale_devices", "Devices whose newest good "
                                  "backup is older than the freshness, or that have none.",
                                  labels=["job"])
        rate = GaugeMetricFamily("runner_backup_rate_per_second", "Backups per second the "
                                 "job's runs manage (measured).", labels=["job"])
        covered = GaugeMetricFamily("runner_backup_covered", "1 when the fleet can be backed "
                                    "up within the freshness at the measured rate, else 0.",
                                    labels=["job"])
        from runner.store.freshness import Freshness

        for item in Freshness(self.schedule.engine).summaries(datetime.now(UTC)):
            job = item["job"]
            target.add_metric([job], item["freshness_s"])
            stale.add_metric([job], item["stale"])
            if item["oldest_age_s"] is not None:
                oldest.add_metric([job], item["oldest_age_s"])
            if item["rate_per_s"] is not None:
                rate.add_metric([job], item["rate_per_s"])
            measured = item["rate_per_s"]
            covered.add_metric([job], 1 if measured is None or
                               measured * item["freshness_s"] >= item["devices"] else 0)
        return [oldest, target, stale, rate, covered]

    # -- the broker and leases ------------------------------------------------------------

    def _broker(self) -> list[Metric]:
        """Celery queue depth and Redis device leases, when a broker is configured."""
        if not self.settings.broker_url:
            return []
        up = GaugeMetricFamily("runner_broker_up", "Whether the Redis broker answered.")
        depth = GaugeMetricFamily("runner_celery_queue_depth", "Shards waiting in each "
                                  "Celery queue (Redis LLEN).", labels=["queue"])
        leased = GaugeMetricFamily("runner_devices_leased", "Devices whose lease is held "
                                   "now, by kind of lease.", labels=["kind"])
        try:
            import redis

            from runner.execution.control.heartbeat import live_workers
            from runner.execution.control.keys import LEASES

            client = redis.Redis.from_url(self.settings.broker_url, socket_timeout=3,
                                          socket_connect_timeout=3, decode_responses=True)
            try:
                queues = {DEFAULT_QUEUE}
                for consumed in live_workers(client).values():
                    queues.update(consumed)
                for queue in sorted(queues):
                    depth.add_metric([queue], int(client.llen(queue)))
                count = sum(1 for _ in client.scan_iter(match=LEASES, count=1000))
                leased.add_metric(["redis"], count)
            finally:
                client.close()
        except Exception as exc:  # a scrape says the broker is down; it never fails
            log.warning("metrics: broker %s: %s", safe_url(self.settings.broker_url),
                        safe_url(str(exc)))
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        return [up, depth, leased]

    def _local_leases(self) -> Metric:
        """Device locks held on this machine (runs without a broker), from /proc/locks."""
        leased = GaugeMetricFamily("runner_devices_leased_local", "Device locks held on "
                                   "this machine by runs without a broker.")
        leased.add_metric([], held_locks(self.settings.lock_dir))
        return leased


def held_locks(directory: Path) -> int:
    """How many lock files in `directory` a process holds a lock on now (read from
    /proc/locks: nothing is locked or opened to find out)."""
    try:
        files = {(os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
                 for st in (p.stat() for p in directory.glob("*.lock"))}
        text = Path("/proc/locks").read_text(encoding="ascii")
    except OSError:
        return 0
    held = set()
    for line in text.splitlines():
        parts = line.split()
        if "->" in parts:  # a waiter, not a holder
            continue
        try:
            major, minor, inode = parts[5].split(":")
            key = (int(major, 16), int(minor, 16), int(inode))
        except (IndexError, ValueError):
            continue
        if key in files:
            held.add(key)
    return len(held)


def registry(results: ResultsStore, schedule: ScheduleStore | None,
             settings: Settings) -> CollectorRegistry:
    """A registry of runner's metrics only (no process metrics of the server)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(RunnerCollector(results, schedule, settings))
    return reg


def serve_metrics(port: int, results: ResultsStore, schedule: ScheduleStore | None,
                  settings: Settings) -> None:
    """`runner serve --metrics-port`: the same metrics on 127.0.0.1:port, from a thread."""
    from prometheus_client import start_http_server

    try:
        start_http_server(port, addr="127.0.0.1", registry=registry(results, schedule,
                                                                    settings))
    except OSError as exc:
        raise InputError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}",
                         field="--metrics-port") from None
    log.info("metrics on http://127.0.0.1:%d/metrics", port)
