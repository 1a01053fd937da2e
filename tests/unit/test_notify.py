"""Notifications: which events a run raises, what a message holds (failed devices, cut diffs,
dry-run wording, secrets masked), job-file and --notify errors, delivery to real receivers on
loopback, and a receiver that is down or hangs never holding the caller past the timeout."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from runner.inventory.loading import load_inventory
from runner.job.backups import BackupRepo
from runner.job.notify import (
    DIFF_LINES,
    LISTED_DEVICES,
    NotifyTarget,
    build_message,
    events_of,
    notify,
    secrets_of,
    targets_for,
)
from runner.job.run import notify_run
from runner.job.spec import JobSpec
from runner.records import DeviceResult, RunResult, StepResult
from runner.redact import Redactor
from runner.store.results import ResultsStore
from runner.vocab import DeviceStatus, NotifyEvent, RunStatus, StepKind
from tests.support.base import ROOT, free_port
from tests.support.receivers import JsonReceiver, SmtpReceiver, dripping_server, silent_listener

E = NotifyEvent
SECRET = "Sup3r-Secret"  # an inventory password


def device(host: str, status: DeviceStatus, *, diff: str | None = None,
           error: str | None = None, error_class: str | None = None,
           backup_changed: bool | None = None) -> DeviceResult:
    steps = []
    if diff is not None:
        steps.append(StepResult("descriptions", StepKind.CONFIG, diff=diff, changed=True))
    if backup_changed is not None:
        steps.append(StepResult("backup", StepKind.BACKUP, changed=backup_changed,
                                output=f"backups/{host}.cfg"))
    return DeviceResult(host, status, changed=status is DeviceStatus.CHANGED or diff is not None,
                        error=error, error_class=error_class, steps=steps)


def a_run(*devices: DeviceResult, dry_run: bool = False,
          backup_commit: str | None = None) -> RunResult:
    return RunResult(run_id="0123456789ab", job="push", started="2026-11-23T10:00:00+00:00",
                     finished="2026-11-23T10:00:05+00:00", devices=list(devices),
                     dry_run=dry_run, job_file="jobs/push.yml", backup_commit=backup_commit)


def diff_of(lines: int, tag: str = "line") -> str:
    return "\n".join(f"+interface {tag} {i}" for i in range(lines)) + "\n"


# -- events ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("devices", "backup_commit", "status", "expected"), [
    ([device("r1", DeviceStatus.OK)], None, None, {E.ALWAYS}),
    ([device("r1", DeviceStatus.CHANGED, diff="+x\n")], None, None, {E.ALWAYS, E.CHANGED}),
    ([device("r1", DeviceStatus.OK), device("r2", DeviceStatus.TIMED_OUT)], None, None,
     {E.ALWAYS, E.FAILED}),
    ([device("r1", DeviceStatus.SKIPPED)], None, None, {E.ALWAYS, E.FAILED}),
    # put back after a failed change: a failure too
    ([device("r1", DeviceStatus.ROLLED_BACK)], None, None,
     {E.ALWAYS, E.FAILED, E.ROLLED_BACK}),
    ([device("r1", DeviceStatus.OK, backup_changed=True)], "c0ffee", None,
     {E.ALWAYS, E.BACKUP_CHANGED}),
    ([device("r1", DeviceStatus.OK, backup_changed=False)], "c0ffee", None, {E.ALWAYS}),
    ([device("r1", DeviceStatus.OK, backup_changed=True)], None, None, {E.ALWAYS}),  # dry run
    ([device("r1", DeviceStatus.CHANGED, diff="+x\n")], None, RunStatus.AWAITING_APPROVAL,
     {E.ALWAYS, E.CHANGED, E.AWAITING_APPROVAL}),
    ([device("r1", DeviceStatus.OK)], None, RunStatus.INTERRUPTED, {E.ALWAYS, E.FAILED}),
])
def test_events_of_a_run(devices: list[DeviceResult], backup_commit: str | None,
                         status: RunStatus | None, expected: set[NotifyEvent]) -> None:
    assert events_of(a_run(*devices, backup_commit=backup_commit), status) == expected


def test_a_dry_run_that_would_change_a_device_is_changed() -> None:
    run = a_run(device("r1", DeviceStatus.CHANGED, diff="+x\n"), dry_run=True)
    assert events_of(run) == {E.ALWAYS, E.CHANGED}


@pytest.mark.parametrize("url", [  # the README's examples
    "json://127.0.0.1:8000/hook",
    "mailto://runner:pass@mail.example.net?to=ops@example.net",
    "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#netops",
    "json://hooks.example.net/runner"])
def test_apprise_urls_of_many_services_are_accepted(url: str) -> None:
    assert NotifyTarget(url=url).url == url


def test_a_target_hears_only_its_events_and_defaults_to_what_needs_a_person() -> None:
    target = NotifyTarget(url="json://127.0.0.1:9/hook")
    assert target.on == [E.FAILED, E.ROLLED_BACK, E.AWAITING_APPROVAL]
    changed_only = a_run(device("r1", DeviceStatus.CHANGED, diff="+x\n"))
    # a matching run would be delivered (and fail: nothing listens on port 9); this one
    # matches no event of the target, so nothing is sent and nothing recorded
    assert notify(changed_only, None, [target], Redactor(), timeout=5) == []


def test_job_targets_win_serve_defaults_fill_in_and_an_empty_list_opts_out() -> None:
    mine = [NotifyTarget(url="json://127.0.0.1:9/mine")]
    default = [NotifyTarget(url="json://127.0.0.1:9/default")]
    assert targets_for(mine, True, default) == mine
    assert targets_for([], False, default) == default
    assert targets_for([], True, default) == []
    spec = JobSpec.model_validate({"name": "x", "steps": [{"command": "show clock"}],
                                   "notify": []})
    assert "notify" in spec.model_fields_set


def test_notify_urls_never_travel_with_the_job_to_workers() -> None:
    spec = JobSpec.model_validate({
        "name": "x", "steps": [{"command": "show clock"}],
        "notify": [{"url": f"json://ops:{SECRET}@127.0.0.1:9/hook"}]})
    assert "notify" not in spec.model_dump(mode="json")
    assert SECRET not in repr(spec)


# -- the message ----------------------------------------------------------------------------


def test_message_names_job_run_failed_devices_with_errors_and_changed_diffs() -> None:
    run = a_run(device("r1", DeviceStatus.CHANGED, diff="-description old\n+description new\n"),
                device("r2", DeviceStatus.AUTH_FAILED, error="authentication failed",
                       error_class="AuthFailed"),
                device("r3", DeviceStatus.ROLLED_BACK, error="expect failed: bgp down",
                       error_class="CheckFailed"),
                device("r4", DeviceStatus.OK))
    message = build_message(run, None, Redactor())
    assert message.title == "runner push: failed, 1 ok, 1 changed, 1 auth_failed, " \
                            "1 rolled_back"
    assert message.kind == "failure"
    lines = message.body.splitlines()
    assert lines[:3] == ["job push (jobs/push.yml)", "run 0123456789ab: failed",
                         "devices: 1 ok, 1 changed, 1 auth_failed, 1 rolled_back"]
    assert "Failed devices (2):" in lines
    assert "- r2: auth_failed, AuthFailed: authentication failed" in lines
    assert "- r3: rolled_back, CheckFailed: expect failed: bgp down" in lines
    at = lines.index("Config diffs (1):")
    assert lines[at + 1:at + 4] == ["== r1: descriptions", "-description old",
                                    "+description new"]
    assert "DRY RUN" not in message.body


def test_long_diffs_are_cut_per_device_and_overall_with_counts() -> None:
    many = [device(f"r{i}", DeviceStatus.CHANGED, diff=diff_of(152, f"r{i}"))
            for i in range(20)]
    lines = build_message(a_run(*many), None, Redactor()).body.splitlines()
    first = lines.index("== r0: descriptions")
    assert lines[first + DIFF_LINES] == "+interface r0 39"
    assert lines[first + DIFF_LINES + 1] == "... 112 more lines"
    # the message stays bounded: 300 diff lines in all (7 devices' 40, then 20 of r7's),
    # later devices named, their diffs left out
    assert "Config diffs (20):" in lines
    last = lines.index("== r7: descriptions")
    assert lines[last + 20:last + 22] == ["+interface r7 19", "... 132 more lines"]
    assert lines[last + 22] == "... 12 more devices left out: r8, r9, r10, r11, r12, r13, " \
                               "r14, r15, r16, r17, ..."
    assert "== r8: descriptions" not in lines
    assert len(lines) < 340


def test_many_failed_devices_are_counted_not_all_listed() -> None:
    failed = [device(f"r{i:03d}", DeviceStatus.UNREACHABLE, error="no route",
                     error_class="ConnectFailed") for i in range(LISTED_DEVICES + 25)]
    body = build_message(a_run(*failed), None, Redactor()).body
    assert f"- r{LISTED_DEVICES - 1:03d}: unreachable, ConnectFailed: no route" in body
    long_error = build_message(a_run(device("r1", DeviceStatus.FAILED, error="x" * 1000,
                                            error_class="CommandRejected")), None, Redactor())
    assert f"- r1: failed, CommandRejected: {'x' * 300}... (700 more chars)" in \
        long_error.body.splitlines()
    assert f"- r{LISTED_DEVICES:03d}:" not in body
    assert "... 25 more failed devices: runner show 0123456789ab" in body


def test_a_dry_run_says_it_is_one_and_its_diffs_are_previews() -> None:
    run = a_run(device("r1", DeviceStatus.CHANGED, diff="+ntp server 192.0.2.1\n"),
                dry_run=True)
    message = build_message(run, None, Redactor())
    assert message.title == "runner push: ok (dry run), 1 changed"
    assert "DRY RUN: nothing was sent to any device; diffs show what would change" in \
        message.body.splitlines()
    assert "Config previews (1):" in message.body


def test_inventory_secrets_are_masked_even_in_errors_and_the_backup_text_is_never_read(
        tmp_path: Path) -> None:
    inventory = tmp_path / "inventory"
    inventory.mkdir()
    (inventory / "hosts.yaml").write_text("r1: {hostname: 127.0.0.1}\n", encoding="utf-8")
    (inventory / "defaults.yaml").write_text(
        f"platform: cisco_ios\nusername: admin\npassword: {SECRET}\n", encoding="utf-8")
    secrets = secrets_of(load_inventory(inventory), ["r1"])
    # as if the engine had let them through: the password in an error, a secret config
    # line in a diff (the + in front hides it from the platform's line patterns)
    leaky = device("r1", DeviceStatus.FAILED, error=f"login with {SECRET} refused by aaa",
                   error_class="CommandRejected",
                   diff=f"+username admin password {SECRET}\n"
                        "-snmp-server community 0ldC0mmunity RO\n"
                        "+snmp-server community n3wC0mmunity RO\n")
    leaky.backup = "hostname r1\nBACKUP-TEXT-MARKER\n"
    message = build_message(a_run(leaky), None, secrets)
    for secret in (SECRET, "0ldC0mmunity", "n3wC0mmunity", "BACKUP-TEXT-MARKER"):
        assert secret not in message.body + message.title
    lines = message.body.splitlines()
    assert "- r1: failed, CommandRejected: login with ******** refused by aaa" in lines
    assert lines[-3:] == ["+username admin password ********",
                          "-snmp-server community ******** RO",
                          "+snmp-server community ******** RO"]


def test_backup_changes_show_the_diff_in_the_commit_and_first_backups_only_by_name(
        tmp_path: Path) -> None:
    repo = BackupRepo(tmp_path / "backups")
    repo.commit({"r1": "hostname r1\nntp server 192.0.2.1\n", "r2": "hostname r2\n"}, "first")
    commit, changed = repo.commit({"r1": "hostname r1\nntp server 192.0.2.9\n",
                                   "r3": "hostname r3\nsecret-ish line\n"}, "second")
    assert commit is not None
    assert changed == {"r1", "r3"}
    diffs = repo.changes(commit, ["r1", "r2", "r3"])
    assert diffs["r3"] is None  # added by this commit: its whole config, never shown
    assert diffs["r1"] is not None
    assert "-ntp server 192.0.2.1\n+ntp server 192.0.2.9" in diffs["r1"]
    pushed = device("r2", DeviceStatus.CHANGED, diff="+ntp server 192.0.2.5\n",
                    backup_changed=True)
    run = a_run(device("r1", DeviceStatus.OK, backup_changed=True), pushed,
                device("r3", DeviceStatus.OK, backup_changed=True), backup_commit=commit)
    lines = build_message(run, None, Redactor(), {**diffs, "r2": "+ntp server 192.0.2.5\n"}
                          ).body.splitlines()
    at = lines.index("Backup changes (3):")
    assert lines[at + 1] == "== r1: backups/r1.cfg"
    assert "+ntp server 192.0.2.9" in lines
    # a device whose config diff is in the message: its backup change is named, not repeated
    assert lines[at + 6] == "== r2: backups/r2.cfg (its config diff is above)"
    assert lines[at + 7] == "== r3: backups/r3.cfg (first backup)"
    assert "secret-ish line" not in lines


def test_notify_reads_the_backup_diffs_from_the_repository(tmp_path: Path,
                                                           webhook: JsonReceiver) -> None:
    repo = BackupRepo(tmp_path / "backups")
    repo.commit({"r1": "hostname r1\nntp server 192.0.2.1\n"}, "first")
    commit, _ = repo.commit({"r1": "hostname r1\nntp server 192.0.2.9\n"}, "second")
    run = a_run(device("r1", DeviceStatus.OK, backup_changed=True), backup_commit=commit)
    target = NotifyTarget(url=webhook.url(), on=[E.BACKUP_CHANGED])
    (outcome,) = notify(run, None, [target], Redactor(), backup_dir=repo.path)
    assert (outcome["events"], outcome["delivered"]) == (["backup_changed"], True)
    lines = webhook.bodies[0]["message"].splitlines()
    at = lines.index("== r1: backups/r1.cfg")
    assert lines[at + 1:at + 5] == ["@@ -1,2 +1,2 @@", " hostname r1",
                                    "-ntp server 192.0.2.1", "+ntp server 192.0.2.9"]


# -- bad targets ----------------------------------------------------------------------------


def runner_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runner", *args], capture_output=True,
                          text=True, check=False, cwd=cwd, timeout=120)


@pytest.mark.parametrize(("notify_yaml", "where", "expected"), [
    ('  - url: json://127.0.0.1:9/hook\n'
     '  - url: "mailto://admin:Hunter2-pw@mail.example.net?mode=bogus"\n'
     '    on: [failed]\n',
     "job.yml:4: notify[1].url",
     "not a usable mailto:// URL: The secure mode specified (bogus) is invalid."),
    ('  - {url: "https://ops:Hunter2-pw@hooks.example.net/x", on: [failed]}\n',
     "job.yml:3: notify[0].url",
     "https:// is not a service Apprise knows (for a webhook use json:// or jsons://); "
     "expected a URL such as json://host:port/path (a webhook), "
     "mailto://user:password@host or slack://tokens"),
    ('  - "json://ops:Hunter2-pw@127.0.0.1/hook"\n',
     "job.yml:3: notify[0]",
     "a notification target is a mapping: {url: <Apprise URL>, on: [events]}"),
    # Apprise's own error quotes the token: masked
    ('  - url: "slack://T1JJ3T3L2/A1BRTD4JD/Hunter2-pw!!x"\n',
     "job.yml:3: notify[0].url",
     "not a usable slack:// URL: An invalid Slack (third) Token (********) was specified."),
    ('  - {url: "json://127.0.0.1/hook", on: [failed, sometimes]}\n',
     "job.yml:3: notify[0].on[1]",
     "expected 'failed', 'changed', 'backup_changed', 'rolled_back', 'awaiting_approval', "
     "'drift' or 'always' (got 'sometimes')"),
])
def test_a_bad_notify_target_is_a_job_error_naming_file_line_field_without_secrets(
        tmp_path: Path, notify_yaml: str, where: str, expected: str) -> None:
    job = tmp_path / "job.yml"
    job.write_text("name: push\nnotify:\n" + notify_yaml + "steps:\n  - command: show clock\n",
                   encoding="utf-8")
    proc = runner_cli("validate", "job.yml", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {where}: {expected}"
    assert "Hunter2-pw" not in proc.stdout + proc.stderr


def test_serve_refuses_a_bad_notify_url_without_quoting_it(tmp_path: Path) -> None:
    (tmp_path / "jobs").mkdir()
    proc = runner_cli("--db", f"sqlite:///{tmp_path / 'r.db'}", "serve", "--jobs", "jobs",
                      "--notify", "tgram://12345:Hunter2-pw!x/", cwd=tmp_path)
    assert proc.returncode == 2
    assert "--notify: not a usable tgram:// URL: The Telegram Bot Token specified " \
           "(12345:********) is invalid." in proc.stderr
    assert "Hunter2-pw" not in proc.stdout + proc.stderr
    alone = runner_cli("serve", "--jobs", "jobs", "--notify-on", "always", cwd=tmp_path)
    assert alone.returncode == 2
    assert "--notify-on: --notify-on needs a --notify URL to apply to" in alone.stderr


# -- delivery -------------------------------------------------------------------------------


FAILED_RUN = a_run(device("r1", DeviceStatus.CHANGED, diff="+ntp server 192.0.2.1\n"),
                   device("r2", DeviceStatus.TIMED_OUT, error=f"no prompt; sent {SECRET}",
                          error_class="DeviceTimeout"))


def test_delivered_to_a_json_webhook_and_by_mail(webhook: JsonReceiver,
                                                 smtp: SmtpReceiver) -> None:
    targets = [NotifyTarget(url=webhook.url(), on=[E.FAILED]),
               NotifyTarget(url=smtp.url(), on=[E.CHANGED, E.ALWAYS])]
    outcomes = notify(FAILED_RUN, None, targets, Redactor([SECRET]), timeout=10)
    assert [(o["url"], o["events"], o["delivered"], o["error"]) for o in outcomes] == [
        (f"json://127.0.0.1:{webhook.port}/hook", ["failed"], True, None),
        (f"mailto://127.0.0.1:{smtp.port}/ops%40example.net", ["changed", "always"], True,
         None)]
    assert all(o["status"] == "failed" for o in outcomes)
    (hook,) = webhook.bodies
    assert hook["title"] == "runner push: failed, 1 changed, 1 timed_out"
    assert hook["type"] == "failure"
    assert "- r2: timed_out, DeviceTimeout: no prompt; sent ********" in hook["message"]
    (mail,) = smtp.mails
    assert (mail.sender, mail.recipients) == ("runner@example.net", ["ops@example.net"])
    assert mail.subject == hook["title"]
    assert mail.body.splitlines() == hook["message"].splitlines()
    assert SECRET not in str(webhook.bodies) + mail.body


def test_outcomes_are_added_to_the_run_in_the_results_store(webhook: JsonReceiver,
                                                           tmp_path: Path) -> None:
    store = ResultsStore(f"sqlite:///{tmp_path / 'results.db'}")
    store.start_run(FAILED_RUN)
    store.finish_run(FAILED_RUN)
    target = [NotifyTarget(url=webhook.url(), on=[E.ALWAYS])]
    notify_run(store, FAILED_RUN, RunStatus.AWAITING_APPROVAL, target, Redactor())
    notify_run(store, FAILED_RUN, None, target, Redactor())
    row, _ = store.get_run(FAILED_RUN.run_id)
    assert [(n["status"], n["delivered"]) for n in row["notifications"]] == [
        ("awaiting_approval", True), ("failed", True)]
    assert [b["type"] for b in webhook.bodies] == ["failure", "failure"]
    assert webhook.bodies[0]["message"].splitlines()[1] == \
        "run 0123456789ab: awaiting_approval"


def test_an_older_results_database_gains_the_notifications_column(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    with create_engine(url).begin() as conn:  # the runs table as it was before
        conn.execute(text("CREATE TABLE runs (run_id VARCHAR(32) PRIMARY KEY, job VARCHAR(200) "
                          "NOT NULL, job_file TEXT, started VARCHAR(40) NOT NULL, finished "
                          "VARCHAR(40), status VARCHAR(20) NOT NULL, dry_run BOOLEAN NOT NULL, "
                          "engine VARCHAR(20) NOT NULL, occurrence VARCHAR(100), summary JSON, "
                          "backup_commit VARCHAR(64))"))
        conn.execute(text("INSERT INTO runs VALUES ('old1', 'push', NULL, '2026', '2026', "
                          "'ok', 0, 'local', NULL, '{}', NULL)"))
    store = ResultsStore(url)
    row, _ = store.get_run("old1")
    assert row["notifications"] is None
    store.add_notifications("old1", [{"url": "json://h/x", "delivered": True}])
    assert store.get_run("old1")[0]["notifications"] == [{"url": "json://h/x",
                                                          "delivered": True}]


def test_a_receiver_that_is_down_is_recorded_not_raised() -> None:
    port = free_port()  # nothing listens here
    outcomes = notify(FAILED_RUN, None,
                      [NotifyTarget(url=f"json://ops:{SECRET}@127.0.0.1:{port}/hook")],
                      Redactor(), timeout=5)
    assert outcomes == [{
        "url": f"json://ops:****@127.0.0.1:{port}/hook", "events": ["failed"],
        "status": "failed", "delivered": False,
        "error": "A Connection error occurred sending JSON notification to 127.0.0.1.",
        "at": outcomes[0]["at"]}]


@pytest.mark.parametrize("receiver", ["silent", "dripping"])
def test_a_receiver_that_hangs_holds_the_caller_no_longer_than_the_timeout(
        receiver: str, smtp: SmtpReceiver) -> None:
    hang = silent_listener() if receiver == "silent" else dripping_server()
    with hang as port:
        targets = [NotifyTarget(url=f"json://127.0.0.1:{port}/hook"),
                   NotifyTarget(url=(f"mailto://127.0.0.1:{port}?smtp=127.0.0.1&mode=insecure"
                                     "&from=runner@example.net&to=ops@example.net")),
                   NotifyTarget(url=smtp.url())]  # a healthy one beside them
        started = time.monotonic()
        outcomes = notify(FAILED_RUN, None, targets, Redactor(), timeout=2)
        assert time.monotonic() - started < 2 + 1.5  # the bound, with room for a busy host
    assert [o["delivered"] for o in outcomes] == [False, False, True]
    assert all(o["error"] for o in outcomes[:2])
    if receiver == "dripping":
        # no socket read ever times out: only the bound on the whole delivery ends it
        assert outcomes[0]["error"] == "no answer within 2s"
    assert len(smtp.mails) == 1


def test_a_hung_receiver_does_not_hold_the_process_at_exit() -> None:
    """Apprise's own thread pool would be joined at interpreter exit; runner's delivery
    threads are daemons, so a process that notified a hung receiver still exits at once."""
    with dripping_server() as port:
        code = (
            "from runner.job.notify import NotifyTarget, notify\n"
            "from runner.redact import Redactor\n"
            "from tests.unit.test_notify import FAILED_RUN\n"
            f"out = notify(FAILED_RUN, None, [NotifyTarget(url='json://127.0.0.1:{port}/h')],"
            " Redactor(), timeout=1)\n"
            "print(out[0]['delivered'], out[0]['error'])\n")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              check=False, cwd=ROOT, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False no answer within 1s"
