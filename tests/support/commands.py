"""The command line as a whole: every command path under `runner`, and what one `runner ...`
process imported (its sys.modules as it exits) and built."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click

# Runs `python -m runner ARGS` and writes, to the file named first, as the process exits (by
# sys.exit, as every runner command ends, or by returning): its sys.modules, the pydantic
# models whose validators were built, how many objects the collector had frozen and its
# thresholds. The hook is registered before runner's own, so it runs after them.
_PROBE = """\
import atexit, gc, runpy, sys
out = sys.argv.pop(1)
def _built():
    if "pydantic" not in sys.modules:
        return []
    from pydantic import BaseModel
    found, todo = set(), [BaseModel]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            if sub.__dict__.get("__pydantic_complete__"):
                found.add(f"{sub.__module__}.{sub.__qualname__}")
    return sorted(found)
def _dump():
    found = {"modules": sorted(sys.modules), "built": _built(),
             "frozen": gc.get_freeze_count(), "threshold": gc.get_threshold()}
    import json
    with open(out, "w", encoding="utf-8") as fh:
        json.dump(found, fh)
atexit.register(_dump)
runpy.run_module("runner", run_name="__main__", alter_sys=True)
"""


def command_paths(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command path under `group` (the top-level group loads its commands lazily:
    this imports every command module)."""
    yield path
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if isinstance(command, click.Group):
            yield from command_paths(command, (*path, name))
        elif command is not None:
            yield (*path, name)


@dataclass
class Imported:
    """One `runner` process: how it ended, the modules it had imported by then, the pydantic
    models it built validators for (module.Class), the objects it froze (gc.freeze) and the
    collector's thresholds as it exited."""

    proc: subprocess.CompletedProcess[str]
    modules: set[str]
    built: set[str]
    frozen: int
    threshold: tuple[int, ...]

    def of(self, *packages: str) -> list[str]:
        """The imported modules of these top-level packages (`sqlalchemy` covers
        `sqlalchemy.engine`...)."""
        return sorted(m for m in self.modules if m.split(".")[0] in packages)

    def loaded(self, module: str) -> bool:
        return module in self.modules


def imports_of(args: list[str], workdir: Path, env: dict[str, str] | None = None,
               timeout: float = 300) -> Imported:
    """Run `python -m runner ARGS` in workdir; the modules it imported."""
    out = workdir / f"modules-{uuid.uuid4().hex}.txt"
    proc = subprocess.run([sys.executable, "-c", _PROBE, str(out), *args], cwd=workdir,
                          env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)
    assert out.exists(), (args, proc.returncode, proc.stderr[-3000:])
    found = json.loads(out.read_text(encoding="utf-8"))
    return Imported(proc, set(found["modules"]), set(found["built"]), found["frozen"],
                    tuple(found["threshold"]))
