"""An exercise file: the symptom, the faults that cause it, the goals, one solution."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from runner.errors import ExerciseError
from runner.lab.faults import Netem, split_endpoint
from runner.source.validation import Strict, YamlSource, describe, problem
from runner.source.yamlsrc import load_yaml
from runner.vocab import GoalKind, LinkState

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_NODE = r"(?P<node>[A-Za-z0-9][A-Za-z0-9.-]*)"
_GOALS = (
    (GoalKind.REACHES, re.compile(rf"^{_NODE}\s+reaches\s+(?P<target>\S+)$", re.I)),
    (GoalKind.BGP, re.compile(
        rf"^{_NODE}\s+(?:has\s+)?BGP\s+(?P<state>[A-Za-z]+)\s+with\s+(?P<target>\S+)$", re.I)),
    (GoalKind.OSPF, re.compile(
        rf"^{_NODE}\s+(?:has\s+)?OSPF\s+(?P<state>[A-Za-z0-9-]+)\s+with\s+(?P<target>\S+)$",
        re.I)),
)
GOAL_FORMS = ("NODE reaches ADDRESS", "NODE has BGP STATE with PEER-ADDRESS",
              "NODE has OSPF STATE with NODE|ROUTER-ID")
BGP_STATES = ("Idle", "Connect", "Active", "OpenSent", "OpenConfirm", "Established")
OSPF_STATES = ("Down", "Attempt", "Init", "2-Way", "ExStart", "Exchange", "Loading", "Full")


@dataclass(frozen=True)
class Goal:
    """One condition the lab must meet, as written (`r1 has BGP Established with 10.0.0.1`)."""

    text: str
    kind: GoalKind
    node: str
    target: str
    state: str | None = None


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def parse_goal(text: str) -> Goal:
    """A goal from its sentence; ValueError saying which forms exist."""
    text = " ".join(text.split())
    for kind, pattern in _GOALS:
        m = pattern.match(text)
        if m is None:
            continue
        target, state = m.group("target"), m.groupdict().get("state")
        if kind in (GoalKind.REACHES, GoalKind.BGP) and not _is_ipv4(target):
            raise ValueError(f"{target!r} is not an IPv4 address")
        known = {GoalKind.BGP: BGP_STATES, GoalKind.OSPF: OSPF_STATES}.get(kind, ())
        if state is not None:
            match = next((s for s in known if s.lower() == state.lower()), None)
            if match is None:
                raise ValueError(f"{kind.value} state {state!r} is not one of "
                                 f"{', '.join(known)}")
            state = match
        return Goal(text, kind, m.group("node"), target, state)
    raise ValueError(f"{text!r} is not a goal; write one of: {'; '.join(GOAL_FORMS)}")


def _goal(text: str) -> str:
    try:
        parse_goal(text)
    except ValueError as exc:
        raise problem(str(exc)) from None
    return text


def _endpoint(text: str) -> str:
    try:
        split_endpoint(text)
    except Exception as exc:  # LabError: its message is the problem
        raise problem(str(exc)) from None
    return text


def _text(value: Any) -> Any:
    if not isinstance(value, str):
        raise problem(f"expected text, got {describe(value)}")
    return value


def _lines(value: Any) -> Any:
    if isinstance(value, str):
        return [line for line in value.splitlines() if line.strip()]
    if not isinstance(value, list) or not value:
        raise problem("expected config lines (a list of strings, or a block of text)")
    return value


Text = Annotated[str, BeforeValidator(_text)]
Endpoint = Annotated[Text, AfterValidator(_endpoint)]
ACTIONS = ("config", "link", "netem", "mtu", "stop", "start")


class Action(Strict):
    """One change to the lab: exactly one of config, link, netem, mtu, stop, start."""

    node: Text | None = None  # config: the router whose vtysh gets the lines
    config: Annotated[list[Text] | None, BeforeValidator(_lines)] = None
    link: Endpoint | None = None
    state: LinkState | None = None  # link: up or down
    netem: Endpoint | None = None
    delay: Text | None = None
    jitter: Text | None = None
    loss: float | None = None
    rate: Text | None = None
    clear: bool = False
    mtu: Endpoint | None = None
    value: Annotated[int, Field(ge=68, le=65535)] | None = None  # mtu: bytes
    stop: Text | None = None  # a router; with daemon: that FRR daemon only
    start: Text | None = None
    daemon: Text | None = None

    @model_validator(mode="after")
    def _one_action(self) -> Action:
        given = [a for a in ACTIONS if getattr(self, a) is not None]
        if len(given) != 1:
            raise problem(f"an action has exactly one of {', '.join(ACTIONS)} (got "
                          f"{', '.join(given) or 'none'})")
        kind = given[0]
        if kind == "config" and self.node is None:
            raise problem("config lines need `node:` (the router to configure)")
        if kind == "link" and self.state is None:
            raise problem("link needs `state: up` or `state: down`")
        if kind == "mtu" and self.value is None:
            raise problem("mtu needs `value:` (bytes, such as 1400)")
        if kind == "netem" and not self.clear:
            try:
                Netem(delay=self.delay, jitter=self.jitter, loss=self.loss, rate=self.rate)
            except Exception as exc:  # LabError naming the flag
                raise problem(str(exc).replace("--", "")) from None
        return self

    @property
    def kind(self) -> str:
        return next(a for a in ACTIONS if getattr(self, a) is not None)

    def nodes(self) -> list[str]:
        """The lab nodes this action touches."""
        for end in (self.link, self.netem, self.mtu):
            if end is not None:
                return [split_endpoint(end)[0]]
        return [n for n in (self.node, self.stop, self.start) if n is not None]


class Solution(Strict):
    missing: ClassVar[Mapping[str, str]] = {"steps": "a solution lists its `steps`"}
    explanation: Text
    steps: list[Action] = Field(min_length=1)


class ExerciseFile(Strict):
    """An exercise on a lab (lab/exercises/*.yml)."""

    missing: ClassVar[Mapping[str, str]] = {
        "title": "missing `title`", "symptom": "missing `symptom` (what the trainee sees)",
        "faults": "missing `faults` (what start breaks)",
        "goals": "missing `goals` (what check tests)",
        "solution": "missing `solution` (explanation and steps)"}
    title: Text
    lab: Text | None = None  # the topology's lab name it is written for (e.g. practice)
    symptom: Text
    hints: list[Text] = Field(default_factory=list)
    faults: list[Action] = Field(min_length=1)
    goals: list[Annotated[Text, AfterValidator(_goal)]] = Field(min_length=1)
    solution: Solution


@dataclass(frozen=True)
class Exercise:
    name: str
    path: Path
    spec: ExerciseFile

    @property
    def goals(self) -> list[Goal]:
        return [parse_goal(g) for g in self.spec.goals]

    def nodes(self) -> set[str]:
        """Every node the exercise names: all must be in the lab it runs on."""
        names = {g.node for g in self.goals}
        names |= {g.target for g in self.goals if g.kind is GoalKind.OSPF
                  and not _is_ipv4(g.target)}
        for action in (*self.spec.faults, *self.spec.solution.steps):
            names.update(action.nodes())
        return names


def load_exercise(path: Path) -> Exercise:
    """Read and check one exercise file; ExerciseError naming file, line and field."""
    name = path.name.removesuffix(".yml").removesuffix(".yaml")
    if not NAME_RE.match(name):
        raise ExerciseError(f"{name!r} is not an exercise name (lower-case letters, digits, "
                            "'-'): rename the file", path=path)
    raw = load_yaml(path, ExerciseError)
    doc = YamlSource(path, raw, ExerciseError).validate(ExerciseFile)
    return Exercise(name, path, doc)


def exercise_dir(given: Path | None) -> Path:
    """--dir, else lab/exercises here, else the one shipped beside runner's package."""
    if given is not None:
        return given
    here = Path("lab/exercises")
    if here.is_dir():
        return here
    return Path(__file__).resolve().parents[3] / "lab" / "exercises"


def find_exercise(name: str, directory: Path | None) -> Exercise:
    """An exercise by name (in the exercise directory) or by file path."""
    path = Path(name)
    if name.endswith((".yml", ".yaml")) and path.is_file():
        return load_exercise(path)
    base = exercise_dir(directory)
    for suffix in (".yml", ".yaml"):
        if (base / f"{name}{suffix}").is_file():
            return load_exercise(base / f"{name}{suffix}")
    known = ", ".join(e.name for e in list_exercises(base)) or "none"
    raise ExerciseError(f"no exercise {name!r} in {base} (exercises: {known})")


def list_exercises(directory: Path) -> list[Exercise]:
    return [load_exercise(p) for p in sorted(directory.glob("*.y*ml"))]
