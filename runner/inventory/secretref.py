"""Secret references, `{env: NAME}` or `{file: /absolute/path}`: checked where they are written,
carried as references (never values) through files, JSON and the broker, and resolved only on
the machine that opens the session.

The variable or file a reference names is data the user points at, not one of runner's
settings (runner/settings.py): it is read when a session needs it, on that machine.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import ConfigDict, Field, field_validator, model_validator

from runner.errors import SecretUnavailable
from runner.source.validation import Strict
from runner.vocab import SecretSource

SYNTAX = "{env: NAME} or {file: /absolute/path}"
MAX_FILE_BYTES = 64 * 1024  # a password, a key's passphrase: far less
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ENV_HELP = "Name of an environment variable of the process that opens the session."
_FILE_HELP = ("Absolute path of a file (UTF-8, at most 64 KiB; one trailing newline is "
              "dropped) on the machine that opens the session.")


def _schema(schema: dict[str, Any]) -> None:
    """Exactly one of env or file, each a string (pydantic would allow null and both)."""
    schema["properties"] = {
        "env": {"type": "string", "pattern": _ENV_NAME.pattern, "description": _ENV_HELP},
        "file": {"type": "string", "pattern": "^/", "description": _FILE_HELP},
    }
    schema["oneOf"] = [{"required": ["env"]}, {"required": ["file"]}]


class SecretRefSpec(Strict):
    """A secret given by reference: `{env: NAME}` or `{file: /absolute/path}`. Its value is
    read on the machine that opens the session (a `runner worker`, not the dispatcher),
    masked in everything runner writes, and never stored or sent."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="secret reference",
                              json_schema_extra=_schema)
    # str.format templates (Strict): SYNTAX's braces doubled
    unknown_field = "unknown field {key} (a secret reference is " + \
        SYNTAX.replace("{", "{{").replace("}", "}}") + ")"
    not_a_mapping = "expected a secret reference: " + \
        SYNTAX.replace("{", "{{").replace("}", "}}") + " (got {got})"

    env: str | None = Field(None, description=_ENV_HELP)
    file: str | None = Field(None, description=_FILE_HELP)

    @field_validator("env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.match(value):
            raise ValueError(f"expected an environment variable name: letters, digits and _, "
                             f"not first a digit (got {value[:60]!r})")
        return value

    @field_validator("file")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None and (not PurePosixPath(value).is_absolute() or "\0" in value):
            raise ValueError(f"expected an absolute path: it is read on the machine that "
                             f"opens the session (got {value[:60]!r})")
        return value

    @model_validator(mode="after")
    def _one(self) -> SecretRefSpec:
        if (self.env is None) == (self.file is None):
            raise ValueError(f"give exactly one of env or file: {SYNTAX}")
        return self

    def ref(self, path: str | None = None, line: int | None = None,
            field: str | None = None) -> SecretRef:
        """The reference, with where it was written (for error messages)."""
        if self.env is not None:
            return SecretRef(SecretSource.ENV, self.env, path, line, field)
        assert self.file is not None
        return SecretRef(SecretSource.FILE, self.file, path, line, field)


@dataclass(frozen=True)
class SecretRef:
    """A reference as runner carries it: what to read, and where it was written."""

    source: SecretSource
    name: str  # the environment variable, or the file's path
    path: str | None = None  # the file it was written in ...
    line: int | None = None  # ... its line ...
    field: str | None = None  # ... and field (r1.password, secret_vars.community)

    def __str__(self) -> str:
        return f"{{{self.source}: {self.name}}}"

    @property
    def where(self) -> str:
        """`file:line: field: `, as runner's input errors begin."""
        text = ""
        if self.path is not None:
            text = self.path + (f":{self.line}" if self.line is not None else "") + ": "
        return text + (f"{self.field}: " if self.field else "")

    def read(self, roots: Sequence[Path] = ()) -> str:
        """The value, read now on this machine; SecretUnavailable naming the field and the
        variable or file when it cannot be. A file is read only from inside `roots`."""
        if self.source is SecretSource.ENV:
            value = os.environ.get(self.name)
            if value is None:
                raise SecretUnavailable(f"{self.where}environment variable {self.name} is "
                                        f"not set on this machine")
            what = f"environment variable {self.name}"
        else:
            value = _read_file(self, roots)
            what = f"file {self.name}"
        if not value:
            raise SecretUnavailable(f"{self.where}{what} is empty")
        return value


def confined(path: str | Path, roots: Iterable[Path]) -> bool:
    """Whether `path` (its symbolic links followed) lies inside one of `roots`."""
    real = Path(os.path.realpath(path))
    return any(real.is_relative_to(os.path.realpath(root)) for root in roots)


def outside_message(name: str, roots: Sequence[Path]) -> str:
    """Why a file reference is refused: where secrets may be read from instead."""
    where = ", ".join(str(r) for r in roots) or "nowhere"
    return (f"file {name} is outside the directories secrets are read from ({where}); "
            "put it there, or name its directory in RUNNER_SECRETS_DIR")


def _read_file(ref: SecretRef, roots: Sequence[Path]) -> str:
    def unavailable(why: str) -> SecretUnavailable:
        return SecretUnavailable(f"{ref.where}file {ref.name} {why}")

    if not confined(ref.name, roots):  # not even looked at
        raise SecretUnavailable(ref.where + outside_message(ref.name, roots))
    try:
        info = os.stat(ref.name)  # a FIFO or device is refused before it is opened
        if not stat.S_ISREG(info.st_mode):
            raise unavailable("is not a regular file")
        # Opened without blocking (a FIFO swapped in meanwhile), then checked as opened:
        # what the descriptor really is, where it really lies.
        fd = os.open(ref.name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as handle:
            opened = os.fstat(fd)
            if not stat.S_ISREG(opened.st_mode):
                raise unavailable("is not a regular file")
            real = _opened_path(fd, ref.name)
            if not confined(real, roots):
                raise SecretUnavailable(ref.where + outside_message(ref.name, roots))
            if opened.st_size > MAX_FILE_BYTES:
                raise unavailable(f"is larger than {MAX_FILE_BYTES // 1024} KiB")
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise unavailable(f"cannot be read on this machine: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise unavailable(f"is larger than {MAX_FILE_BYTES // 1024} KiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise unavailable("is not UTF-8 text") from None
    return text.removesuffix("\n").removesuffix("\r")


def _opened_path(fd: int, name: str) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:  # no /proc: the name, resolved
        return os.path.realpath(name)


class SecretValue(str):
    """A secret variable's value: a str that says it is one (for `expect:` messages, which
    must not show what a check made of it)."""

    __slots__ = ()


class SecretResolver:
    """Resolves the references of one run on this machine, each variable or file once (a
    fleet shares a few); plain values pass through unchanged. Files are read only from
    inside `roots` (the inventory's references) and `job_roots` (a job's secret_vars;
    default: `roots`); none given: no file at all."""

    def __init__(self, roots: Iterable[Path] = (),
                 job_roots: Iterable[Path] | None = None) -> None:
        self._values: dict[tuple[SecretSource, str, tuple[Path, ...]], str] = {}
        self.roots = tuple(roots)
        self.job_roots = self.roots if job_roots is None else tuple(job_roots)

    def value(self, value: object, roots: tuple[Path, ...] | None = None) -> Any:
        """`value` itself, or the value its reference names; SecretUnavailable if that
        cannot be read (from `roots`, default the inventory's)."""
        if not isinstance(value, SecretRef):
            return value
        where = self.roots if roots is None else roots
        key = (value.source, value.name, where)
        if key not in self._values:
            self._values[key] = value.read(where)
        return self._values[key]

    def known(self, value: object, roots: tuple[Path, ...] | None = None) -> str | None:
        """The value if it is a string or a reference that was or can be read here, else
        None (for masking: a value never read cannot leak)."""
        if isinstance(value, SecretRef):
            for (source, name, _), read in self._values.items():
                if (source, name) == (value.source, value.name):
                    return read
        try:
            resolved = self.value(value, roots)
        except SecretUnavailable:
            return None
        return resolved if isinstance(resolved, str) else None

    def variables(self, refs: Mapping[str, SecretRefSpec]) -> dict[str, str]:
        """A job's secret_vars, by name."""
        return {name: SecretValue(self.value(spec.ref(field=f"secret_vars.{name}"),
                                             self.job_roots))
                for name, spec in refs.items()}


def roots(secrets_dirs: Iterable[Path], own: Path | None) -> tuple[Path, ...]:
    """Where a file reference may be read from: RUNNER_SECRETS_DIR's directories and the
    directory of the file that writes the reference (when known on this machine)."""
    return (*secrets_dirs, *([own] if own is not None else []))
