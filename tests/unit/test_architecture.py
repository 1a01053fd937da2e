"""The layout shows the architecture: the root keeps a few foundations, no module imports
itself back through others (function-level and TYPE_CHECKING imports included), and no
import runs upward from a lower layer to a higher one. `python -m tests.unit.test_architecture
[DIR]` prints the facts for any checkout (the before/after figures of issue 23)."""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.support.base import ROOT

# Layers, lowest first: a module may import its own layer and lower ones only. A prefix
# names a package or a module; the longest prefix that matches a module decides.
LAYERS: list[tuple[str, ...]] = [
    # 0 foundations: vocabularies, errors, settings, records, masking, input files
    ("runner.vocab", "runner.errors", "runner.settings", "runner.registry", "runner.records",
     "runner.redact", "runner.logsetup", "runner.source",
     # the rule language of secret lines (platforms.yaml's `secrets:`), masking's own
     "runner.inventory.secretlines"),
    # 1 what a device is and how to talk to it
    ("runner.inventory", "runner.drivers"),
    # 2 the job's own domain: the spec (with its schedule) and what steps do on a device
    ("runner.job.schedule", "runner.job.triggers", "runner.job.spec", "runner.job.load",
     "runner.job.render", "runner.job.parsing", "runner.job.ttpguard", "runner.job.checks",
     "runner.job.configtree", "runner.job.diffing", "runner.job.restore", "runner.job.steps",
     "runner.job.notify", "runner.job.prepare",
     "runner.job.backups", "runner.job.output", "runner.job.compliance", "runner.job"),
    # 3 running a job on devices: executors, rollout, run control; the store
    ("runner.execution",),
    # 4 spreading work over machines; the store of runs, schedules and tokens; the options
    # every wing's commands share
    ("runner.dispatch", "runner.store", "runner.cli_common"),
    # 5 orchestration of a run: run, approval, the job's commands
    ("runner.job.run", "runner.job.approval", "runner.job.commands", "runner.job.rehearse",
     "runner.job.remediate", "runner.job.compliance_commands",
     "runner.twin"),
    # 6 long-running services and the lab
    ("runner.schedule", "runner.lab"),
    # 7 the web, on top of everything it shows
    ("runner.web",),
    # 8 the command line
    ("runner.cli", "runner.__main__"),
]
MAX_ROOT_MODULES = 10  # besides __init__ and __main__
DOTTED = re.compile(r"runner(?:\.\w+)+")


def modules(package_dir: Path) -> dict[str, Path]:
    """Every module of the package: dotted name -> file."""
    found = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> Iterator[str]:
    """Every runner module `name` imports, wherever the import statement stands, and every
    module it names in a string (importlib's way round the layers)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield from _resolve(alias.name, known)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")
                parent = parent[:len(parent) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                yield from (_resolve(full, known) if full in known else _resolve(base, known))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                DOTTED.fullmatch(node.value):
            yield from (m for m in _resolve(node.value, known) if m != "runner")


def _resolve(dotted: str, known: set[str]) -> Iterator[str]:
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        candidate = ".".join(parts[:i])
        if candidate in known:
            yield candidate
            return


def graph(package_dir: Path) -> dict[str, set[str]]:
    found = modules(package_dir)
    known = set(found)
    return {name: {m for m in imports(name, path, known) if m != name}
            for name, path in found.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def layer(module: str) -> int | None:
    """The layer of the longest prefix that names `module` or a package around it."""
    if module == "runner":  # the package itself: its version, nothing else
        return 0
    matches = [(len(prefix), level) for level, prefixes in enumerate(LAYERS)
               for prefix in prefixes if module == prefix or module.startswith(prefix + ".")]
    return max(matches)[1] if matches else None


def upward(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    out = []
    for source, targets in sorted(edges.items()):
        for target in sorted(targets):
            low, high = layer(source), layer(target)
            if low is not None and high is not None and high > low:
                out.append((source, target))
    return out


def root_modules(package_dir: Path) -> list[str]:
    return sorted(p.stem for p in package_dir.glob("*.py")
                  if p.stem not in ("__init__", "__main__"))


PACKAGE = ROOT / "runner"


def test_every_module_has_a_layer() -> None:
    assert [m for m in modules(PACKAGE) if layer(m) is None] == []


def test_the_root_keeps_a_few_foundations() -> None:
    assert len(root_modules(PACKAGE)) <= MAX_ROOT_MODULES, root_modules(PACKAGE)


def test_no_import_cycles() -> None:
    assert cycles(graph(PACKAGE)) == []


def test_no_upward_imports() -> None:
    assert upward(graph(PACKAGE)) == []


def test_the_checks_can_fail() -> None:
    """The cycle and layer checks find what they are for."""
    edges = {"runner.a": {"runner.b"}, "runner.b": {"runner.c"}, "runner.c": {"runner.a"},
             "runner.d": set()}
    assert cycles(edges) == [["runner.a", "runner.b", "runner.c"]]
    assert upward({"runner.errors": {"runner.web.app"}}) == [("runner.errors", "runner.web.app")]
    found = {"runner.web.app", "runner.errors", "runner"}
    source = ROOT / "runner" / "errors.py"
    named = 'importlib.import_module("runner.web.app")\nTASK = "runner.run_shard"\n'
    tree_path = Path(source.parent / "_probe.py")
    try:
        tree_path.write_text(named, encoding="utf-8")
        assert list(imports("runner._probe", tree_path, found)) == ["runner.web.app"]
    finally:
        tree_path.unlink()


if __name__ == "__main__":  # the facts for a checkout: python -m tests.unit.test_architecture
    package = Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve() / "runner"
    edges = graph(package)
    print(f"modules at the root: {len(root_modules(package))} ({', '.join(root_modules(package))})")
    found = cycles(edges)
    print(f"import cycles: {len(found)}")
    for component in found:
        print("  " + " <-> ".join(component))
    ups = upward(edges)
    print(f"upward imports: {len(ups)}")
    for source, target in ups:
        print(f"  {source} -> {target}")
