"""Start an exercise (break the lab), check its goals (polling up to a bound), apply a fix."""

from __future__ import annotations

import time
from collections.abc import Callable

from runner.errors import ExerciseError, LabError, LabNotFound
from runner.lab.exercise.goals import Verdict, evaluate
from runner.lab.exercise.spec import Action, Exercise
from runner.lab.faults import Netem, split_endpoint
from runner.lab.impair import Impair, data_endpoint
from runner.lab.service import Labs
from runner.lab.state import LabState
from runner.lab.system import run
from runner.vocab import LinkState

POLL_INTERVAL = 1.0


def choose_lab(labs: Labs, exercise: Exercise, lab_ref: str | None) -> LabState:
    """--lab, else the lab this exercise was started on, else the only lab up."""
    if lab_ref:
        lab = labs.find_lab(lab_ref)
    else:
        every = labs.index.all_labs()
        started = [lab for lab in every if lab.exercise == exercise.name]
        candidates = started or every
        if not candidates:
            raise LabNotFound("no lab is up: `runner lab up lab/practice.clab.yml` first")
        if len(candidates) > 1:
            raise LabError(f"several labs are up ({', '.join(c.plan.lab for c in candidates)})"
                           "; pass --lab")
        lab = candidates[0]
    missing = sorted(exercise.nodes() - set(lab.plan.nodes))
    if missing:
        raise ExerciseError(f"exercise {exercise.name} needs nodes {', '.join(missing)}, "
                            f"which lab {lab.plan.lab} lacks (it is written for the "
                            f"{exercise.spec.lab or 'practice'} lab)", path=exercise.path)
    return lab


def check(labs: Labs, lab: LabState, exercise: Exercise) -> list[Verdict]:
    return [evaluate(labs, lab, goal) for goal in exercise.goals]


def poll(labs: Labs, lab: LabState, exercise: Exercise, wait: float,
         done: Callable[[list[Verdict]], bool]) -> list[Verdict]:
    """Check every POLL_INTERVAL until `done` or `wait` seconds passed; the last verdicts."""
    deadline = time.monotonic() + wait
    while True:
        verdicts = check(labs, lab, exercise)
        if done(verdicts) or time.monotonic() >= deadline:
            return verdicts
        time.sleep(POLL_INTERVAL)


def all_hold(verdicts: list[Verdict]) -> bool:
    return all(v.holds for v in verdicts)


def some_fail(verdicts: list[Verdict]) -> bool:
    return not all_hold(verdicts)


def apply(labs: Labs, lab: LabState, action: Action) -> str:
    """Carry out one action of an exercise's faults or solution; what it did."""
    impair = Impair(labs)
    if action.config is not None:
        assert action.node is not None
        router = action.node
        if lab.plan.nodes[router].kind_impl.cli is None:
            raise ExerciseError(f"{router} is not a router: config lines need vtysh")
        argv = ["vtysh", "-c", "configure terminal", *[a for line in action.config
                                                        for a in ("-c", line)]]
        proc = labs.exec_in(lab, router, argv, timeout=60)
        rejected = [ln for ln in proc.stdout.splitlines() if ln.startswith("%")]
        if proc.returncode != 0 or rejected:
            detail = "; ".join(rejected) or proc.stderr.strip() or proc.stdout.strip()
            raise LabError(f"{router} rejected the config: {detail or 'vtysh exited '}"
                           f"{'' if detail else proc.returncode}")
        return f"{router}: configured {len(action.config)} line(s)"
    if action.link is not None:
        return impair.link(lab, action.link, action.state is LinkState.UP)
    if action.netem is not None:
        spec = None if action.clear else Netem(delay=action.delay, jitter=action.jitter,
                                               loss=action.loss, rate=action.rate)
        return impair.netem(lab, action.netem, spec)
    if action.mtu is not None:
        node, iface = data_endpoint(lab, action.mtu)
        run(["ip", "-n", node.netns, "link", "set", iface, "mtu", str(action.value)])
        return f"{action.mtu}: mtu {action.value}"
    if action.stop is not None:
        return impair.stop(lab, action.stop, action.daemon)
    assert action.start is not None
    return impair.start(lab, action.start, action.daemon)


def describe(action: Action, lab: str) -> list[str]:
    """How a person would do this action by hand."""
    if action.config is not None:
        return [f"on {action.node} (ssh or `runner lab exec`), in vtysh:",
                "  configure terminal", *[f"  {line}" for line in action.config], "  end"]
    if action.link is not None:
        return [f"runner lab link {lab} {action.link} {action.state}"]
    if action.netem is not None:
        if action.clear:
            return [f"runner lab netem {action.netem} --clear --lab {lab}"]
        flags = [f"--{k} {v}" for k, v in (("delay", action.delay), ("jitter", action.jitter),
                                           ("loss", action.loss), ("rate", action.rate))
                 if v is not None]
        return [f"runner lab netem {action.netem} {' '.join(flags)} --lab {lab}"]
    if action.mtu is not None:
        node, iface = split_endpoint(action.mtu)
        return [f"runner lab exec {node} --lab {lab} --shell -- ip link set {iface} mtu "
                f"{action.value}"]
    verb, target = ("stop", action.stop) if action.stop is not None else ("start", action.start)
    return [f"runner lab {verb} {target}{' ' + action.daemon if action.daemon else ''} "
            f"--lab {lab}"]


def start(labs: Labs, lab: LabState, exercise: Exercise, wait: float,
          report: Callable[[str], None]) -> list[Verdict]:
    """Check the goals hold first (the lab is healthy), inject the faults, record the
    exercise on the lab, and wait until the break shows (some goal fails)."""
    before = poll(labs, lab, exercise, wait, all_hold)
    failing = [v for v in before if not v.holds]
    if failing:
        lines = "\n  ".join(f"{v.goal.text}: {v.evidence}" for v in failing)
        raise LabError(f"lab {lab.plan.lab} does not meet the exercise's goals before it "
                       f"starts (within {wait:.0f}s):\n  {lines}\nfix that first, or bring "
                       f"up a fresh lab: `runner lab up --reconfigure {lab.plan.topology}`")
    for action in exercise.spec.faults:
        apply(labs, lab, action)
    lab.exercise = exercise.name
    labs.index.save(lab)
    report(f"exercise {exercise.name} started on lab {lab.plan.lab}")
    return poll(labs, lab, exercise, wait, some_fail)
