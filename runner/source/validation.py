"""Pydantic validation of YAML input files, reported as one InputError: file:line: field: what."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from runner.errors import InputError
from runner.source.yamlsrc import line_of

Loc = tuple[int | str, ...]  # a pydantic-style location: keys and list indexes
E = TypeVar("E", bound=InputError)
M = TypeVar("M", bound=BaseModel)

# Pydantic reports one error per union branch; these only say "not this branch's type".
_TYPE_MISMATCH = frozenset({
    "literal_error", "enum", "string_type", "int_type", "int_parsing", "float_type",
    "float_parsing",
    "bool_type", "bool_parsing", "dict_type", "list_type", "model_type", "model_attributes_type",
    "is_instance_of", "union_tag_invalid",
})

_EXPECTED = {
    "model_type": "a mapping", "model_attributes_type": "a mapping", "dict_type": "a mapping",
    "list_type": "a list", "string_type": "a string", "int_type": "a whole number",
    "int_parsing": "a whole number", "float_type": "a number", "float_parsing": "a number",
    "bool_type": "true or false", "bool_parsing": "true or false",
}


def problem(message: str, kind: str = "invalid") -> PydanticCustomError:
    """An error for a validator to raise whose text is reported exactly as given."""
    return PydanticCustomError(kind, message)


def located(model: str, message: str, loc: Loc) -> ValidationError:
    """An error for a model validator to raise, at `loc` inside the model (pydantic puts
    the model's own location in front), its text reported exactly as given."""
    return ValidationError.from_exception_data(
        model, [InitErrorDetails(type=problem(message, "rule"), loc=loc, input=None)])


def describe(value: Any) -> str:
    """What a YAML value is, for messages such as 'expected a mapping, got a list'."""
    if value is None:
        return "nothing"
    for kind, label in ((bool, "a boolean"), (dict, "a mapping"), (list, "a list"),
                        (str, "a string")):
        if isinstance(value, kind):
            return label
    return type(value).__name__


def _expected(error: Mapping[str, Any]) -> str:
    """What a type-mismatch error expected, as a short phrase."""
    if error["type"] in ("literal_error", "enum"):
        return str(error.get("ctx", {}).get("expected", error["msg"]))
    return _EXPECTED.get(error["type"], str(error["msg"]))


def shown(value: Any, limit: int = 60) -> str:
    """repr(value), cut: a message stays one readable line whatever the file held."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _got(error: Mapping[str, Any]) -> str:
    value = error.get("input")
    if isinstance(value, str | int | float | bool) and value != "":
        return f" (got {shown(value)})"
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


@dataclass(frozen=True)
class YamlSource(Generic[E]):
    """A YAML file's data (as runner.source.yamlsrc loads it, with lines) and its path: any error
    found in it, by pydantic or by later checks, names the file, the line and the field."""

    path: Path
    raw: Any
    error_class: type[E]
    # Tags pydantic puts in a location after an item's index, for discriminated unions in
    # lists under these keys (e.g. a job's steps), or right after the key of a field that is
    # one (a job's after); they are not keys in the file.
    union_tags: Mapping[str, frozenset[str]] = field(default_factory=dict)
    root: str | None = None  # named before every field (defaults.yaml's fields: defaults.x)

    def locate(self, loc: Loc) -> tuple[str | None, int | None]:
        """Follow a location through the YAML data: (field name, line)."""
        node, path, line = self.raw, [] if self.root is None else [self.root], line_of(self.raw)
        for i, key in enumerate(loc):
            if isinstance(key, str) and "[" in key:
                continue  # a union branch label such as literal['a','b'], or a dict's [key]
            if i >= 2 and isinstance(loc[i - 1], int) and \
                    key in self.union_tags.get(str(loc[i - 2]), ()):
                continue
            before = loc[i - 1] if i >= 1 else None
            if isinstance(before, str) and key in self.union_tags.get(before, ()):
                continue  # a tagged union's tag right after its field (a job's after)
            in_file: Any = key
            if isinstance(node, dict) and key not in node:
                # a key YAML read as a number (7:) is validated as its text
                in_file = next((k for k in node if str(k) == key), key)
            if (isinstance(node, dict) and in_file in node) or (
                    isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node)):
                line = line_of(node, in_file) or line
                node = node[in_file]
            else:
                node = None
            path.append(f"[{key}]" if isinstance(key, int) else str(key))
        name = ""
        for part in path:
            name += part if part.startswith("[") or not name else f".{part}"
        return name or None, line

    def error(self, message: str, loc: Loc = ()) -> E:
        """An error at `loc` (a pydantic-style location) in this file."""
        name, line = self.locate(loc)
        return self.error_class(message, path=self.path, line=line, field=name)

    def invalid(self, exc: ValidationError) -> E:
        """The one error that best explains a failed validation, located in the file."""
        located = [(self.locate(tuple(e["loc"])), e) for e in exc.errors()]
        specific = [item for item in located if item[1]["type"] not in _TYPE_MISMATCH]
        if specific:
            (name, line), error = specific[0]
            message = _message(error)
        else:
            (name, line), error = located[0]
            same = [e for (n, _), e in located if n == name]
            message = "expected " + ", or ".join(dict.fromkeys(_expected(e) for e in same)) \
                + _got(error)
        return self.error_class(message, path=self.path, line=line, field=name)

    def validate(self, model: type[M]) -> M:
        """The file's data as `model`; its first problem as this file's error."""
        try:
            return model.model_validate(self.raw)
        except ValidationError as exc:
            raise self.invalid(exc) from None


class Strict(BaseModel):
    """One mapping in a YAML file, with messages of its own: `unknown_field` for a key it does
    not know ({key}: the key, {expected}: the keys it knows; None: pydantic's `extra` setting
    decides), `missing` for absent required keys, `not_a_mapping` ({got}) for a value that is
    not a mapping (None: pydantic's own error). Keys in `tolerated` are accepted and kept
    aside (model_extra, with extra="allow") for the caller to warn about."""

    # defer_build: validators built on first use (see runner.job.spec._Model)
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)
    unknown_field: ClassVar[str | None] = "unknown field {key}"
    tolerated: ClassVar[frozenset[str]] = frozenset()
    missing: ClassVar[Mapping[str, str]] = {}
    not_a_mapping: ClassVar[str | None] = None
    null_is_empty: ClassVar[bool] = False  # `key:` with no value means an empty mapping

    @model_validator(mode="before")
    @classmethod
    def _mapping_keys(cls, data: Any) -> Any:
        if data is None and cls.null_is_empty:
            data = {}
        if not isinstance(data, dict):
            if cls.not_a_mapping is None:
                return data
            raise problem(cls.not_a_mapping.format(got=describe(data)), "not_a_mapping")
        errors: list[InitErrorDetails] = []
        if cls.unknown_field is not None:
            known = _known_keys(cls)
            expected = ", ".join(sorted(known))
            errors += [InitErrorDetails(
                type=problem(cls.unknown_field.format(key=shown(key), expected=expected),
                             "unknown_field"), loc=(str(key),), input=value)
                for key, value in data.items() if key not in known and key not in cls.tolerated]
        errors += [InitErrorDetails(type=problem(message, "missing_key"), loc=(key,),
                                    input=data)
                   for key, message in cls.missing.items() if key not in data]
        if errors:
            # Raised inside a validator, pydantic prefixes each location with this mapping's.
            raise ValidationError.from_exception_data(cls.__name__, errors)
        return data


@cache
def _known_keys(model: type[BaseModel]) -> frozenset[str]:
    """The keys a model reads (aliases where given), computed once per model."""
    return frozenset(info.alias or name for name, info in model.model_fields.items())
