"""Workflows: a job's `after:` names the jobs it follows (success, failure or always; all
or any of several). The graph over a jobs directory, checked at load (an unknown parent or
a cycle is an error at the file and line of the `after:` entry), and the pure rules that
decide a child's fate from its parents' outcomes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from runner.errors import JobError
from runner.source.yamlsrc import line_of
from runner.vocab import Join, When

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class _Model(BaseModel):
    # defer_build: validators built on first use (see runner.job.spec._Model)
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class Parent(_Model):
    """A job this one follows, and which of its outcomes start this one."""

    job: str = Field(pattern=NAME_PATTERN, description="The parent job's name.")
    when: When = Field(When.SUCCESS, description=(
        "success: its run ended ok; failure: it failed or was interrupted; always: it "
        "ended. A parent rejected, expired, blacked out or not run starts nothing."))


class Joined(_Model):
    """Several parents: `{all: [...]}` waits for every one, `{any: [...]}` for the first."""

    all: list[Parent] | None = Field(None, min_length=1)
    any: list[Parent] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one(self) -> Joined:
        if (self.all is None) == (self.any is None):
            raise ValueError("give exactly one of all or any")
        return self


def _after_kind(value: Any) -> str | None:
    if isinstance(value, Parent) or (isinstance(value, dict) and "job" in value):
        return "parent"
    if isinstance(value, Joined) or (isinstance(value, dict) and
                                     ("all" in value or "any" in value)):
        return "joined"
    if isinstance(value, list):
        return "list"
    return None


After = Annotated[
    Annotated[Parent, Tag("parent")] | Annotated[list[Parent], Tag("list")]
    | Annotated[Joined, Tag("joined")],
    Discriminator(_after_kind, custom_error_type="after_kind",
                  custom_error_message="expected {job: NAME, when: success|failure|always}, "
                                       "a list of them (all), or {all: [...]} / {any: [...]}"),
]


def parents(after: Parent | list[Parent] | Joined | None) -> tuple[list[Parent], Join]:
    """The parents and how they join, whatever form `after:` was written in."""
    if after is None:
        return [], Join.ALL
    if isinstance(after, Parent):
        return [after], Join.ALL
    if isinstance(after, list):
        return list(after), Join.ALL
    if after.all is not None:
        return list(after.all), Join.ALL
    assert after.any is not None
    return list(after.any), Join.ANY


def after_loc(after: Any, index: int) -> tuple[int | str, ...]:
    """Where parent `index` is written, as a location under `after`."""
    if isinstance(after, list):
        return ("after", index, "job")
    if isinstance(after, dict) and "job" in after:
        return ("after", "job")
    key = "all" if isinstance(after, dict) and "all" in after else "any"
    return ("after", key, index, "job")


# -- the graph of a jobs directory ----------------------------------------------------------


@dataclass(frozen=True)
class Node:
    """One job as the graph sees it: its parents, and where `after:` is written."""

    name: str
    parents: tuple[Parent, ...]
    join: Join
    path: Path
    raw: Any  # the file's YAML data, for lines

    def line(self, index: int) -> int | None:
        after = self.raw.get("after") if isinstance(self.raw, dict) else None
        if after is None:
            return None
        node: Any = self.raw
        for key in after_loc(after, index)[:-1]:
            try:
                node = node[key]
            except (KeyError, IndexError, TypeError):
                break
        return line_of(node, "job") or line_of(self.raw, "after")

    def error(self, message: str, index: int) -> JobError:
        loc = after_loc(self.raw.get("after") if isinstance(self.raw, dict) else None, index)
        text = "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in loc)
        return JobError(message, path=self.path, line=self.line(index),
                        field=text.lstrip("."))


def check_graph(nodes: Mapping[str, Node]) -> dict[str, JobError]:
    """Problems of the workflow graph, by job: a parent that is no job of the directory,
    a job that follows itself, a cycle (each job in it, with the path round it)."""
    problems: dict[str, JobError] = {}
    for node in nodes.values():
        for index, parent in enumerate(node.parents):
            if parent.job == node.name:
                problems[node.name] = node.error("a job cannot follow itself", index)
            elif parent.job not in nodes:
                problems.setdefault(node.name, node.error(
                    f"no job named {parent.job!r} in {node.path.parent} (jobs: "
                    f"{', '.join(sorted(nodes)) or 'none'})", index))
    for cycle in _cycles(nodes):
        for i, name in enumerate(cycle):
            node = nodes[name]
            follows = cycle[i - 1]  # in the cycle, `name` follows the job before it
            index = next(k for k, p in enumerate(node.parents) if p.job == follows)
            ring = " -> ".join([*cycle[i:], *cycle[:i], name])
            problems.setdefault(name, node.error(
                f"workflow cycle: {ring} (each job waits for the one before it)", index))
    return problems


def _cycles(nodes: Mapping[str, Node]) -> list[list[str]]:
    """Each cycle once, as the jobs in the order they follow one another."""
    children: dict[str, list[str]] = {n: [] for n in nodes}
    for node in nodes.values():
        for parent in node.parents:
            if parent.job in children and parent.job != node.name:
                children[parent.job].append(node.name)
    state: dict[str, int] = {}  # 1: on the path, 2: done
    found: list[list[str]] = []
    seen: set[frozenset[str]] = set()
    for root in sorted(nodes):
        if root in state:
            continue
        path: list[str] = [root]
        stack = [iter(sorted(children[root]))]
        state[root] = 1
        while stack:
            child = next(stack[-1], None)
            if child is None:
                state[path.pop()] = 2
                stack.pop()
                continue
            if state.get(child) == 1:
                cycle = path[path.index(child):]
                if frozenset(cycle) not in seen:
                    seen.add(frozenset(cycle))
                    found.append(cycle)
            elif child not in state:
                state[child] = 1
                path.append(child)
                stack.append(iter(sorted(children[child])))
    return found


def descendants(nodes: Mapping[str, Node], root: str) -> dict[str, list[dict[str, str]]]:
    """The workflow an occurrence of `root` starts: every job that follows it, directly or
    not, with its parents inside the workflow ({job, when}; parents outside it are not
    waited for)."""
    children: dict[str, list[str]] = {n: [] for n in nodes}
    for node in nodes.values():
        for parent in node.parents:
            if parent.job in children:
                children[parent.job].append(node.name)
    reached: set[str] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in reached and child != root:
                reached.add(child)
                todo.append(child)
    inside = reached | {root}
    return {name: [{"job": p.job, "when": str(p.when)} for p in nodes[name].parents
                   if p.job in inside] for name in sorted(reached)}


@dataclass(frozen=True)
class Graph:
    """A workflow run's graph as stored when it starts (later edits do not change it):
    its root job and, for each other job, its parents inside the workflow and the join."""

    root: str
    steps: dict[str, tuple[tuple[tuple[str, When], ...], Join]]

    @classmethod
    def of(cls, nodes: Mapping[str, Node], root: str) -> Graph:
        inner = descendants(nodes, root)
        return cls(root, {name: (tuple((p["job"], When(p["when"])) for p in ps),
                                 nodes[name].join) for name, ps in inner.items()})

    def to_json(self) -> dict[str, Any]:
        return {"root": self.root, "steps": {
            name: {"join": str(join), "after": [{"job": j, "when": str(w)} for j, w in ps]}
            for name, (ps, join) in self.steps.items()}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Graph:
        return cls(str(data["root"]), {
            name: (tuple((p["job"], When(p["when"])) for p in step["after"]),
                   Join(step["join"])) for name, step in data["steps"].items()})


def satisfied(when: When, outcome: str) -> bool:
    """Whether a parent's outcome starts a child that follows it with `when`. Outcomes:
    ok, failed, interrupted (ran); anything else (rejected, expired, blacked out, not run)
    starts nothing."""
    if outcome == "ok":
        return when in (When.SUCCESS, When.ALWAYS)
    if outcome in ("failed", "interrupted"):
        return when in (When.FAILURE, When.ALWAYS)
    return False


def decide(parents_: tuple[tuple[str, When], ...], join: Join,
           outcomes: Mapping[str, str | None]) -> tuple[bool | None, str]:
    """A child's fate from its parents' outcomes (None: not ended yet): (True: start it,
    False: it will not run, None: wait), and why in words."""
    ended = {j: outcomes.get(j) for j, _ in parents_}
    held = [f"{j} {o}" for j, w in parents_ if (o := ended[j]) is not None
            and not satisfied(w, o)]
    met = [f"{j} {o}" for j, w in parents_ if (o := ended[j]) is not None and satisfied(w, o)]
    waiting = [j for j, _ in parents_ if ended[j] is None]
    if join is Join.ANY:
        if met:
            return True, f"after {met[0]}"
        if not waiting:
            return False, "no parent ended as it waits for: " + ", ".join(held)
        return None, "waiting for " + ", ".join(waiting)
    if held:
        return False, "not run: " + ", ".join(
            f"{h} (it waits for {dict(parents_)[h.split(' ')[0]]})" for h in held)
    if waiting:
        return None, "waiting for " + ", ".join(waiting)
    return True, "after " + ", ".join(met)
