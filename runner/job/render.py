"""Config templates: Jinja2, sandboxed and bounded (loop iterations, string sizes, output),
StrictUndefined, loaded only from templates/."""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import jinja2
import jinja2.meta
from jinja2 import nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment, safe_range

from runner.errors import RenderFailed

MAX_ITERATIONS = 1_000_000  # range() items one render may produce, nested loops included
MAX_SEQUENCE = 1_000_000  # characters (or items) `*` may build
MAX_RENDERED = 1_048_576  # bytes a rendered template may hold (a job's limits.rendered)
# What `host` holds in a render (FleetInventory.template_vars).
HOST_FIELDS = ("name", "hostname", "platform", "groups", "data")
T = TypeVar("T")
# What is left of the current render's iteration budget (set around each render).
_BUDGET: ContextVar[list[int] | None] = ContextVar("runner_jinja_budget", default=None)


def _bounded_range(*args: int) -> range:
    items = safe_range(*args)  # Jinja's own cap on one range
    budget = _BUDGET.get()
    if budget is not None:
        budget[0] -= len(items)
        if budget[0] < 0:
            raise SecurityError(f"the template loops more than {MAX_ITERATIONS:,} times")
    return items


class BoundedSandbox(SandboxedEnvironment):
    """Jinja's sandbox (no attribute escapes), plus bounds a hostile or careless template
    would otherwise blow through: nested loops and huge strings or powers."""

    intercepted_binops = frozenset({"*", "**"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.globals["range"] = _bounded_range

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, count in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(count, int) \
                        and len(seq) * count > MAX_SEQUENCE:
                    raise SecurityError(f"the template builds a sequence of more than "
                                        f"{MAX_SEQUENCE:,} items")
        if operator == "**" and isinstance(right, int | float) and abs(right) > 100 \
                and isinstance(left, int | float) and abs(left) > 1:
            raise SecurityError("the template raises to a power above 100")
        return super().call_binop(context, operator, left, right)


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


def has_template(line: str) -> bool:
    """Whether a config line holds Jinja2 syntax ({{ }}, {% %} or {# #}): it is rendered."""
    return "{{" in line or "{%" in line or "{#" in line


def bounded(render: Callable[[], T]) -> T:
    """Run one render (or expression) with a fresh iteration budget."""
    token = _BUDGET.set([MAX_ITERATIONS])
    try:
        return render()
    finally:
        _BUDGET.reset(token)


class Templates:
    """Templates of one project; `<platform>/<name>` is preferred over the flat `<name>`."""

    def __init__(self, root: Path, max_rendered: int = MAX_RENDERED) -> None:
        self.root = Path(root)
        self.max_rendered = max_rendered

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
                template = self.env.from_string(line)
                text = bounded(lambda: template.render(**context))  # noqa: B023 (now)
            except jinja2.UndefinedError as exc:
                raise RenderFailed(f"config line {number} ({line!r}): {exc.message}") \
                    from None
            except Exception as exc:  # syntax (checked at validation), filters' errors
                raise RenderFailed(f"config line {number} ({line!r}): "
                                   f"{type(exc).__name__}: {exc}") from None
            total += len(text)
            if total > self.max_rendered:
                raise RenderFailed(f"config lines rendered {total:,} characters, more than "
                                   f"the job's limits.rendered ({self.max_rendered:,})")
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
            text = bounded(lambda: template.render(**context))
        except jinja2.UndefinedError as exc:
            raise RenderFailed(f"template {found}: {exc.message}") from None
        except jinja2.TemplateError as exc:
            raise RenderFailed(f"template {found}: {exc}") from None
        except Exception as exc:  # errors raised by filters on this host's data
            raise RenderFailed(f"template {found}: {type(exc).__name__}: {exc}") from None
        if len(text) > self.max_rendered:
            raise RenderFailed(f"template {found} rendered {len(text):,} characters, more "
                               f"than the job's limits.rendered ({self.max_rendered:,})")
        return [line.rstrip() for line in text.splitlines() if line.strip()]
