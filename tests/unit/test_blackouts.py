"""Blackout windows with literal date-times: date ranges and cron spans in a time zone, the
fleet or some sites/groups/hosts, joined windows, skip and defer in the scheduler (an
injected clock), errors naming file, line and field, and `runner run` refused inside one."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import jsonschema
import pytest
import yaml

from runner.errors import InputError, JobError
from runner.inventory.loading import load_inventory
from runner.job.blackouts import Calendar, read_calendar
from runner.job.load import load_job
from runner.job.triggers import CronSchedule, IntervalSchedule
from runner.schedule.policy import blackout_fate, next_clear
from runner.schedule.server import Scheduled, Scheduler, Start
from runner.store.events import Events
from runner.store.results import ResultsStore
from runner.store.schedule import ScheduleStore
from runner.vocab import EventSource, OccurrenceStatus, OnBlackout
from tests.support.base import ROOT, write_inventory

AMS = ZoneInfo("Europe/Amsterdam")
CALENDAR = """blackouts:
  - {name: year-end, start: "2026-12-20 00:00", end: "2027-01-04 00:00", timezone: Europe/Amsterdam}
  - {name: office-hours, cron: "0 8 * * 1-5", duration: 10h, timezone: Europe/Amsterdam,
     groups: [site-a]}
  - {name: freeze, start: "2026-11-10 00:00", end: "2026-11-11 00:00", changes_only: true}
  - {name: night, start: "2026-11-12 00:00", end: "2026-11-12 06:00", jobs: ["push-*"]}
  - {name: night-2, start: "2026-11-12 06:00", end: "2026-11-12 08:00", jobs: ["push-*"]}
  - {name: dc, start: "2026-11-13 00:00", end: "2026-11-14 00:00", sites: [ams], hosts: [r9]}
