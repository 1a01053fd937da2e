"""Load job files: YAML with lines, validated against JobSpec; errors name file, line, field."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.errors import JobError
from runner.job.spec import JobSpec
from runner.source.validation import Loc, YamlSource
from runner.source.yamlsrc import line_of, load_yaml

# A step's kind is a discriminated union: pydantic names the kind after the step's index.
_STEP_TAGS = {"steps": frozenset({"command", "config", "backup", "compliance"})}


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
