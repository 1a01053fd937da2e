"""Every `runner` command the README and docs/tutorial.md show exists, with every option it
is written with (resolved through runner.cli's real click tree), and each command is run by
a named test. tests/sim/test_readme.py runs the simulator-applicable lines themselves."""

from __future__ import annotations

from pathlib import Path

from tests.support.base import ROOT
from tests.support.readme_commands import check, documented

# Where each documented command is run for real. "readme" = tests/sim/test_readme.py runs
# the documents' own lines (paths substituted); the others run the same command (or, where
# said, the function behind it) with their own arguments.
README = "tests/sim/test_readme.py"
COVERAGE: dict[tuple[str, ...], list[str]] = {
    (): ["tests/unit/test_startup.py (--help)", "tests/unit/test_cli_help.py"],
    ("lab", "sim"): [README, "tests/support/fleet.py"],
    ("run",): [README, "tests/lab/test_jobs.py", "tests/lab/test_safe_changes.py",
               "tests/sim/test_safe_changes.py (--rerun)", "tests/sim/test_celery.py (celery)",
               "tests/sim/test_trusted_changes.py (--no-approval, --reason, --rerun)",
               "tests/sim/test_scheduling.py (--override-blackout)",
               "tests/unit/test_blackouts.py (refused inside a window)",
               "tests/lab/test_rehearse.py (--rehearse)",
               "tests/sim/test_rehearse.py (--rehearse, --keep)",
               "tests/lab/test_tutorial.py (--rehearse twin)"],
    ("history",): [README, "tests/sim/test_scheduling.py (--workflow)"],
    ("show",): [README, "tests/sim/test_safe_changes.py (--failed)"],
    ("schedule", "list"): [README],
    ("schedule", "status"): ["tests/sim/test_schedule_pause.py"],
    ("schedule", "pause"): ["tests/sim/test_schedule_pause.py (--reason)"],
    ("schedule", "resume"): ["tests/sim/test_schedule_pause.py"],
    ("schedule", "run"): [README, "tests/sim/test_scheduling.py (--override-blackout)"],
    ("schedule", "occurrences"): [README, "tests/sim/test_trusted_changes.py",
                                  "tests/web/test_api.py"],
    ("serve",): [README, "tests/lab/test_serve.py", "tests/sim/test_notify.py (--notify)",
                 "tests/web/test_api.py (--metrics-port)",
                 "tests/sim/test_serve_engines.py (--engine celery, at, jitter)",
                 "tests/sim/test_scheduling.py (--listen, --syslog)",
                 "tests/sim/test_rehearse.py (--twin)"],
    ("workflow", "list"): [README, "tests/sim/test_scheduling.py"],
    ("workflow", "show"): ["tests/sim/test_scheduling.py", "tests/web/test_scheduling.py"],
    ("validate",): [README, "tests/unit/test_jobs_input.py", "tests/unit/test_workflows.py",
                    "tests/unit/test_blackouts.py (blackouts.yml)"],
    ("schema",): [README, "tests/unit/test_jobs_input.py",
                  "tests/unit/test_blackouts.py (blackouts)"],
    ("token", "create"): [README, "tests/support/web.py"],
    ("token", "list"): [README],
    ("token", "revoke"): [README, "tests/web/test_api.py"],
    ("db",): [README],
    ("db", "current"): [README, "tests/unit/test_store.py"],
    ("db", "upgrade"): [README, "tests/unit/test_store.py"],
    ("db", "import"): ["tests/sim/test_db_loss.py"],
    ("approve",): ["tests/sim/test_safe_changes.py", "tests/sim/test_compliance.py",
                   "tests/sim/test_scheduling.py (--override-blackout)"],
    ("compliance",): ["tests/lab/test_compliance.py", "tests/unit/test_compliance.py"],
    ("remediate",): ["tests/lab/test_compliance.py", "tests/sim/test_compliance.py",
                     "tests/web/test_api.py (POST /api/compliance/remediate)"],
    ("reject",): ["tests/sim/test_safe_changes.py"],
    ("cancel",): ["tests/web/test_api.py"],
    ("web",): ["tests/support/web.py"],
    ("device",): ["tests/web/test_devices.py (equal to GET /api/devices[/NAME])"],
    ("worker",): ["tests/sim/test_celery.py", "tests/lab/test_workers.py"],
    # the lab (root, FRR): tests/lab, never run here beside other sessions' labs
    ("lab", "up"): ["tests/lab/test_lifecycle.py", "tests/lab/test_hardening.py"],
    ("lab", "down"): ["tests/lab/test_lifecycle.py"],
    ("lab", "exec"): ["tests/lab/test_practice_lab.py"],
    ("lab", "status"): ["tests/lab/test_lifecycle.py",
                        "tests/unit/test_containerlab_backend.py"],
    ("lab", "wait"): ["tests/lab/test_tutorial.py"],
    # the practice range (root, FRR)
    ("lab", "link"): ["tests/lab/test_faults.py"],
    ("lab", "netem"): ["tests/lab/test_faults.py"],
    ("lab", "stop"): ["tests/lab/test_faults.py"],
    ("lab", "start"): ["tests/lab/test_faults.py"],
    ("lab", "capture"): ["tests/lab/test_faults.py"],
    ("lab", "graph"): ["tests/lab/test_faults.py"],
    ("lab", "save"): ["tests/lab/test_faults.py"],
    ("lab", "exercise", "list"): ["tests/unit/test_exercises.py"],
    ("lab", "exercise", "start"): ["tests/lab/test_exercises.py"],
    ("lab", "exercise", "check"): ["tests/lab/test_exercises.py"],
    ("lab", "exercise", "solve"): ["tests/lab/test_exercises.py"],
    ("twin", "up"): ["tests/lab/test_twin.py", "tests/sim/test_twin.py (simulated devices)",
                     "tests/unit/test_twin.py (refusals: exit 2, nothing created)"],
    ("twin", "sync"): ["tests/lab/test_twin.py", "tests/sim/test_twin.py",
                       "tests/sim/test_rehearse.py (--reset)"],
    ("twin", "down"): ["tests/lab/test_twin.py", "tests/unit/test_twin.py (not up)",
                       "tests/lab/test_tutorial.py"],
}


