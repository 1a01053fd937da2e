"""Load job files: YAML with lines, validated against JobSpec; errors name file, line, field."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from runner.errors import JobError
from runner.job.spec import JobSpec
from runner.yamlsrc import line_of, load_yaml

# Pydantic reports one error per union branch; these only say "not this branch's type".
_TYPE_MISMATCH = frozenset({
    "literal_error", "enum", "string_type", "int_type", "int_parsing", "float_type",
    "float_parsing",
    "bool_type", "bool_parsing", "dict_type", "list_type", "model_type", "model_attributes_type",
    "is_instance_of", "union_tag_invalid",
})


_STEP_TAGS = frozenset({"command", "config", "backup"})


def _locate(raw: Any, loc: tuple[int | str, ...]) -> tuple[list[str], int | None]:
    """Follow a pydantic error location through the YAML data: (field path, line)."""
    node, path, line = raw, [], line_of(raw)
    for i, key in enumerate(loc):
        if isinstance(key, str) and "[" in key:
            continue  # a union branch label such as literal['a','b']
        if key in _STEP_TAGS and i >= 2 and loc[i - 2] == "steps" and isinstance(loc[i - 1], int):
            continue  # the tag of a step's kind, not a key in the file
        if (isinstance(node, dict) and key in node) or (
                isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node)):
            line = line_of(node, key) or line
            node = node[key]  # type: ignore[index]  # key type checked just above
        else:
            node = None
        path.append(f"[{key}]" if isinstance(key, int) else str(key))
    return path, line


def _field(path: list[str]) -> str:
    out = ""
    for part in path:
        out += part if part.startswith("[") or not out else f".{part}"
    return out


def _expected(error: Mapping[str, Any]) -> str:
    """What a type-mismatch error expected, as a short phrase."""
    kind = error["type"]
    if kind in ("literal_error", "enum"):
        return str(error.get("ctx", {}).get("expected", error["msg"]))
    return {"model_type": "a mapping", "model_attributes_type": "a mapping",
            "dict_type": "a mapping", "list_type": "a list", "string_type": "a string",
            "int_type": "a whole number", "int_parsing": "a whole number",
            "float_type": "a number", "float_parsing": "a number",
            "bool_type": "true or false", "bool_parsing": "true or false"}.get(
        kind, str(error["msg"]))


def _got(error: Mapping[str, Any]) -> str:
    value = error.get("input")
    if isinstance(value, str | int | float | bool) and value != "":
        return f" (got {value!r})"
    if isinstance(value, dict):
        return " (got a mapping)"
    if isinstance(value, list):
        return " (got a list)"
    return ""


def _message(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required field is missing"
    msg = str(error["msg"]).removeprefix("Value error, ")
    if kind == "string_pattern_mismatch":
        return f"{msg}{_got(error)}"
    return msg


def validation_error(exc: ValidationError, raw: Any, path: Path) -> JobError:
    """The one error that best explains a failed validation, located in the file."""
    located = [(_locate(raw, tuple(e["loc"])), e) for e in exc.errors()]
    specific = [item for item in located if item[1]["type"] not in _TYPE_MISMATCH]
    if specific:
        (field_path, line), error = specific[0]
        message = _message(error)
    else:
        (field_path, line), error = located[0]
        same = [e for (p, _), e in located if p == field_path]
        message = "expected " + ", or ".join(dict.fromkeys(_expected(e) for e in same)) \
            + _got(error)
    return JobError(message, path=path, line=line, field=_field(field_path) or None)


@dataclass(frozen=True)
class JobFile:
    """A validated job and where it came from, so later checks can still name lines."""

    spec: JobSpec
    path: Path
    raw: Any

    def error(self, message: str, loc: tuple[int | str, ...]) -> JobError:
        """An error at `loc`, a pydantic-style location (a step's kind tag after its index)."""
        field_path, line = _locate(self.raw, loc)
        return JobError(message, path=self.path, line=line, field=_field(field_path) or None)


def load_job(path: Path) -> JobFile:
    """Read and validate one job file; JobError (exit code 2) when it is not valid."""
    path = Path(path)
    raw = load_yaml(path)  # YAML errors: InputError naming file and line
    if not isinstance(raw, dict):
        raise JobError("a job file is a mapping with name, targets and steps",
                       path=path, line=line_of(raw))
    try:
        return JobFile(JobSpec.model_validate(raw), path, raw)
    except ValidationError as exc:
        raise validation_error(exc, raw, path) from None
