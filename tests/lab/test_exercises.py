"""Every shipped exercise on a real practice lab: start breaks exactly its goals, the shown
fix applied makes check pass; and a person fixing one at r1's CLI over SSH, through tmux."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.lab.exercise.spec import list_exercises
from tests.support.base import LAB_DIR
from tests.support.lab import RunningLab, poll, practice_copy, runner, status

EXERCISES = LAB_DIR / "exercises"
# The goals each exercise breaks (the others keep holding while it is broken).
BROKEN = {
    "ospf-area-mismatch": {"r1 has OSPF Full with r2", "r2 has OSPF Full with r1"},
    "bgp-wrong-neighbor": {"r1 has BGP Established with 10.255.0.3",
                           "r3 has BGP Established with 10.255.0.1", "h1 reaches 10.3.3.10"},
    "static-blackhole": {"h1 reaches 10.3.3.10", "h2 reaches 10.1.1.10"},
    "interface-shut": {"h1 reaches 10.3.3.10", "h2 reaches 10.1.1.10"},
    "mtu-mismatch": {"r2 has OSPF Full with r3", "r3 has OSPF Full with r2"},
    "bgpd-down": {"r1 has BGP Established with 10.255.0.3",
                  "r3 has BGP Established with 10.255.0.1", "h1 reaches 10.3.3.10"},
    "lossy-link": {"h1 reaches 10.1.1.1", "h1 reaches 10.3.3.10"},
}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    with practice_copy(tmp_path_factory.mktemp("rgex"), "rgex", 62) as running:
        yield running


def check(lab: RunningLab, name: str, wait: int = 0) -> tuple[int, dict[str, Any]]:
    proc = runner("lab", "exercise", "check", name, "--lab", lab.plan.lab, "--json",
                  "--wait", str(wait), "--dir", str(EXERCISES), check=False)
    data: dict[str, Any] = json.loads(proc.stdout)
    return proc.returncode, data


def failing(result: tuple[int, dict[str, Any]]) -> set[str]:
    return {g["goal"] for g in result[1]["goals"] if not g["holds"]}


def test_every_shipped_exercise_is_tested() -> None:
    assert {e.name for e in list_exercises(EXERCISES)} == set(BROKEN)
    assert len(BROKEN) >= 5


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_exercise_breaks_its_goals_and_its_solution_fixes_them(lab: RunningLab,
                                                               name: str) -> None:
    started = runner("lab", "exercise", "start", name, "--lab", lab.plan.lab, "--dir",
                     str(EXERCISES), check=False)
    try:
        assert started.returncode == 0, started.stderr
        assert "goals:" in started.stdout
        assert status(lab)["exercise"] == name
        # Routing takes a few seconds to notice (dead intervals): poll, bounded.
        broken = poll(lambda: check(lab, name), lambda r: failing(r) == BROKEN[name])
        assert broken[0] == 1
        assert failing(broken) == BROKEN[name], broken[1]
        assert all(g["evidence"] for g in broken[1]["goals"])
        shown = runner("lab", "exercise", "solve", name, "--dir", str(EXERCISES))
        assert "the fix:" in shown.stdout
        runner("lab", "exercise", "solve", name, "--lab", lab.plan.lab, "--apply", "--dir",
               str(EXERCISES))
    finally:
        if started.returncode == 0:  # leave the lab mended for the next exercise
            runner("lab", "exercise", "solve", name, "--lab", lab.plan.lab, "--apply",
                   "--dir", str(EXERCISES), check=False)
    code, data = check(lab, name, wait=90)
    assert code == 0, data
    assert data["solved"] is True


def test_check_text_names_failing_goals_with_evidence(lab: RunningLab) -> None:
    runner("lab", "exercise", "start", "interface-shut", "--lab", lab.plan.lab, "--dir",
           str(EXERCISES))
    try:
        proc = runner("lab", "exercise", "check", "interface-shut", "--dir", str(EXERCISES),
                      "--lab", lab.plan.lab, check=False)
        assert proc.returncode == 1
        assert "FAIL  h1 reaches 10.3.3.10" in proc.stdout
        assert "ping 10.3.3.10:" in proc.stdout and "100% packet loss" in proc.stdout
    finally:
        runner("lab", "exercise", "solve", "interface-shut", "--lab", lab.plan.lab,
               "--apply", "--dir", str(EXERCISES))
    assert check(lab, "interface-shut", wait=90)[0] == 0


class Tmux:
    """A tmux server of this test's own (its own socket): started and killed here only."""

    def __init__(self, socket: str) -> None:
        self.socket = socket

    def __call__(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True,
                              text=True, check=True, timeout=30).stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "cli", "-S", "-200")

    def wait_for(self, text: str, after: int = 0) -> str:
        """Until `text` appears on screen past its first `after` occurrences."""
        screen = poll(self.screen, lambda s: s.count(text) > after, bound=30, interval=0.2)
        assert screen.count(text) > after, f"never saw {text!r}:\n{screen}"
        return screen

    def type(self, line: str, prompt: str) -> str:
        before = self.screen().count(prompt)
        # -l: the text as typed ("end" alone would be tmux's name of the End key)
        self("send-keys", "-t", "cli", "-l", line)
        self("send-keys", "-t", "cli", "Enter")
        return self.wait_for(prompt, before)


def test_a_person_fixes_it_at_the_router_cli(lab: RunningLab, tmp_path: Path) -> None:
    runner("lab", "exercise", "start", "bgp-wrong-neighbor", "--lab", lab.plan.lab, "--dir",
           str(EXERCISES))
    tmux = Tmux(f"rgtest-{os.getpid()}")
    ssh_config = lab.lab_dir / "ssh_config"
    try:
        tmux("new-session", "-d", "-s", "cli", "-x", "160", "-y", "50",
             f"ssh -F {ssh_config} r1")
        tmux.wait_for("r1#")
        tmux.type("configure terminal", "r1(config)#")
        tmux.type("router bgp 65000", "r1(config-router)#")
        tmux.type("no neighbor 10.255.0.30", "r1(config-router)#")
        tmux.type("neighbor 10.255.0.3 peer-group CORE", "r1(config-router)#")
        tmux.type("end", "r1#")
        screen = tmux.screen()
        assert "% " not in screen, screen  # vtysh took every line
        tmux("send-keys", "-t", "cli", "-l", "exit")
        tmux("send-keys", "-t", "cli", "Enter")
        code, data = check(lab, "bgp-wrong-neighbor", wait=90)
        assert code == 0, data
    finally:
        subprocess.run(["tmux", "-L", tmux.socket, "kill-server"], capture_output=True,
                       check=False)
        if check(lab, "bgp-wrong-neighbor")[0] != 0:
            runner("lab", "exercise", "solve", "bgp-wrong-neighbor", "--lab", lab.plan.lab,
                   "--apply", "--dir", str(EXERCISES), check=False)