def test_every_documented_command_and_option_exists() -> None:
    commands = documented()
    assert len(commands) > 40
    problems = []
    for command in commands:
        _path, found = check(command.argv)
        problems += [f"{command.where}: {command.text}: {p}" for p in found]
    assert problems == []


def test_the_checker_finds_what_does_not_exist() -> None:
    assert check(("run", "jobs/x.yml", "-i", "inv", "--dry-run")) == (("run",), [])
    assert check(("--db", "URL", "db", "current", "--json")) == (("db", "current"), [])
    assert check(("lab", "exec", "r1", "--", "ping", "-c", "3")) == (("lab", "exec"), [])
    assert check(("run", "--dryrun"))[1] == ["`runner run` has no option --dryrun"]
    assert check(("schedule", "lst"))[1] == ["`runner schedule` has no command 'lst'"]
    assert check(("--nope", "history"))[1] == ["`runner ` has no option --nope"]


def test_every_documented_command_is_run_by_a_named_test() -> None:
    unclassified = sorted({f"{c.where}: {c.text}" for c in documented()
                           if c.argv and check(c.argv)[0] not in COVERAGE})
    assert unclassified == []
    for where in COVERAGE.values():
        assert where
        for test in where:
            assert (ROOT / test.split(" ")[0]).is_file(), test


def test_the_tutorial_exists_and_is_read() -> None:
    tutorial = ROOT / "docs" / "tutorial.md"
    assert tutorial.is_file()
    assert any(c.doc == tutorial for c in documented())
    assert Path("README.md").name in {c.doc.name for c in documented()}
