"""The command line as a whole: every command path under `runner`, and what one `runner ...`
process imported (its sys.modules as it exits)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click

# Runs `python -m runner ARGS` with sys.modules written to the file named first when the
# process exits (by sys.exit, as every runner command ends, or by returning).
_PROBE = """\
import atexit, runpy, sys
out = sys.argv.pop(1)
def _dump():
    with open(out, "w", encoding="utf-8") as fh:
        fh.write("\\n".join(sorted(sys.modules)))
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
    """One `runner` process: how it ended and the modules it had imported by then."""

    proc: subprocess.CompletedProcess[str]
    modules: set[str]

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
    return Imported(proc, set(out.read_text(encoding="utf-8").split()))
