"""docs/tutorial.md as written, on the practice lab: every `runner` and `git` line of its
shell blocks runs in order (the lab's own up/down, `serve` and the dashboard lines excepted:
the fixture brings the lab up and down, tests/lab/test_serve.py and tests/web run those),
with the lab's private name and inventory substituted; each says what the tutorial says."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.support.base import ROOT
from tests.support.lab import RunningLab
from tests.support.readme_commands import _split

TUTORIAL = ROOT / "docs" / "tutorial.md"
NOT_HERE = {("lab", "up"), ("lab", "down"), ("serve",), ("web",), ("token", "create")}


def shell_lines() -> list[tuple[int, list[str]]]:
    """(line number, words) of each runner/git line in the tutorial's sh blocks."""
    out, in_sh = [], False
    for number, raw in enumerate(TUTORIAL.read_text(encoding="utf-8").splitlines(), 1):
        text = raw.strip()
        if text.startswith("```"):
            in_sh = not in_sh and text == "```sh"
            continue
        if in_sh and text and not text.startswith("#"):
            words = _split(text)
            if words and words[0] in ("$R", "git"):
                out.append((number, words))
    return out


def the_yaml_block() -> dict[str, object]:
    """The `schedule:` the tutorial adds to my-jobs/ospf-area.yml."""
    text = TUTORIAL.read_text(encoding="utf-8")
    block = re.search(r"```yaml\n(.*?)```", text, re.S)
    assert block
    return dict(yaml.safe_load(block.group(1)))


def test_the_tutorial_runs_as_written(practice_lab: RunningLab, tmp_path: Path) -> None:
    for name in ("jobs", "templates"):
        shutil.copytree(ROOT / name, tmp_path / name)
    mine = yaml.safe_load((ROOT / "jobs" / "ospf-area.yml").read_text(encoding="utf-8"))
    (tmp_path / "my-jobs").mkdir()
    (tmp_path / "my-jobs" / "ospf-area.yml").write_text(
        yaml.safe_dump({**mine, **the_yaml_block()}, sort_keys=False), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNNER_")}
    substitutes = {"lab/practice.clab.yml": str(practice_lab.topology),
                   "$INV": str(practice_lab.lab_dir / "inventory")}
    ran: dict[str, subprocess.CompletedProcess[str]] = {}
    last_run = ""
    runs: dict[str, str] = {}
    twin_up = False
    try:
        for number, words in shell_lines():
            argv = [substitutes.get(w, w) for w in words]
            if argv[0] == "$R":
                path = tuple(w for w in argv[1:3] if not w.startswith("-"))
                if path in NOT_HERE or path[:1] in NOT_HERE:
                    continue
                argv = [sys.executable, "-m", "runner", *[last_run if w == "<run>" else w
                                                          for w in argv[1:]]]
            proc = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, env=env,
                                  check=False, timeout=600)
            line = " ".join(words)
            ran[line] = proc
            if words[1:3] == ["twin", "up"]:
                twin_up = True
            expected = 1 if "schedule run ospf-area" in line else 4 if "--rehearse" in line else 0
            assert proc.returncode == expected, (f"docs/tutorial.md:{number}: {line}\n"
                                                 f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
            if "schedule run ospf-area" in line or "--rehearse" in line:
                history = json.loads(subprocess.run(
                    [sys.executable, "-m", "runner", "history", "--json", "-n", "1"],
                    capture_output=True, text=True, cwd=tmp_path, env=env, check=True).stdout)
                last_run = history[0]["run_id"]
                runs["rehearsed" if "--rehearse" in line else "scheduled"] = last_run
    finally:  # the tutorial's twin goes down even when a line failed
        if twin_up:
            subprocess.run([sys.executable, "-m", "runner", "twin", "down", "twin"],
                           cwd=tmp_path, env=env, check=False, timeout=300)

    def out(fragment: str) -> str:
        found = [p.stdout for line, p in ran.items() if fragment in line]
        assert found, (fragment, list(ran))
        return found[0]

    assert "ospf-area" in out("schedule list --jobs my-jobs")
    rows = {r.split()[0]: r.split()[1] for r in out("schedule run ospf-area").splitlines()
            if re.match(r"r\d ", r)}
    assert rows == {"r1": "rolled_back", "r2": "skipped", "r3": "skipped", "r4": "skipped"}
    row = next(r for r in out("history").splitlines() if r.startswith(runs["scheduled"]))
    assert row.split()[1:2] == ["ospf-area"] and " failed " in row
    shown = out("show <run> --host r1")
    assert "CheckFailed" in shown and "saw 0 == 2" in shown and "+ ip ospf area 1" in shown
    assert "rolled_back" in shown
    assert "description" in out("git -C backups diff HEAD~1 -- r1.cfg")
    assert len(out("git -C backups log --stat").split("\ncommit ")) >= 2
    # the rehearsal: failed on the twin, production untouched, the evidence shown
    assert "rehearsal on twin twin: FAILED: production was NOT contacted" in \
        out("--rehearse twin")
    shown = ran["$R show <run>"].stdout
    assert "status rehearsal_failed" in shown and "ospf after" in shown
    assert "r1 on the twin" in shown and runs["rehearsed"] != runs["scheduled"]
