"""Config templates: Jinja2, sandboxed and bounded (loops, memory, output: see sandbox.py),
StrictUndefined, loaded only from templates/."""

from __future__ import annotations

from collections.abc import Callable, Collection
from functools import cached_property, partial
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta
from jinja2 import nodes
from jinja2.sandbox import SandboxedEnvironment

from runner.errors import RenderFailed
from runner.job.sandbox import MAX_TOTAL, MAX_VALUE, BoundedSandbox, bounded, lines_of

MAX_RENDERED = 1_048_576  # bytes a rendered template may hold (a job's limits.rendered)
# What `host` holds in a render (FleetInventory.template_vars).
HOST_FIELDS = ("name", "hostname", "platform", "groups", "data")


class _ContainedLoader(jinja2.FileSystemLoader):
    """Templates (and what they include) only from inside the templates directory: a
    symlink leading out of it is refused, or a template could send any file of this
    machine to the devices as config."""

    def get_source(self, environment: jinja2.Environment,
                   template: str) -> tuple[str, str, Callable[[], bool]]:
        source, filename, uptodate = super().get_source(environment, template)
        if not _inside(Path(filename), Path(self.searchpath[0])):
            raise jinja2.TemplateNotFound(f"{template} (it leads out of the templates "
                                          "directory)")
        return source, filename, uptodate


def _inside(path: Path, root: Path) -> bool:
    return path.resolve().is_relative_to(root.resolve())


def _generated(template: jinja2.Template, context: dict[str, Any], room: int) -> str | None:
    return lines_of(template.generate(**context), room)


def has_template(line: str) -> bool:
    """Whether a config line holds Jinja2 syntax ({{ }}, {% %} or {# #}): it is rendered."""
    return "{{" in line or "{%" in line or "{#" in line


class Templates:
    """Templates of one project; `<platform>/<name>` is preferred over the flat `<name>`.
    max_rendered, max_value, max_total: a job's limits.rendered, .template_value and
    .template_memory."""

    def __init__(self, root: Path, max_rendered: int = MAX_RENDERED,
                 max_value: int = MAX_VALUE, max_total: int = MAX_TOTAL) -> None:
        self.root = Path(root)
        self.max_rendered = max_rendered
        self.max_value = max_value
        self.max_total = max_total

    @cached_property
    def env(self) -> SandboxedEnvironment:
        return BoundedSandbox(
            loader=_ContainedLoader(str(self.root)),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False,
            autoescape=False,  # device config, not HTML
        )

    def resolve(self, name: str, platform: str) -> str | None:
        """The template file used for `name` on `platform`, or None if there is none."""
        for candidate in (f"{platform}/{name}", name):
            if (self.root / candidate).is_file():
                return candidate
        return None

    def check(self, name: str) -> str | None:
        """For validation: why template `name` cannot be used, or None."""
        if ".." in Path(name).parts or Path(name).is_absolute():
            return f"template {name!r} must be a path inside {self.root}"
        found = [p for p in [self.root / name, *self.root.glob(f"*/{name}")] if p.is_file()]
        if not found:
            return f"template {name!r} not found in {self.root} (or {self.root}/<platform>/)"
        for path in found:
            if not _inside(path, self.root):
                return f"template {path} leads out of {self.root} (a symlink): not used"
        for path in found:
            try:
                self.env.parse(path.read_text(encoding="utf-8"))
            except jinja2.TemplateSyntaxError as exc:
                return f"{path}:{exc.lineno}: template syntax error: {exc.message}"
        return None

    def uses(self, name: str, platform: str, variable: str) -> bool:
        """Whether template `name` refers to `variable` (e.g. earlier steps' results)."""
        found = self.resolve(name, platform)
        if found is None:
            return False
        source = (self.root / found).read_text(encoding="utf-8")
        return variable in jinja2.meta.find_undeclared_variables(self.env.parse(source))

    def render_lines(self, lines: list[str], context: dict[str, Any]) -> list[str]:
        """A config step's `lines:`, each rendered like a template (`{{ vars.site }}`,
        `{% if %}`), in the same sandbox and bounds: a line that renders empty is left out,
        one that renders to several lines gives each. RenderFailed names the line."""
        out: list[str] = []
        total = 0
        for number, line in enumerate(lines, 1):
            if not has_template(line):
                out.append(line)
                continue
            try:
                text = bounded(partial(_generated, self.env.from_string(line), context,
                                       self.max_rendered - total),
                               self.max_value, self.max_total)
            except jinja2.UndefinedError as exc:
                raise RenderFailed(f"config line {number} ({line!r}): {exc.message}") \
                    from None
            except MemoryError:  # a bound the sandbox does not know of
                raise RenderFailed(f"config line {number} ({line!r}): it ran out of "
                                   "memory") from None
            except Exception as exc:  # syntax (checked at validation), filters' errors
                raise RenderFailed(f"config line {number} ({line!r}): "
                                   f"{type(exc).__name__}: {exc}") from None
            if text is None:
                raise RenderFailed(f"config lines rendered more than the job's "
                                   f"limits.rendered ({self.max_rendered:,} characters)")
            total += len(text)
            out += [part.rstrip() for part in text.splitlines() if part.strip()]
        return out

    def line_problem(self, line: str, variables: set[str]) -> str | None:
        """For validation: why config line `line` cannot be rendered with the job's
        `variables` (vars and secret_vars, by name or as vars.NAME), host (HOST_FIELDS)
        and steps: its syntax, or a name it uses that no render gives. None: it can."""
        try:
            parsed = self.env.parse(line)
        except jinja2.TemplateSyntaxError as exc:
            return f"template syntax error in a config line: {exc.message}"
        given = variables | {"host", "vars", "steps"} | set(self.env.globals)
        unknown = sorted(jinja2.meta.find_undeclared_variables(parsed) - given)
        for node in parsed.find_all((nodes.Getattr, nodes.Getitem)):
            owner: object = None
            key: object = None
            if isinstance(node, nodes.Getattr):
                owner, key = node.node, node.attr
            elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
                owner, key = node.node, node.arg.value
            if not isinstance(owner, nodes.Name) or not isinstance(key, str):
                continue
            if owner.name == "vars" and key not in variables:
                unknown.append(key)
            elif owner.name == "host" and key not in HOST_FIELDS:
                return (f"unknown name 'host.{key}' in a config line (host has "
                        f"{', '.join(HOST_FIELDS)})")
        if unknown:
            return (f"unknown name {unknown[0]!r} in a config line (a line may use the "
                    f"job's vars and secret_vars, as NAME or vars.NAME, host and steps, as "
                    f"templates do)")
        return None

    def line_uses(self, lines: list[str], variable: str) -> bool:
        """Whether any of these config lines refers to `variable`."""
        return any(has_template(line) and variable in jinja2.meta.find_undeclared_variables(
            self.env.parse(line)) for line in lines)

    def render(self, name: str, platform: str, context: dict[str, Any]) -> list[str]:
        """Config lines for one device; RenderFailed names the template and what is wrong."""
        found = self.resolve(name, platform)
        if found is None:
            raise RenderFailed(f"template {name!r} not found for platform {platform!r}")
        try:
            template = self.env.get_template(found)
            text = bounded(lambda: lines_of(template.generate(**context), self.max_rendered),
                           self.max_value, self.max_total)
        except jinja2.UndefinedError as exc:
            raise RenderFailed(f"template {found}: {exc.message}") from None
        except jinja2.TemplateError as exc:
            raise RenderFailed(f"template {found}: {exc}") from None
        except MemoryError:  # a bound the sandbox does not know of: still this device's
            raise RenderFailed(f"template {found}: it ran out of memory") from None
        except Exception as exc:  # errors raised by filters on this host's data
            raise RenderFailed(f"template {found}: {type(exc).__name__}: {exc}") from None
        if text is None:
            raise RenderFailed(f"template {found} rendered more than the job's "
                               f"limits.rendered ({self.max_rendered:,} characters)")
        return [line.rstrip() for line in text.splitlines() if line.strip()]


