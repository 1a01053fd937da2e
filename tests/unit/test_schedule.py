"""Triggers and firing policies with literal aware date-times and an injected clock."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from runner.errors import InputError
from runner.job.load import load_job
from runner.job.schedule import ScheduleSpec
from runner.job.triggers import CronSchedule, IntervalSchedule
from runner.lab.netns import wait_for
from runner.schedule.policy import Slot, due
from runner.schedule.server import JobsDir, Scheduled, Scheduler
from runner.store.results import ResultsStore
from runner.store.schedule import ScheduleStore
from runner.vocab import Overlap
from tests.support.jobs import write_job

AMS = ZoneInfo("Europe/Amsterdam")


def fires(trigger: CronSchedule | IntervalSchedule, after: datetime, n: int) -> list[str]:
    out, moment = [], after
    for _ in range(n):
        nxt = trigger.next_after(moment)
        assert nxt is not None
        out.append(nxt.astimezone(getattr(trigger, "timezone", UTC)).isoformat())
        moment = nxt
    return out


@pytest.mark.parametrize("dow", ["0", "7", "sun", "SUN"])
def test_sunday_is_0_and_7_as_in_crontab(dow: str) -> None:
    # 2026-11-22 is a Sunday; APScheduler alone would read 0 as Monday.
    cron = CronSchedule(f"0 9 * * {dow}", ZoneInfo("UTC"))
    assert fires(cron, datetime(2026, 11, 20, tzinfo=UTC), 2) == [
        "2026-11-22T09:00:00+00:00", "2026-11-29T09:00:00+00:00"]


def test_weekday_ranges_names_and_steps() -> None:
    utc = ZoneInfo("UTC")
    start = datetime(2026, 11, 20, 12, tzinfo=UTC)  # a Friday, after 09:00
    assert fires(CronSchedule("0 9 * * 1-5", utc), start, 3) == [
        "2026-11-23T09:00:00+00:00", "2026-11-24T09:00:00+00:00", "2026-11-25T09:00:00+00:00"]
    assert fires(CronSchedule("0 9 * * mon-fri", utc), start, 1) == [
        "2026-11-23T09:00:00+00:00"]
    assert fires(CronSchedule("0 9 * * 5-7", utc), start, 3) == [  # Fri..Sun
        "2026-11-21T09:00:00+00:00", "2026-11-22T09:00:00+00:00", "2026-11-27T09:00:00+00:00"]
    assert fires(CronSchedule("0 9 * * */3", utc), start, 3) == [  # Sun, Wed, Sat
        "2026-11-21T09:00:00+00:00", "2026-11-22T09:00:00+00:00", "2026-11-25T09:00:00+00:00"]
    assert fires(CronSchedule("@weekly", utc), start, 1) == ["2026-11-22T00:00:00+00:00"]


def test_day_of_month_or_day_of_week_when_both_restricted() -> None:
    cron = CronSchedule("0 9 1 * mon", ZoneInfo("UTC"))
    assert fires(cron, datetime(2026, 11, 24, tzinfo=UTC), 3) == [
        "2026-11-30T09:00:00+00:00", "2026-12-01T09:00:00+00:00", "2026-12-07T09:00:00+00:00"]


def test_dst_spring_forward_fixed_time_runs_once_right_after_the_gap() -> None:
    cron = CronSchedule("30 2 * * *", AMS)  # 02:30 does not exist on 2026-03-29
    assert fires(cron, datetime(2026, 3, 28, tzinfo=AMS), 3) == [
        "2026-03-28T02:30:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]


def test_dst_fall_back_fixed_time_runs_once() -> None:
    cron = CronSchedule("30 2 * * *", AMS)  # 02:30 happens twice on 2026-10-25
    assert fires(cron, datetime(2026, 10, 24, tzinfo=AMS), 3) == [
        "2026-10-24T02:30:00+02:00", "2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]


def test_dst_wildcard_hour_follows_real_time() -> None:
    hourly = CronSchedule("0 * * * *", AMS)
    assert fires(hourly, datetime(2026, 10, 25, 0, 30, tzinfo=AMS), 4) == [
        "2026-10-25T01:00:00+02:00", "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:00:00+01:00", "2026-10-25T03:00:00+01:00"]
    assert fires(hourly, datetime(2026, 3, 29, 0, 30, tzinfo=AMS), 3) == [
        "2026-03-29T01:00:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-29T04:00:00+02:00"]


def test_interval_is_absolute_time_anchored_to_its_start() -> None:
    anchor = datetime(2026, 10, 25, 0, 0, tzinfo=AMS).astimezone(UTC)
    every_hour = IntervalSchedule(3600, anchor)
    got = [datetime.fromisoformat(t) for t in fires(every_hour, anchor, 4)]
    assert [(b - a) for a, b in itertools.pairwise(got)] == [timedelta(hours=1)] * 3
    # the same occurrences for any server, whenever it starts
    later = IntervalSchedule(3600, anchor).next_after(anchor + timedelta(minutes=90))
    assert later == anchor + timedelta(hours=2)


T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
EVERY_MINUTE = IntervalSchedule(60, datetime(2026, 1, 1, tzinfo=UTC))


def test_due_on_time_runs_and_advances() -> None:
    d = due(EVERY_MINUTE, T0, T0 + timedelta(seconds=2), misfire_grace=30, coalesce=True)
    assert d.run == [T0] and d.missed == [] and d.next_fire == T0 + timedelta(minutes=1)


def test_due_after_downtime_coalesces_within_grace_and_misfires_beyond() -> None:
    now = T0 + timedelta(minutes=10, seconds=5)
    d = due(EVERY_MINUTE, T0, now, misfire_grace=150, coalesce=True)
    assert d.run == [T0 + timedelta(minutes=10)]
    reasons = dict(d.missed)
    assert reasons[T0].startswith("misfired: 605s late")
    assert reasons[T0 + timedelta(minutes=8)] == "coalesced into 2026-11-22T09:10:00+00:00"
    assert len(d.missed) == 10
    assert d.next_fire == T0 + timedelta(minutes=11)


def test_due_without_coalesce_runs_every_occurrence_within_grace() -> None:
    now = T0 + timedelta(minutes=3)
    d = due(EVERY_MINUTE, T0, now, misfire_grace=150, coalesce=False)
    assert d.run == [T0 + timedelta(minutes=1), T0 + timedelta(minutes=2),
                     T0 + timedelta(minutes=3)]
    assert [o for o, _ in d.missed] == [T0]


def test_overlap_skip_and_queue() -> None:
    skip = Slot(Overlap.SKIP)
    assert skip.offer(T0) == "start"
    assert skip.offer(T0 + timedelta(minutes=1)).startswith(
        "skipped: the run of 2026-11-22T09:00:00+00:00 is still going")
    assert skip.finished() is None
    queue = Slot(Overlap.QUEUE)
    assert queue.offer(T0) == "start"
    assert queue.offer(T0 + timedelta(minutes=1)) == "queued"
    assert queue.offer(T0 + timedelta(minutes=2)).startswith("skipped")
    assert queue.finished() == T0 + timedelta(minutes=1)
    assert queue.finished() is None


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.moment = now

    def now(self) -> datetime:
        return self.moment


class FakeRuns:
    """Stands in for job execution (the real path is tested against the lab): records what
    ran; a run can be held open to test overlap."""

    def __init__(self) -> None:
        self.started: list[tuple[str, datetime]] = []
        self.hold = threading.Event()
        self.hold.set()

    def __call__(self, sched: Scheduled, occurrence: datetime, run_id: str,
                 cancel: threading.Event) -> str:
        self.started.append((sched.name, occurrence))
        self.hold.wait(10)
        return "done"


def scheduled_job(jobs: Path, name: str, schedule: str) -> Path:
    """A job of one `show clock` with this `schedule:` (YAML flow text, as written)."""
    return write_job(jobs, name, text=f"name: {name}\nschedule: {schedule}\nsteps:\n"
                                      "  - command: show clock\n")


def make(tmp_path: Path, url: str, clock: FakeClock, runs: FakeRuns, owner: str) -> Scheduler:
    """A scheduler on the store at `url` (db_url: SQLite, and a real PostgreSQL server)."""
    sched = Scheduler(tmp_path / "jobs", ScheduleStore(url), ResultsStore(url),
                      tmp_path / "inv", tmp_path / "templates", clock=clock, run=runs,
                      owner=owner, lease_ttl=15)
    sched.reload()
    return sched


def settle(sched: Scheduler) -> None:
    wait_for(lambda: not sched.running, 10, "fake runs to finish")


def test_restart_keeps_next_fire_and_applies_misfire_policy(tmp_path: Path, db_url: str) -> None:
    (tmp_path / "jobs").mkdir()
    scheduled_job(tmp_path / "jobs", "audit", "{interval: 1m, misfire_grace: 150, coalesce: true}")
    clock, runs = FakeClock(T0 + timedelta(seconds=1)), FakeRuns()
    first = make(tmp_path, db_url, clock, runs, "host:1")
    first.tick()  # learns the next fire time: 09:01
    clock.moment = T0 + timedelta(minutes=1, seconds=1)
    first.tick()
    settle(first)
    assert runs.started == [("audit", T0 + timedelta(minutes=1))]
    # "killed": it never releases its lease; a new server starts 10 minutes later
    clock.moment = T0 + timedelta(minutes=11, seconds=30)
    second = make(tmp_path, db_url, clock, runs, "host:2")
    second.tick()
    settle(second)
    assert runs.started[1:] == [("audit", T0 + timedelta(minutes=11))]
    rows = {r["occurrence"]: r for r in second.store.occurrences("audit")}
    assert len(rows) == 11  # 09:01 .. 09:11, each recorded exactly once
    assert rows["2026-11-22T09:02:00+00:00"]["reason"].startswith("misfired")
    assert rows["2026-11-22T09:10:00+00:00"]["reason"] == \
        "coalesced into 2026-11-22T09:11:00+00:00"
    assert rows["2026-11-22T09:11:00+00:00"]["status"] == "done"


def test_second_scheduler_stands_by_and_takes_over(tmp_path: Path, db_url: str) -> None:
    (tmp_path / "jobs").mkdir()
    scheduled_job(tmp_path / "jobs", "audit", "{interval: 1m}")
    clock, runs = FakeClock(T0 + timedelta(seconds=1)), FakeRuns()
    a = make(tmp_path, db_url, clock, runs, "host-a:1")
    b = make(tmp_path, db_url, clock, runs, "host-b:1")
    a.tick()
    b.tick()
    for minute in range(1, 4):
        clock.moment = T0 + timedelta(minutes=minute, seconds=1)
        a.tick()
        b.tick()
        settle(a)
    assert a.leader and not b.leader
    assert runs.started == [("audit", T0 + timedelta(minutes=m)) for m in (1, 2, 3)]
    clock.moment = T0 + timedelta(minutes=4, seconds=20)  # a stopped renewing 3m ago
    b.tick()
    settle(b)
    assert b.leader
    assert runs.started[-1] == ("audit", T0 + timedelta(minutes=4))
    a.tick()
    assert not a.leader  # it finds b holding the lease and stands by


def test_an_occurrence_claimed_elsewhere_is_not_run_again(tmp_path: Path, db_url: str) -> None:
    (tmp_path / "jobs").mkdir()
    scheduled_job(tmp_path / "jobs", "audit", "{interval: 1m}")
    clock, runs = FakeClock(T0 + timedelta(seconds=1)), FakeRuns()
    a = make(tmp_path, db_url, clock, runs, "host-a:1")
    a.tick()
    a.store.claim("audit", T0 + timedelta(minutes=1), "running", "host-z:9", clock.moment)
    clock.moment = T0 + timedelta(minutes=1, seconds=1)
    a.tick()
    settle(a)
    assert runs.started == []


@pytest.mark.parametrize("overlap", ["skip", "queue"])
def test_overlap_policy_in_the_scheduler(tmp_path: Path, db_url: str, overlap: str) -> None:
    (tmp_path / "jobs").mkdir()
    scheduled_job(tmp_path / "jobs", "slow", f"{{interval: 1m, overlap: {overlap}}}")
    clock, runs = FakeClock(T0 + timedelta(seconds=1)), FakeRuns()
    runs.hold.clear()  # the first run does not finish until released
    s = make(tmp_path, db_url, clock, runs, "host:1")
    s.tick()
    for minute in (1, 2, 3):
        clock.moment = T0 + timedelta(minutes=minute, seconds=1)
        s.tick()
    wait_for(lambda: len(runs.started) == 1, 10, "the first run to start")
    runs.hold.set()
    settle(s)
    rows = {r["occurrence"][11:16]: r for r in s.store.occurrences("slow")}
    if overlap == "skip":
        assert runs.started == [("slow", T0 + timedelta(minutes=1))]
        assert rows["09:02"]["status"] == rows["09:03"]["status"] == "skipped"
        assert "still going" in rows["09:02"]["reason"]
    else:
        wait_for(lambda: len(runs.started) == 2, 10, "the queued run")
        settle(s)
        assert runs.started == [("slow", T0 + timedelta(minutes=1)),
                                ("slow", T0 + timedelta(minutes=2))]
        assert rows["09:03"]["status"] == "skipped"
        assert {r["status"] for k, r in rows.items() if k != "09:03"} == {"done"}


def test_reload_keeps_the_previous_version_of_an_invalid_edit(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    path = scheduled_job(jobs, "audit", "{cron: '0 * * * *'}")
    d = JobsDir(jobs)
    assert d.reload() == ["scheduled audit: every hour (UTC)"]
    path.write_text("name: audit\nschedule: {cron: '0 25 * * *'}\nsteps: []\n")
    messages = d.reload()
    assert len(messages) == 1 and "keeping the previous version of audit" in messages[0]
    assert f"{path}:2: schedule.cron: cron hour field '25'" in messages[0]
    assert d.jobs["audit"].trigger.describe() == "every hour (UTC)"
    scheduled_job(jobs, "audit", "{cron: '30 2 * * 1-5', timezone: Europe/Amsterdam}")
    assert d.reload() == [
        "updated audit: on Mon, Tue, Wed, Thu, Fri at 02:30 (Europe/Amsterdam)"]
    scheduled_job(jobs, "other", "{interval: 90s}")
    assert d.reload() == ["scheduled other: every 90 seconds"]
    path.unlink()
    assert d.reload() == ["removed audit (audit.yml is gone)"]
    assert list(d.jobs) == ["other"]


def test_invalid_files_say_what_stays_in_effect(tmp_path: Path) -> None:
    """JobsDir.invalid(): each invalid file with its error and the job whose previous
    version stays in effect (what `runner schedule status` and the web report)."""
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    audit = scheduled_job(jobs, "audit", "{cron: '0 * * * *'}")
    d = JobsDir(jobs)
    d.reload()
    assert d.invalid() == []
    audit.write_text("name: audit\nschedule: {cron: '0 25 * * *'}\nsteps: []\n")
    fresh = jobs / "fresh.yml"
    fresh.write_text("name: fresh\nsteps: 3\n")
    d.reload()
    found = {p.name: (error, kept) for p, error, kept in d.invalid()}
    assert found["audit.yml"][1] == "audit"  # its previous version runs
    assert found["audit.yml"][0].startswith(f"{audit}:2: schedule.cron:")
    assert found["fresh.yml"] == (f"{fresh}:2: steps: expected a list (got 3)", None)
    twin = scheduled_job(jobs, "twin", "{interval: 1h}")  # then named as another job
    twin.write_text(twin.read_text().replace("name: twin", "name: audit"))
    fresh.unlink()
    scheduled_job(jobs, "audit", "{cron: '0 * * * *'}")
    d.reload()
    found = {p.name: (error, kept) for p, error, kept in d.invalid()}
    assert list(found) == ["twin.yml"] and "already used" in found["twin.yml"][0]
    twin.unlink()
    d.reload()
    assert d.invalid() == []


def test_schedule_errors_name_file_line_field(tmp_path: Path) -> None:
    cases = {
        "schedule:\n  cron: '* * * *'\n": (3, "schedule.cron: a cron expression has 5 fields"),
        "schedule:\n  interval: 5 minutes\n": (3, "schedule.interval: '5 minutes' is not"),
        "schedule:\n  at: 2026-12-01T02:00:00\n  timezone: Europe/Amstredam\n":
            (4, "schedule.timezone: 'Europe/Amstredam' is not an IANA time zone"),
        "schedule:\n  cron: '@daily'\n  interval: 1h\n":
            (2, "schedule: give exactly one of cron, interval, at"),
        "schedule:\n  interval: 1h\n  overlap: wait\n":
            (4, "schedule.overlap: expected 'skip' or 'queue' (got 'wait')"),
    }
    for body, (line, text) in cases.items():
        path = tmp_path / "j.yml"
        path.write_text(f"name: j\n{body}steps:\n  - command: show clock\n", encoding="utf-8")
        with pytest.raises(InputError) as info:
            load_job(path)
        assert str(info.value).startswith(f"{path}:{line}: {text}"), str(info.value)


def occurrences(schedule: dict[str, object], after: datetime, n: int = 5) -> list[str]:
    """Up to n fire times of a `schedule:` section after `after`, in UTC."""
    trigger = ScheduleSpec.model_validate(schedule).trigger()
    out: list[str] = []
    moment: datetime | None = after
    while len(out) < n:
        assert moment is not None
        moment = trigger.next_after(moment)
        if moment is None:
            break
        out.append(moment.astimezone(UTC).isoformat())
    return out


NOV = datetime(2026, 11, 23, 12, tzinfo=UTC)


def test_cron_start_is_honoured_and_inclusive() -> None:
    # the case: a daily 02:30 job starting in March lists (and fires) in March
    assert occurrences({"cron": "30 2 * * *", "start": "2027-03-26T00:00:00"}, NOV, 2) == [
        "2027-03-26T02:30:00+00:00", "2027-03-27T02:30:00+00:00"]
    # a start exactly on an occurrence fires then; one minute later skips to the next day
    assert occurrences({"cron": "30 2 * * *", "start": "2027-03-26T02:30:00"}, NOV, 1) == [
        "2027-03-26T02:30:00+00:00"]
    assert occurrences({"cron": "30 2 * * *", "start": "2027-03-26T02:31:00"}, NOV, 1) == [
        "2027-03-27T02:30:00+00:00"]
    # start in the schedule's time zone (Amsterdam is UTC+1 in March before the 28th)
    assert occurrences({"cron": "30 2 * * *", "timezone": "Europe/Amsterdam",
                        "start": "2027-03-26T02:30:00"}, NOV, 1) == ["2027-03-26T01:30:00+00:00"]
    # a start in the past changes nothing
    assert occurrences({"cron": "30 2 * * *", "start": "2026-01-01T00:00:00"}, NOV, 1) == [
        "2026-11-24T02:30:00+00:00"]


def test_end_is_inclusive_for_every_trigger_kind() -> None:
    assert occurrences({"cron": "30 2 * * *", "end": "2026-11-25T02:30:00"}, NOV) == [
        "2026-11-24T02:30:00+00:00", "2026-11-25T02:30:00+00:00"]
    assert occurrences({"cron": "30 2 * * *", "end": "2026-11-25T02:29:59"}, NOV) == [
        "2026-11-24T02:30:00+00:00"]
    assert occurrences({"cron": "30 2 * * *", "end": "2026-11-20T00:00:00"}, NOV) == []
    # an interval counts from its start and stops at its end
    assert occurrences({"interval": "1h", "start": "2026-11-23T12:30:00",
                        "end": "2026-11-23T14:30:00"}, NOV) == [
        "2026-11-23T12:30:00+00:00", "2026-11-23T13:30:00+00:00", "2026-11-23T14:30:00+00:00"]
    assert occurrences({"interval": "1h", "start": "2026-11-23T12:30:00",
                        "end": "2026-11-23T14:29:59"}, NOV) == [
        "2026-11-23T12:30:00+00:00", "2026-11-23T13:30:00+00:00"]


def test_at_inside_its_window_fires_once_and_outside_is_an_error(tmp_path: Path) -> None:
    assert occurrences({"at": "2026-12-01T02:00:00", "start": "2026-12-01T02:00:00",
                        "end": "2026-12-01T03:00:00"}, NOV) == ["2026-12-01T02:00:00+00:00"]
    assert occurrences({"at": "2026-12-01T02:00:00", "start": "2026-12-01T01:00:00",
                        "end": "2026-12-01T02:00:00"}, NOV) == ["2026-12-01T02:00:00+00:00"]
    for window in ("start: 2026-12-02T00:00:00", "end: 2026-11-30T00:00:00"):
        path = tmp_path / "j.yml"
        path.write_text(f"name: j\nschedule:\n  at: 2026-12-01T02:00:00\n  {window}\n"
                        "steps:\n  - command: show clock\n", encoding="utf-8")
        with pytest.raises(InputError, match="at is outside the start/end window"):
            load_job(path)


def test_the_server_fires_a_cron_job_only_from_its_start(tmp_path: Path, db_url: str) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    scheduled_job(jobs, "audit", "{cron: '30 2 * * *', start: 2027-03-26T00:00:00}")
    clock, runs = FakeClock(NOV), FakeRuns()
    server = make(tmp_path, db_url, clock, runs, "host:1")
    assert server.jobs.jobs["audit"].trigger.describe() == \
        "every day at 02:30 (UTC), from 2027-03-26 00:00 UTC"
    # a next fire time stored by a runner that ignored start is recomputed, not fired
    server.store.set_next_fire("audit", server.jobs.jobs["audit"].key,
                               datetime(2026, 11, 24, 2, 30, tzinfo=UTC))
    for moment in (NOV, datetime(2026, 11, 24, 2, 30, 5, tzinfo=UTC),
                   datetime(2027, 3, 26, 2, 29, tzinfo=UTC)):
        clock.moment = moment
        server.tick()
        settle(server)
    assert runs.started == []
    clock.moment = datetime(2027, 3, 26, 2, 30, 5, tzinfo=UTC)
    server.tick()
    settle(server)
    assert runs.started == [("audit", datetime(2027, 3, 26, 2, 30, tzinfo=UTC))]


def test_schedule_list_json_honours_start_and_matches_the_table(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    start = (datetime.now(UTC) + timedelta(days=120)).replace(microsecond=0, tzinfo=None)
    scheduled_job(jobs, "backup", f"{{cron: '30 2 * * *', start: {start.isoformat()}}}")
    scheduled_job(jobs, "audit", "{interval: 1h, end: 2020-01-01T00:00:00}")

    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "runner", "--db", f"sqlite:///{tmp_path / 'r.db'}",
             "schedule", "list", "--jobs", str(jobs), *args],
            capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout

    listed = {item["job"]: item for item in json.loads(cli("--json", "-n", "2"))}
    assert set(listed) == {"backup", "audit"}
    backup = listed["backup"]
    fires = [datetime.fromisoformat(t) for t in backup["next"]]
    assert len(fires) == 2 and all(f >= start.replace(tzinfo=UTC) for f in fires)
    assert [(f.hour, f.minute) for f in fires] == [(2, 30), (2, 30)]
    assert backup["schedule"] == {"cron": "30 2 * * *", "start": start.isoformat()}
    assert backup["when"].startswith("every day at 02:30 (UTC), from ")
    assert backup["last_run"] is None and backup["timezone"] == "UTC"
    assert listed["audit"]["next"] == []  # its window ended
    text = cli()
    assert "no more" in text and fires[0].strftime("%Y-%m-%d 02:30:00 UTC") in text


def test_an_at_job_first_seen_just_after_its_time_still_runs_within_grace(
        tmp_path: Path) -> None:
    # the server was still starting at 09:00:00; it first looks at 09:00:07
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    scheduled_job(jobs, "once", "{at: 2026-11-22T09:00:00, misfire_grace: 60}")
    scheduled_job(jobs, "stale", "{at: 2026-11-22T08:00:00, misfire_grace: 60}")
    scheduled_job(jobs, "cron", "{cron: '0 9 * * *'}")  # crontab: never retroactive
    clock, runs = FakeClock(T0 + timedelta(seconds=7)), FakeRuns()
    server = make(tmp_path, f"sqlite:///{tmp_path / 'store.db'}", clock, runs, "host:1")
    server.tick()
    settle(server)
    assert runs.started == [("once", T0)]
    clock.moment = T0 + timedelta(hours=2)
    server.tick()
    settle(server)
    assert runs.started == [("once", T0)]  # once only; the stale one and the cron never
    assert [o["job"] for o in server.store.occurrences()] == ["once"]
