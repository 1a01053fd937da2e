"""Config templates: Jinja2, sandboxed, StrictUndefined, loaded only from templates/."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta
from jinja2.sandbox import SandboxedEnvironment

from runner.errors import RenderFailed


class Templates:
    """Templates of one project; `<platform>/<name>` is preferred over the flat `<name>`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @cached_property
    def env(self) -> SandboxedEnvironment:
        return SandboxedEnvironment(
            loader=jinja2.FileSystemLoader(str(self.root)),
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

    def render(self, name: str, platform: str, context: dict[str, Any]) -> list[str]:
        """Config lines for one device; RenderFailed names the template and what is wrong."""
        found = self.resolve(name, platform)
        if found is None:
            raise RenderFailed(f"template {name!r} not found for platform {platform!r}")
        try:
            text = self.env.get_template(found).render(**context)
        except jinja2.UndefinedError as exc:
            raise RenderFailed(f"template {found}: {exc.message}") from None
        except jinja2.TemplateError as exc:
            raise RenderFailed(f"template {found}: {exc}") from None
        except Exception as exc:  # errors raised by filters on this host's data
            raise RenderFailed(f"template {found}: {type(exc).__name__}: {exc}") from None
        return [line.rstrip() for line in text.splitlines() if line.strip()]
