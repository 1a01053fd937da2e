"""What runner prints never drives the terminal: escape sequences and control characters
from exercise files, device output and logs are shown escaped (`\\x1b`), in every command,
and stay intact in --json (where JSON escapes them)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest

from runner.logsetup import SafeFormatter, terminal_safe
from runner.records import DeviceResult, RunResult, StepResult, now_iso
from runner.store.results import ResultsStore
from runner.vocab import DeviceStatus, RunStatus, StepKind

# OSC (retitle, hyperlink, clipboard), CSI (clear screen, colours, cursor), C1 CSI, bell,
# backspace and a lone carriage return (rewrites what the line seemed to say).
HOSTILE = ("\x1b]0;pwned\x07 \x1b]52;c;ZWNobyBwd25lZA==\x07 \x1b[2J\x1b[H \x9b31m "
           "\x08\x08ok\rforged \x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\")
CONTROLS = [chr(c) for c in (*range(0x00, 0x09), *range(0x0b, 0x20), *range(0x7f, 0xa0))]


def raw_controls(text: str) -> list[str]:
    return sorted({repr(c) for c in text if c in CONTROLS})


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runner", *args], capture_output=True,
                          text=True, check=False, timeout=60)


def test_terminal_safe_escapes_every_control_but_tab_and_newline() -> None:
    assert terminal_safe("a\tb\nc\r\nd") == "a\tb\nc\nd"
    assert terminal_safe("\x1b[2J\x07\x9b\rx\x00") == "\\x1b[2J\\x07\\x9b\\x0dx\\x00"
    assert raw_controls(terminal_safe(HOSTILE + "".join(CONTROLS))) == []


def test_an_exercise_file_cannot_drive_the_terminal(tmp_path: Path) -> None:
    hostile = json.dumps(HOSTILE)  # a YAML double-quoted string holding the sequences
    exercises = tmp_path / "exercises"
    exercises.mkdir()
    (exercises / "evil.yml").write_text(f"""\
title: {hostile}
lab: practice
symptom: {hostile}
hints: [{hostile}]
faults:
  - node: r3
    config: [interface eth3, shutdown]
goals:
  - h1 reaches 10.3.3.10
solution:
  explanation: {hostile}
  steps:
    - node: r3
      config: [interface eth3, {hostile}]
""", encoding="utf-8")
    for args in (("list",), ("solve", "evil")):
        proc = cli("lab", "exercise", *args, "--dir", str(exercises))
        assert proc.returncode == 0, proc.stderr
        assert raw_controls(proc.stdout + proc.stderr) == []
        assert "\\x1b]0;pwned\\x07" in proc.stdout


def test_device_output_cannot_drive_the_terminal(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'r.db'}"
    store = ResultsStore(db)
    device = DeviceResult("r1", DeviceStatus.FAILED, error=f"rejected: {HOSTILE}",
                          error_class="CommandRejected", finished=now_iso(), steps=[
                              StepResult(name="show banner", kind=StepKind.COMMAND,
                                         output=f"banner motd {HOSTILE}",
                                         diff=f"+banner {HOSTILE}")])
    run = RunResult(run_id="7e77e77e77e7", job=f"job {HOSTILE}", started=now_iso(),
                    finished=now_iso(), dry_run=False, devices=[device])
    store.start_run(run, ["r1"])
    store.record_devices(run.run_id, [device], {"r1": 0})
    store.finish_run(run, RunStatus.FAILED, f"run error {HOSTILE}")
    for args in (("show", run.run_id, "--host", "r1"), ("show", run.run_id, "--all"),
                 ("history",)):
        proc = cli("--db", db, *args)
        assert proc.returncode in (0, 1), proc.stderr
        assert raw_controls(proc.stdout + proc.stderr) == [], args
        assert "\\x1b" in proc.stdout, args
    shown = cli("--db", db, "show", run.run_id, "--json")
    assert raw_controls(shown.stdout) == []
    assert json.loads(shown.stdout)["devices"][0]["steps"][0]["output"] == \
        f"banner motd {HOSTILE}"  # the data itself is kept as the device sent it


@pytest.mark.parametrize("message", [HOSTILE, "exec 'x' exited 1: \x1b[31mred\x1b[0m"])
def test_log_lines_cannot_drive_the_terminal(message: str) -> None:
    stream = StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(SafeFormatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("runner.test.terminal")
    logger.addHandler(handler)
    try:
        logger.warning("node h1: %s", message)
    finally:
        logger.removeHandler(handler)
    assert raw_controls(stream.getvalue()) == []
    assert stream.getvalue().startswith("WARNING node h1: ")
