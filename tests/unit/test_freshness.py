"""Backup freshness: which devices a round backs up (failures first, then devices never
backed up, then those about to pass the freshness, the rest spread over the interval), the
warning when the measured rate cannot cover the fleet, and each device's newest good backup
folded from stored runs (SQLite and PostgreSQL)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from runner.records import DeviceResult, RunResult
from runner.schedule.policy import plan_freshness, round_seconds
from runner.store.freshness import Age, Freshness
from runner.store.results import ResultsStore
from runner.store.schedule import ScheduleStore
from runner.vocab import DeviceStatus, RunStatus

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Seen:
    last_good: datetime | None
    failing: bool = False


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def test_failures_first_then_never_then_the_oldest_spread_over_the_interval() -> None:
    hosts = [f"r{i:03d}" for i in range(100)]
    ages = {h: Seen(ago(60 * (i % 50))) for i, h in enumerate(hosts)}  # 0..49 min old
    ages["r005"] = Seen(None, failing=True)   # never backed up, and it failed
    ages["r006"] = Seen(ago(3000), failing=True)  # 50 min old, its last attempt failed
    ages["r007"] = Seen(None)                  # new in the inventory
    del ages["r008"]                           # not even a row yet
    plan = plan_freshness(hosts, ages, NOW, 3600, rate=None)
    assert round_seconds(3600) == 180
    assert plan.hosts[:2] == ["r005", "r006"]  # failures, the oldest first
    assert plan.hosts[2:4] == ["r007", "r008"]  # then never backed up
    assert plan.urgent == 4
    # 45 min (three quarters) less a round: devices at least 42 min old are urgent
    urgent = [h for h in plan.hosts[4:] if ages[h].last_good <= ago(42 * 60)]  # type: ignore
    assert urgent == plan.hosts[4:4 + len(urgent)] and len(urgent) > 0
    # a round takes at least its share of the fleet: 100 devices * 180 s / 2700 s = 7
    assert len(plan.hosts) >= 7
    assert plan.next_plan == NOW + timedelta(seconds=180)
    assert plan.warning is None
    # devices a run has now are left to it
    assert "r005" not in plan_freshness(hosts, ages, NOW, 3600, None, busy={"r005"}).hosts


def test_a_fleet_backed_up_at_once_spreads_out_again() -> None:
    hosts = [f"r{i:03d}" for i in range(100)]
    moment = NOW
    ages = {h: Seen(moment) for h in hosts}  # the first round: every device at once
    sizes = []
    for _ in range(20):
        moment += timedelta(seconds=180)
        plan = plan_freshness(hosts, ages, moment, 3600, rate=None)
        sizes.append(len(plan.hosts))
        for host in plan.hosts:
            ages[host] = Seen(moment)
    assert max(sizes) <= 10  # about a fifteenth of the fleet a round, not all at once
    oldest = max((moment - a.last_good).total_seconds() for a in ages.values()
                 if a.last_good is not None)
    assert oldest <= 3600


def test_a_rate_that_cannot_cover_the_fleet_is_a_warning() -> None:
    hosts = [f"r{i}" for i in range(1000)]
    plan = plan_freshness(hosts, {}, NOW, 60, rate=5.0)  # needs 16.7/s
    assert plan.warning is not None and plan.warning.startswith(
        "1000 devices every 60s needs 16.67 backups/s; the job's runs manage 5.00/s")
    assert plan_freshness(hosts, {}, NOW, 60, rate=20.0).warning is None


def _run(results: ResultsStore, run_id: str, start: datetime, outcome: dict[str, DeviceStatus],
         dry_run: bool = False) -> None:
    run = RunResult(run_id, "backup", start.isoformat(), None, [], dry_run=dry_run)
    results.start_run(run, list(outcome))
    run.devices = [DeviceResult(h, s, finished=(start + timedelta(seconds=10)).isoformat(),
                                error_class=None if s.success else "ConnectFailed")
                   for h, s in outcome.items()]
    results.record_devices(run_id, run.devices)
    run.finished = (start + timedelta(seconds=10)).isoformat()
    results.finish_run(run, status=RunStatus.OK if run.ok else RunStatus.FAILED)


def test_the_newest_good_backup_is_folded_from_finished_runs(db_url: str) -> None:
    results, fresh = ResultsStore(db_url), Freshness(ScheduleStore(db_url).engine)
    fresh.set_state("backup", freshness=3600.0)
    fresh.targets("backup", ["r1", "r2", "r3"])
    t1 = NOW - timedelta(minutes=30)
    _run(results, "run1", t1, {"r1": DeviceStatus.OK, "r2": DeviceStatus.CHANGED,
                               "r3": DeviceStatus.UNREACHABLE})
    assert fresh.fold(results, "backup", concurrency=50) == 3
    t2 = NOW - timedelta(minutes=5)
    _run(results, "run2", t2, {"r1": DeviceStatus.AUTH_FAILED})
    _run(results, "dry", t2, {"r2": DeviceStatus.OK}, dry_run=True)  # not a backup
    fresh.fold(results, "backup", concurrency=50)
    ages = fresh.ages("backup")
    good = (t1 + timedelta(seconds=10)).isoformat()
    assert ages["r1"] == Age(datetime.fromisoformat(good),
                             datetime.fromisoformat((t2 + timedelta(seconds=10)).isoformat()),
                             DeviceStatus.AUTH_FAILED)
    assert ages["r1"].failing and not ages["r2"].failing and ages["r3"].failing
    assert ages["r3"].last_good is None
    summary = fresh.summaries(NOW)[0]
    assert summary["devices"] == 3 and summary["never"] == 1 and summary["failing"] == 2
    assert summary["stale"] == 1  # r3 has none; r1 and r2 are 30 minutes old
    assert abs(summary["oldest_age_s"] - (30 * 60 - 10)) < 1
    assert summary["rate_per_s"] is not None and summary["rate_per_s"] > 0
    fresh.targets("backup", ["r1", "r2"])  # r3 left the inventory
    assert set(fresh.ages("backup")) == {"r1", "r2"}
    assert fresh.fold(results, "backup", concurrency=50) >= 1  # idempotent re-reads
    assert fresh.ages("backup")["r2"].last_good == datetime.fromisoformat(good)
