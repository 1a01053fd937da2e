"""Exercise files: the shipped ones load and fit the practice lab; bad ones get one
file:line: field: error and exit code 2."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from runner.errors import ExerciseError
from runner.lab.exercise.spec import load_exercise, parse_goal
from runner.lab.topology import load_topology
from runner.vocab import GoalKind
from tests.support.base import LAB_DIR

SHIPPED = sorted((LAB_DIR / "exercises").glob("*.yml"))
BAD = sorted((Path(__file__).parent / "bad_exercises").glob("*.yml"))


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_exercise_fits_the_practice_lab(path: Path) -> None:
    ex = load_exercise(path)
    practice = load_topology(LAB_DIR / "practice.clab.yml")
    assert ex.spec.lab == practice.name
    assert ex.nodes() <= set(practice.nodes), ex.nodes() - set(practice.nodes)
    assert ex.goals and ex.spec.solution.steps and ex.spec.symptom.strip()


def test_goal_sentences() -> None:
    g = parse_goal("r1  has bgp established with 10.255.0.3")
    assert (g.kind, g.node, g.target, g.state) == (GoalKind.BGP, "r1", "10.255.0.3",
                                                   "Established")
    g = parse_goal("r2 OSPF Full with r3")
    assert (g.kind, g.node, g.target, g.state) == (GoalKind.OSPF, "r2", "r3", "Full")
    assert parse_goal("h1 reaches 10.3.3.10").kind is GoalKind.REACHES
    with pytest.raises(ValueError, match="not an IPv4 address"):
        parse_goal("h1 reaches h2")
    with pytest.raises(ValueError, match="not a goal"):
        parse_goal("r1 is happy")


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_exercise_names_file_line_and_problem(path: Path) -> None:
    m = re.match(r"# expect: line (\d+): (.*)", path.read_text().splitlines()[0])
    assert m, f"{path.name} lacks its '# expect: line N: text' header"
    with pytest.raises(ExerciseError) as info:
        load_exercise(path)
    assert str(info.value).startswith(f"{path}:{m.group(1)}: "), str(info.value)
    assert m.group(2) in str(info.value)


def test_cli_reports_a_bad_exercise_in_one_line_with_exit_code_2(tmp_path: Path) -> None:
    path = Path(__file__).parent / "bad_exercises" / "bad-goal.yml"
    proc = subprocess.run([sys.executable, "-m", "runner", "lab", "exercise", "check",
                           str(path)], capture_output=True, text=True, check=False,
                          cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {path}:9: goals[0]: 'h1 pings 10.3.3.10' is not a goal; write one of: "
        "NODE reaches ADDRESS; NODE has BGP STATE with PEER-ADDRESS; NODE has OSPF STATE "
        "with NODE|ROUTER-ID"]


def test_env_without_exec_is_reported_not_dropped(tmp_path: Path) -> None:
    topo = tmp_path / "t.clab.yml"
    topo.write_text("name: t\ntopology:\n  nodes:\n    r1:\n      kind: frr\n"
                    "      env: {A: b}\n      ports: [8080:80]\n")
    warnings = load_topology(topo).warnings
    assert any(w.startswith(f"{topo}:6: topology.nodes.r1.env is ignored") for w in warnings)
    assert any(w.startswith(f"{topo}:7: topology.nodes.r1.ports is ignored") for w in warnings)


def test_exercise_list_names_every_shipped_exercise_with_its_title() -> None:
    proc = subprocess.run([sys.executable, "-m", "runner", "lab", "exercise", "list", "--dir",
                           str(LAB_DIR / "exercises")], capture_output=True, text=True,
                          check=False, timeout=60)
    assert proc.returncode == 0, proc.stderr
    listed = dict(line.split(None, 1) for line in proc.stdout.splitlines())
    shipped = sorted(p.stem for p in (LAB_DIR / "exercises").glob("*.yml"))
    assert sorted(listed) == shipped and len(shipped) >= 5
    for name in shipped:
        assert listed[name].strip() == \
            load_exercise(LAB_DIR / "exercises" / f"{name}.yml").spec.title
