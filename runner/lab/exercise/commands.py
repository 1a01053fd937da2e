"""`runner lab exercise list|start|check|solve`: practice on a lab with a checker."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import click

from runner.cli_common import echo, settings_of
from runner.lab.exercise import play
from runner.lab.exercise.goals import Verdict
from runner.lab.exercise.spec import exercise_dir, find_exercise, list_exercises
from runner.lab.service import Labs

DIR_OPTION = click.option("--dir", "directory", type=click.Path(file_okay=False,
                                                                path_type=Path),
                          help="Where exercises are (default: lab/exercises).")
LAB_OPTION = click.option("--lab", "lab_ref", metavar="TOPOLOGY|NAME",
                          help="Which lab (default: the one the exercise started on, or the "
                               "only lab up).")


def _labs() -> Labs:
    return Labs(settings_of(click.get_current_context()))


def _print_verdicts(verdicts: list[Verdict]) -> None:
    for v in verdicts:
        echo(f"  {'ok  ' if v.holds else 'FAIL'}  {v.goal.text}")
        echo(textwrap.indent(textwrap.fill(v.evidence, 88), "          "))
    held = sum(v.holds for v in verdicts)
    echo(f"{held} of {len(verdicts)} goals hold")


@click.group()
def exercise() -> None:
    """Exercises: a lab broken on purpose, goals to meet, a checker and a solution."""


@exercise.command(name="list")
@DIR_OPTION
def list_(directory: Path | None) -> None:
    """Every exercise, with its title."""
    found = list_exercises(exercise_dir(directory))
    width = max((len(e.name) for e in found), default=0)
    for ex in found:
        echo(f"{ex.name.ljust(width)}  {ex.spec.title}")


@exercise.command()
@click.argument("name")
@LAB_OPTION
@DIR_OPTION
@click.option("--wait", type=click.FloatRange(0, 600), default=60, show_default=True,
              help="Seconds the lab may take to be healthy first, and to show the break.")
def start(name: str, lab_ref: str | None, directory: Path | None, wait: float) -> None:
    """Break the lab as exercise NAME says, and tell the symptom."""
    labs = _labs()
    ex = find_exercise(name, directory)
    lab = play.choose_lab(labs, ex, lab_ref)
    verdicts = play.start(labs, lab, ex, wait, click.echo)
    echo(f"\n{ex.spec.title}\n\n{ex.spec.symptom.strip()}\n")
    echo("goals:")
    for goal in ex.goals:
        echo(f"  {goal.text}")
    if play.all_hold(verdicts):
        echo(f"\nwarning: every goal still holds after {wait:.0f}s", err=True)
    echo(f"\ncheck: runner lab exercise check {ex.name}   "
         f"a fix: runner lab exercise solve {ex.name}")


@exercise.command()
@click.argument("name")
@LAB_OPTION
@DIR_OPTION
@click.option("--wait", type=click.FloatRange(0, 600), default=0, show_default=True,
              help="Check again every second until every goal holds or this many seconds "
                   "passed (routing takes a few seconds to converge).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def check(name: str, lab_ref: str | None, directory: Path | None, wait: float,
          as_json: bool) -> None:
    """Which goals of exercise NAME hold, with the evidence; exit 0 only when all do."""
    labs = _labs()
    ex = find_exercise(name, directory)
    lab = play.choose_lab(labs, ex, lab_ref)
    verdicts = play.poll(labs, lab, ex, wait, play.all_hold)
    solved = play.all_hold(verdicts)
    if as_json:
        echo(json.dumps({"exercise": ex.name, "lab": lab.plan.lab, "solved": solved,
                               "goals": [v.to_json() for v in verdicts]}, indent=2))
    else:
        echo(f"exercise {ex.name} on lab {lab.plan.lab}:")
        _print_verdicts(verdicts)
        if solved:
            echo("solved")
    sys.exit(0 if solved else 1)


@exercise.command()
@click.argument("name")
@LAB_OPTION
@DIR_OPTION
@click.option("--apply", "do_apply", is_flag=True, help="Apply the fix to the lab.")
def solve(name: str, lab_ref: str | None, directory: Path | None, do_apply: bool) -> None:
    """Show one fix for exercise NAME (and apply it with --apply)."""
    ex = find_exercise(name, directory)
    labs = _labs()
    lab_name = lab_ref or "LAB"
    lab = None
    if do_apply or lab_ref:
        lab = play.choose_lab(labs, ex, lab_ref)
        lab_name = lab.plan.lab
    echo(textwrap.fill(ex.spec.solution.explanation.strip(), 88))
    echo("\nthe fix:")
    for step in ex.spec.solution.steps:
        for line in play.describe(step, lab_name):
            echo(f"  {line}")
    if do_apply and lab is not None:
        echo()
        for step in ex.spec.solution.steps:
            echo(f"applied: {play.apply(labs, lab, step)}")
        echo(f"now: runner lab exercise check {ex.name} --wait 60")