# ---- what a secret reaches ------------------------------------------------------------------
# The rule: a rendered line whose text depends on a secret variable (its value, or anything
# a filter made of it: `upper`, `b64encode`, a slice) is itself a secret. It is masked
# whole, and so is each word of it that depends on the secret, wherever runner stores or
# shows it (diffs, echoes, outputs, previews, backups, errors, logs). Which lines depend on
# a secret is found by rendering again with stand-ins for the secrets (two, each differing
# from the value in every letter and digit, in the same class so filters such as `int`
# still apply): a line that changes depends on the secret. When the stand-ins change the
# number of lines, or fail to render, every line of that template counts as secret.


def stand_in(value: str, shift: int) -> str:
    """`value` with every letter and digit moved `shift` places within its class."""
    out = []
    for char in value:
        moved = char
        for first, size in (("0", 10), ("a", 26), ("A", 26)):
            if first <= char <= chr(ord(first) + size - 1):
                moved = chr(ord(first) + (ord(char) - ord(first) + shift) % size)
                break
        out.append(moved)
    return "".join(out)


def secret_dependent(render: Callable[[dict[str, Any]], list[str]], context: dict[str, Any],
                     secret_names: Collection[str]) -> tuple[list[str], set[str]]:
    """The rendered lines, and the texts (whole lines, and their words) that depend on the
    secret variables `secret_names` of `context`."""
    lines = render(context)
    secrets = {n: context[n] for n in secret_names if isinstance(context.get(n), str)}
    if not secrets or not lines:
        return lines, set()
    derived: set[str] = set()
    for shift in (1, 2):
        swapped = {n: stand_in(v, shift) for n, v in secrets.items()}
        alt = {**context, **swapped}
        if isinstance(context.get("vars"), dict):  # the same secrets as vars.NAME
            alt["vars"] = {**context["vars"], **swapped}
        try:
            other = render(alt)
        except RenderFailed:
            other = []
        if len(other) != len(lines):
            return lines, {line.strip() for line in lines} | _words(lines, None)
        for line, changed in zip(lines, other, strict=True):
            if line != changed:
                derived.add(line.strip())
                derived |= _words([line], changed)
    return lines, derived


def _words(lines: list[str], other: str | None) -> set[str]:
    """Words of `lines` (one line when `other`, its stand-in render, is given: the words
    that differ from it)."""
    if other is None:
        return {w for line in lines for w in line.split()}
    mine, theirs = lines[0].split(), other.split()
    if len(mine) != len(theirs):
        return set(mine)
    return {a for a, b in zip(mine, theirs, strict=True) if a != b}
