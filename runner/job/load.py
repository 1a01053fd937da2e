"""Load job files: YAML with lines, validated against JobSpec; errors name file, line, field."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.errors import InputError, JobError
from runner.job.blackouts import is_calendar
from runner.job.spec import JobSpec
from runner.job.workflow import Node, check_graph, parents
from runner.source.validation import Loc, YamlSource
from runner.source.yamlsrc import line_of, load_yaml

# A step's kind is a discriminated union: pydantic names the kind after the step's index;
# `after:` is one too, its form named right after it.
_STEP_TAGS = {"steps": frozenset({"command", "config", "backup", "compliance"}),
              "after": frozenset({"parent", "list", "joined"})}


@dataclass(frozen=True)
class JobFile:
    """A validated job and where it came from, so later checks can still name lines."""

    spec: JobSpec
    path: Path
    raw: Any

    def error(self, message: str, loc: Loc) -> JobError:
        """An error at `loc`, a pydantic-style location (a step's kind tag after its index)."""
        return _source(self.path, self.raw).error(message, loc)


def _source(path: Path, raw: Any) -> YamlSource[JobError]:
    return YamlSource(path, raw, JobError, union_tags=_STEP_TAGS)


def load_job(path: Path) -> JobFile:
    """Read and validate one job file; JobError (exit code 2) when it is not valid."""
    path = Path(path)
    raw = load_yaml(path)  # YAML errors: InputError naming file and line
    if not isinstance(raw, dict):
        raise JobError("a job file is a mapping with name, targets and steps",
                       path=path, line=line_of(raw))
    return JobFile(_source(path, raw).validate(JobSpec), path, raw)


def job_files(directory: Path) -> list[Path]:
    """A directory's job files: its *.yml and *.yaml, but its blackouts calendar."""
    return sorted(p for p in [*directory.glob("*.yml"), *directory.glob("*.yaml")]
                  if not is_calendar(p))


def graph_node(job: JobFile) -> Node:
    """The job as the workflow graph sees it."""
    found, join = parents(job.spec.after)
    return Node(job.spec.name, tuple(found), join, job.path, job.raw)


def load_dir(directory: Path) -> tuple[dict[str, JobFile], dict[Path, InputError]]:
    """Every valid job of a directory by name, and the problems of the others: a file that
    is not valid, a name used twice, an unknown parent or a workflow cycle (at the file and
    line of the `after:` entry)."""
    jobs: dict[str, JobFile] = {}
    problems: dict[Path, InputError] = {}
    for path in job_files(directory):
        try:
            job = load_job(path)
        except InputError as exc:
            problems[path] = exc
            continue
        if job.spec.name in jobs:
            problems[path] = JobError(f"job name {job.spec.name!r} is already used by "
                                      f"{jobs[job.spec.name].path}", path=path,
                                      line=line_of(job.raw, "name"), field="name")
            continue
        jobs[job.spec.name] = job
    while True:  # a job left out may leave another's parent unknown: until it settles
        graph = check_graph({n: graph_node(j) for n, j in jobs.items()})
        if not graph:
            return jobs, problems
        for name, error in graph.items():
            problems[jobs.pop(name).path] = error


def directory_problem(job: JobFile, loaded: dict[Path, dict[Path, InputError]] | None = None
                      ) -> InputError | None:
    """The problem load_dir() would find with this valid job in its directory: its name used
    by an earlier file, an unknown parent or a workflow cycle. Without `after:` and with a
    name no sibling declares, there is none, and the siblings are not validated (their
    notification URLs load Apprise: `runner validate` of one file stays quick). `loaded`
    keeps each directory's problems for the next file."""
    path = job.path.resolve()
    if job.spec.after is None and not any(
            _declared_name(p) == job.spec.name for p in job_files(path.parent) if p != path):
        return None
    cache = {} if loaded is None else loaded
    if path.parent not in cache:
        cache[path.parent] = {p.resolve(): e for p, e in load_dir(path.parent)[1].items()}
    return cache[path.parent].get(path)


def _declared_name(path: Path) -> object:
    """A job file's `name:` as written (None when it cannot be read)."""
    try:
        raw = load_yaml(path)
    except InputError:
        return None
    return raw.get("name") if isinstance(raw, dict) else None