"""


def calendar(tmp_path: Path, text: str = CALENDAR) -> Calendar:
    path = tmp_path / "blackouts.yml"
    path.write_text(text, encoding="utf-8")
    return read_calendar(path)


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=AMS)  # type: ignore[misc]


def test_a_date_range_holds_from_start_to_end_in_its_time_zone(tmp_path: Path) -> None:
    cal = calendar(tmp_path)
    assert cal.fleet_hold(at(2026, 12, 19, 23, 59), "backup", False) == []
    held = cal.fleet_hold(at(2026, 12, 20, 0, 0), "backup", False)
    assert [a.name for a in held] == ["year-end"]
    assert held[0].end == datetime(2027, 1, 3, 23, 0, tzinfo=UTC)  # 00:00 CET
    assert held[0].text().startswith(f"year-end ({tmp_path / 'blackouts.yml'}:2) until "
                                     "2027-01-04 00:00 CET")
    assert cal.fleet_hold(at(2027, 1, 4, 0, 0), "backup", False) == []  # end exclusive


def test_a_cron_window_spans_its_duration_from_each_fire_time(tmp_path: Path) -> None:
    cal = calendar(tmp_path)
    hosts = {"a1": _Host(groups={"site-a"}), "b1": _Host()}
    monday = at(2026, 11, 23, 8, 0)
    assert set(cal.device_holds(monday, "backup", False, hosts, hosts)) == {"a1"}
    assert cal.device_holds(monday + timedelta(hours=10), "backup", False, hosts, hosts) == {}
    assert set(cal.device_holds(monday + timedelta(hours=9, minutes=59), "backup", False,
                                hosts, hosts)) == {"a1"}
    assert cal.device_holds(at(2026, 11, 22, 12, 0), "backup", False, hosts, hosts) == {}  # Sun
    # a device-scoped window never holds the fleet: the run goes on without a1
    assert cal.fleet_hold(monday, "backup", False) == []
    # across the spring DST change the span is real time: 08:00 CEST + 10h = 18:00 CEST
    spring = at(2027, 3, 29, 8, 0)
    found = cal.device_holds(spring, "x", False, hosts, hosts)["a1"]
    assert found.end.astimezone(AMS) == at(2027, 3, 29, 18, 0)


def test_changes_only_jobs_and_scopes(tmp_path: Path) -> None:
    cal = calendar(tmp_path)
    day = at(2026, 11, 10, 12, 0)
    assert cal.fleet_hold(day, "backup", changes=False) == []  # a backup goes on
    assert [a.name for a in cal.fleet_hold(day, "ntp", changes=True)] == ["freeze"]
    night = at(2026, 11, 12, 3, 0)
    assert [a.name for a in cal.fleet_hold(night, "push-ntp", False)] == ["night"]
    assert cal.fleet_hold(night, "backup", False) == []
    hosts = {"r1": _Host(site="ams"), "r2": _Host(site="rtm"), "r9": _Host(site="rtm")}
    held = cal.device_holds(at(2026, 11, 13, 1, 0), "backup", False, hosts, hosts)
    assert set(held) == {"r1", "r9"}  # site ams, and host r9 by name


def test_windows_that_meet_are_joined_to_find_the_end(tmp_path: Path) -> None:
    cal = calendar(tmp_path)
    # night (00:00-06:00 UTC), then night-2 (06:00-08:00 UTC): one end
    assert cal.clear_at(at(2026, 11, 12, 3, 0), "push-x", False) == \
        datetime(2026, 11, 12, 8, 0, tzinfo=UTC)
    assert cal.clear_at(at(2026, 11, 12, 9, 0), "push-x", False) == at(2026, 11, 12, 9, 0)
    always = calendar(tmp_path, 'blackouts:\n  - {name: all, cron: "* * * * *", duration: 2m}\n')
    assert always.clear_at(at(2026, 11, 12, 3, 0), "x", False) is None  # no end in sight


def test_skip_and_defer_decide_an_occurrence(tmp_path: Path) -> None:
    cal = calendar(tmp_path)
    moment = at(2026, 12, 24, 2, 30)
    skipped = blackout_fate(cal, "backup", False, moment, OnBlackout.SKIP)
    assert skipped is not None and skipped.until is None
    assert skipped.reason.startswith("blackout year-end (")
    deferred = blackout_fate(cal, "backup", False, moment, OnBlackout.DEFER)
    assert deferred is not None and deferred.until == at(2027, 1, 4, 0, 0).astimezone(UTC)
    assert deferred.reason.endswith("deferred to 2027-01-03T23:00:00+00:00")
    assert blackout_fate(cal, "backup", False, at(2026, 12, 19, 2, 30), OnBlackout.SKIP) is None


def test_the_next_starts_skip_a_window_or_move_to_its_end(tmp_path: Path) -> None:
    cal = calendar(tmp_path)
    daily = CronSchedule("30 2 * * *", AMS)
    after = at(2026, 12, 18, 12, 0)
    times, held = next_clear(daily, cal, "backup", False, OnBlackout.SKIP, after, 3)
    assert [t.astimezone(AMS) for t in times] == [
        at(2026, 12, 19, 2, 30), at(2027, 1, 4, 2, 30), at(2027, 1, 5, 2, 30)]
    assert held[0][0].astimezone(AMS) == at(2026, 12, 20, 2, 30)
    times, _ = next_clear(daily, cal, "backup", False, OnBlackout.DEFER, after, 3)
    assert [t.astimezone(AMS) for t in times] == [  # fifteen held occurrences: one run
        at(2026, 12, 19, 2, 30), at(2027, 1, 4, 0, 0), at(2027, 1, 4, 2, 30)]
    # an interval of one second does not walk through a fortnight's window
    every = IntervalSchedule(1, datetime(2026, 1, 1, tzinfo=UTC))
    times, _ = next_clear(every, cal, "backup", False, OnBlackout.SKIP,
                          at(2026, 12, 19, 23, 59, 59), 2)
    assert [t.astimezone(AMS) for t in times] == [at(2027, 1, 4, 0, 0),
                                                   at(2027, 1, 4, 0, 0, 1)]


BAD = {
    'blackouts:\n  - {name: x, start: "2026-12-20 00:00"}\n':
        (2, "blackouts[0].start: a date range needs both start and end (end is missing)"),
    'blackouts:\n  - {name: x, cron: "0 8 * *", duration: 1h}\n':
        (2, "blackouts[0].cron: a cron expression has 5 fields"),
    'blackouts:\n  - name: x\n    cron: "0 8 * * *"\n    duration: 10 hours\n':
        (4, "blackouts[0].duration: '10 hours' is not an interval"),
    'blackouts:\n  - {name: x, cron: "0 8 * * *"}\n':
        (2, "blackouts[0].duration: a cron window needs both cron and duration"),
    'blackouts:\n  - {name: x, start: "2026-12-20", end: "2026-12-19"}\n':
        (2, "blackouts[0].end: end must be after start"),
    'blackouts:\n  - {name: x, start: "2026-12-20", end: "2026-12-21"}\n'
    '  - {name: x, start: "2026-12-22", end: "2026-12-23"}\n':
        (3, "blackouts[1].name: a window named 'x' is already given"),
    'blackouts:\n  - {name: x, start: "2026-12-20", end: "2026-12-21", timezone: Mars/Base}\n':
        (2, "blackouts[0].timezone: 'Mars/Base' is not an IANA time zone"),
    'blackouts:\n  - {name: x, start: "2026-12-20", end: "2026-12-21", site: [a]}\n':
        (2, "blackouts[0].site: unknown field"),
    'blackouts:\n  - {name: x, start: "2026-12-20", end: "2026-12-21", cron: "* * * * *",'
    ' duration: 1h}\n': (2, "blackouts[0].cron: give start and end (a date range) or cron"),
    "windows: []\n": (1, "windows: unknown field"),
    "- just a list\n": (1, "a blackouts file is a mapping"),
}


@pytest.mark.parametrize("text", list(BAD))
def test_a_bad_blackouts_file_names_file_line_and_field(tmp_path: Path, text: str) -> None:
    line, message = BAD[text]
    path = tmp_path / "blackouts.yml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError) as info:
        read_calendar(path)
    assert str(info.value).startswith(f"{path}:{line}: ") and message in str(info.value), \
        str(info.value)
    done = subprocess.run([sys.executable, "-m", "runner", "validate", str(path)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and message in done.stderr


def test_a_jobs_own_windows_and_their_rules(tmp_path: Path) -> None:
    path = tmp_path / "push.yml"
    path.write_text("name: push\nblackouts:\n  - {name: quiet, start: '2026-11-10 00:00',"
                    " end: '2026-11-11 00:00'}\n  - {name: quiet, cron: '0 1 * * *',"
                    " duration: 1h}\nsteps:\n  - command: show clock\n", encoding="utf-8")
    with pytest.raises(JobError, match=r"push.yml:4: blackouts\[1\].name: a window named"):
        load_job(path)
    path.write_text("name: push\nblackouts:\n  - {name: quiet, start: '2026-11-10 00:00',"
                    " end: '2026-11-11 00:00', jobs: [x]}\nsteps:\n  - command: show clock\n",
                    encoding="utf-8")
    with pytest.raises(JobError, match=r"push.yml:3: blackouts\[0\].jobs: a job's own"):
        load_job(path)
    path.write_text("name: push\nblackouts:\n  - {name: quiet, start: '2026-11-10 00:00',"
                    " end: '2026-11-11 00:00'}\nsteps:\n  - command: show clock\n",
                    encoding="utf-8")
    job = load_job(path)
    cal = Calendar().with_job(job.spec.blackouts, path, job.raw)
    assert [a.placed.where for a in cal.fleet_hold(at(2026, 11, 10, 1, 0), "push", False)] \
        == [f"{path}:3"]
    assert cal.fleet_hold(at(2026, 11, 10, 1, 0), "other", False) != []  # its own only


def test_a_window_naming_what_the_inventory_lacks_is_an_error(tmp_path: Path) -> None:
    inv = write_inventory(tmp_path, "r1: {hostname: 127.0.0.1, groups: [site-a], data: "
                                    "{site: ams}}\n", "site-a: {}\n")
    fleet = load_inventory(inv)
    good = calendar(tmp_path, 'blackouts:\n  - {name: w, cron: "0 8 * * *", duration: 1h,'
                              ' groups: [site-a], sites: [ams], hosts: [r1]}\n')
    good.check_scopes("backup", False, fleet.hosts, fleet.nornir.groups)
    for key, value, what in (("groups", "site-x", "the inventory has no group 'site-x'"),
                             ("sites", "rtm", "no host of the inventory has data site 'rtm'"),
                             ("hosts", "r2", "the inventory has no host 'r2'")):
        bad = calendar(tmp_path, f'blackouts:\n  - name: w\n    cron: "0 8 * * *"\n'
                                 f'    duration: 1h\n    {key}: [{value}]\n')
        with pytest.raises(JobError) as info:
            bad.check_scopes("backup", False, fleet.hosts, fleet.nornir.groups)
        assert str(info.value) == f"{tmp_path / 'blackouts.yml'}:2: blackouts[0].{key}[0]: " \
                                  f"blackout w: {what}"


def test_the_shipped_example_validates_against_the_published_schema() -> None:
    proc = subprocess.run([sys.executable, "-m", "runner", "schema", "blackouts"],
                          capture_output=True, text=True, check=True)
    schema = json.loads(proc.stdout)
    jsonschema.validators.validator_for(schema).check_schema(schema)
    example = ROOT / "jobs" / "examples" / "blackouts.yml"
    jsonschema.validate(yaml.safe_load(example.read_text(encoding="utf-8")), schema)
    assert len(read_calendar(example).windows) == 3
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"blackouts": [{"name": "x", "strat": "2026-01-01"}]}, schema)
    job_schema = json.loads(subprocess.run([sys.executable, "-m", "runner", "schema"],
                                           capture_output=True, text=True, check=True).stdout)
    for path in sorted((ROOT / "jobs" / "examples").glob("*.yml")):
        if path.name != "blackouts.yml":
            jsonschema.validate(yaml.safe_load(path.read_text(encoding="utf-8")), job_schema)
            load_job(path)


# -- the scheduler, with an injected clock ----------------------------------------------------


class _Host:
    def __init__(self, groups: set[str] | None = None, site: str | None = None) -> None:
        self.groups, self.site = groups or set(), site

    def has_parent_group(self, group: str) -> bool:
        return group in self.groups

    def get(self, item: str, default: object = None) -> object:
        return self.site if item == "site" else default


class Clock:
    def __init__(self, now: datetime) -> None:
        self.moment = now

    def now(self) -> datetime:
        return self.moment


class Runs:
    """Stands in for execution (real runs: tests/sim/test_scheduling.py)."""

    def __init__(self) -> None:
        self.started: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def __call__(self, sched: Scheduled, occurrence: datetime, run_id: str,
                 cancel: threading.Event) -> OccurrenceStatus:
        with self.lock:
            self.started.append((sched.name, occurrence.isoformat()))
        return OccurrenceStatus.DONE

    def event(self, start: Start, cancel: threading.Event) -> OccurrenceStatus:
        with self.lock:
            self.started.append((start.name, start.key))
        return OccurrenceStatus.DONE


def scheduler(tmp_path: Path, url: str, clock: Clock, runs: Runs, owner: str) -> Scheduler:
    s = Scheduler(tmp_path / "jobs", ScheduleStore(url), ResultsStore(url), tmp_path / "inv",
                  tmp_path / "templates", clock=clock, run=runs, event_run=runs.event,
                  owner=owner)
    s.reload()
    return s


def settle(s: Scheduler) -> None:
    from runner.lab.netns import wait_for

    wait_for(lambda: not s.running, 10, "runs to finish")


@pytest.mark.parametrize("policy", ["skip", "defer"])
def test_the_scheduler_skips_or_defers_occurrences_in_a_window(
        tmp_path: Path, db_url: str, policy: str) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "blackouts.yml").write_text(CALENDAR, encoding="utf-8")
    (jobs / "backup.yml").write_text(
        f"name: backup\nschedule: {{cron: '30 2 * * *', timezone: Europe/Amsterdam, "
        f"on_blackout: {policy}}}\nsteps:\n  - command: show clock\n", encoding="utf-8")
    clock, runs = Clock(at(2026, 12, 18, 12, 0)), Runs()
    s = scheduler(tmp_path, db_url, clock, runs, "host:1")
    s.tick()  # learns the next fire: 2026-12-19 02:30
    day = at(2026, 12, 19, 2, 30, 1)
    moments = [day + timedelta(days=n) for n in range(18)]  # 2026-12-19 .. 2027-01-05
    moments.append(at(2027, 1, 4, 0, 0, 1))  # the window's end
    for moment in sorted(moments):
        clock.moment = moment
        s.tick()
        settle(s)
    rows = {r["occurrence"][:10]: r for r in s.store.occurrences("backup")}
    assert rows["2026-12-19"]["status"] == "done"
    held = [rows[d] for d in sorted(rows) if "2026-12-20" <= d <= "2027-01-03"]
    assert len(held) == 15
    ran = [k for _, k in runs.started]
    if policy == "skip":
        assert {r["status"] for r in held} == {"skipped"}
        assert held[0]["reason"].startswith("blackout year-end (")
        assert ran == ["2026-12-19T01:30:00+00:00", "2027-01-04T01:30:00+00:00",
                       "2027-01-05T01:30:00+00:00"]
    else:
        assert held[0]["status"] == "deferred"
        assert {r["status"] for r in held[1:]} == {"missed"}  # coalesced into the first
        assert "coalesced into the deferred run of 2026-12-20T01:30:00+00:00" in \
            held[1]["reason"]
        assert ran == ["2026-12-19T01:30:00+00:00",
                       "deferred:2026-12-20T01:30:00+00:00",
                       "2027-01-04T01:30:00+00:00", "2027-01-05T01:30:00+00:00"]
        event = Events(s.store.engine).get("backup", "deferred:2026-12-20T01:30:00+00:00")
        assert event is not None and event["status"] == "done"
        assert event["due"] == "2027-01-03T23:00:00+00:00"


@pytest.mark.parametrize(("cron", "due_at", "ticked"), [
    # due inside the window, seen just after its end (a busy server ticks late): held
    ("59 23 3 1 *", at(2027, 1, 3, 23, 59), at(2027, 1, 4, 0, 0, 30)),
    # due just before the window, seen inside it: starting now would change inside it
    ("59 23 19 12 *", at(2026, 12, 19, 23, 59), at(2026, 12, 20, 0, 0, 30)),
])
@pytest.mark.parametrize("policy", ["skip", "defer"])
def test_an_occurrence_is_held_if_due_or_started_inside_a_window(
        tmp_path: Path, db_url: str, cron: str, due_at: datetime, ticked: datetime,
        policy: str) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "blackouts.yml").write_text(CALENDAR, encoding="utf-8")
    (jobs / "backup.yml").write_text(
        f"name: backup\nschedule: {{cron: '{cron}', timezone: Europe/Amsterdam, "
        f"on_blackout: {policy}}}\n"
        "steps:\n  - command: show clock\n", encoding="utf-8")
    clock, runs = Clock(due_at - timedelta(hours=1)), Runs()
    s = scheduler(tmp_path, db_url, clock, runs, "host:1")
    s.tick()  # learns the next fire
    clock.moment = ticked
    s.tick()
    settle(s)
    rows = s.store.occurrences("backup")
    key = due_at.astimezone(UTC).isoformat()
    assert [(r["occurrence"], r["status"]) for r in rows] == [
        (key, "skipped" if policy == "skip" else "deferred")]
    assert rows[0]["reason"].startswith("blackout year-end ("), rows
    # deferred to the window's end: when that has passed already, the deferred run starts
    over = policy == "defer" and ticked >= at(2027, 1, 4, 0, 0)
    assert runs.started == ([("backup", f"deferred:{key}")] if over else [])
    if policy == "defer":
        event = Events(s.store.engine).get("backup", f"deferred:{key}")
        assert event is not None and event["due"] == "2027-01-03T23:00:00+00:00"


def test_an_event_due_inside_a_window_and_seen_after_it_is_held(
        tmp_path: Path, db_url: str) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "blackouts.yml").write_text(CALENDAR, encoding="utf-8")
    (jobs / "backup.yml").write_text("name: backup\nsteps:\n  - command: show clock\n",
                                     encoding="utf-8")
    due_at = at(2027, 1, 3, 23, 59, 59)
    clock, runs = Clock(at(2027, 1, 4, 0, 0, 2)), Runs()
    s = scheduler(tmp_path, db_url, clock, runs, "host:1")
    assert s.events.add("backup", "syslog:r1", EventSource.SYSLOG, due_at, due=due_at)
    s.tick()
    settle(s)
    event = s.events.get("backup", "syslog:r1")
    assert event is not None and event["status"] == "skipped", event
    assert str(event["reason"]).startswith("blackout year-end ("), event
    assert runs.started == []


def test_runner_run_inside_a_window_exits_2_naming_it_and_touches_nothing(
        tmp_path: Path, listener: tuple[int, list[tuple[str, int]]]) -> None:
    port, connections = listener
    inv = write_inventory(tmp_path, f"r1: {{hostname: 127.0.0.1, port: {port}, "
                                    "platform: cisco_ios, username: u, password: p4ss-x}\n")
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    now = datetime.now(UTC)
    start, end = now - timedelta(hours=1), now + timedelta(hours=2)
    (jobs / "blackouts.yml").write_text(
        f"blackouts:\n  - {{name: emergency-freeze, start: '{start:%Y-%m-%d %H:%M}',"
        f" end: '{end:%Y-%m-%d %H:%M}', description: outage INC-4}}\n", encoding="utf-8")
    (jobs / "audit.yml").write_text("name: audit\nsteps:\n  - command: show clock\n",
                                    encoding="utf-8")
    db = f"sqlite:///{tmp_path / 'r.db'}"
    done = subprocess.run([sys.executable, "-m", "runner", "--db", db, "run",
                           str(jobs / "audit.yml"), "-i", str(inv)], capture_output=True,
                          text=True, timeout=60, check=False, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert f"error: {jobs / 'audit.yml'}: job 'audit' is in blackout emergency-freeze " \
           f"({jobs / 'blackouts.yml'}:2) until" in done.stderr
    assert "outage INC-4" in done.stderr and "--override-blackout REASON" in done.stderr
    assert connections == []
    history = subprocess.run([sys.executable, "-m", "runner", "--db", db, "history",
                              "--json"], capture_output=True, text=True, timeout=60,
                             check=True)
    assert json.loads(history.stdout) == []
    for bad, message in ((["--override-blackout", " "], "give the reason"),):
        done = subprocess.run([sys.executable, "-m", "runner", "--db", db, "run",
                               str(jobs / "audit.yml"), "-i", str(inv), *bad],
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 2 and message in done.stderr
    (jobs / "blackouts.yml").write_text("blackouts: []\n", encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "runner", "--db", db, "run",
                           str(jobs / "audit.yml"), "-i", str(inv), "--override-blackout",
                           "INC-4"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "--override-blackout: no blackout window holds job 'audit' now" in done.stderr
    assert connections == []
