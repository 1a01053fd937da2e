"""The tests share their helpers through tests/support: no test module or conftest imports
another test module or a conftest (function-level imports included), one `write_job`, one
`run_job`/`run_runner`, one `Fleet` and one `fleet` fixture, and conftest files hold only
fixtures and pytest hooks."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

from tests.support.base import ROOT

# A module of tests (test_*.py) or a conftest, anywhere under tests/: never imported.
TEST_MODULE = re.compile(r"^tests(\.\w+)*\.(test_\w+|conftest)$")
# Helpers with one home: tests/support.
SHARED_FUNCTIONS = {"write_job", "run_job", "run_runner", "run"}
SHARED_CLASSES = {"Fleet"}


def _imported(node: ast.Import | ast.ImportFrom, module: str) -> Iterator[str]:
    """The dotted modules an import statement in `module` names (relative ones resolved)."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
    else:
        base = node.module or ""
        if node.level:
            package = module.split(".")[:-node.level]
            base = ".".join([*package, *([base] if base else [])])
        yield base
        yield from (f"{base}.{alias.name}" for alias in node.names)


def _is_fixture(func: ast.FunctionDef) -> bool:
    for decorator in func.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if isinstance(target, ast.Attribute) and target.attr == "fixture":
            return True
    return False


def layout_problems(tests_dir: Path) -> list[str]:
    """Every breach of the layout under tests_dir (a `tests` package), one line each."""
    problems = []
    for path in sorted(tests_dir.rglob("*.py")):
        rel = path.relative_to(tests_dir.parent)
        module = ".".join(rel.with_suffix("").parts)
        in_support = rel.parts[1] == "support"
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for name in _imported(node, module):
                if TEST_MODULE.match(name) and name != module:
                    problems.append(f"{rel}:{node.lineno}: imports {name} "
                                    "(shared helpers belong in tests/support)")
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and not in_support:
                if node.name in SHARED_FUNCTIONS:
                    problems.append(f"{rel}:{node.lineno}: defines {node.name}() "
                                    "(use tests/support/jobs.py)")
                if node.name == "fleet" and _is_fixture(node) and rel != Path("tests",
                                                                                "conftest.py"):
                    problems.append(f"{rel}:{node.lineno}: a second `fleet` fixture "
                                    "(tests/conftest.py has it; say what it serves with "
                                    "`fleet_spec`)")
            if isinstance(node, ast.ClassDef) and not in_support and \
                    node.name in SHARED_CLASSES:
                problems.append(f"{rel}:{node.lineno}: defines class {node.name} "
                                "(use tests/support/fleet.py)")
            helper = isinstance(node, ast.FunctionDef) and not _is_fixture(node) and \
                not node.name.startswith("pytest_")
            if path.name == "conftest.py" and isinstance(node, ast.ClassDef | ast.FunctionDef) \
                    and (isinstance(node, ast.ClassDef) or helper):
                problems.append(f"{rel}:{node.lineno}: conftest defines {node.name}, "
                                "neither a fixture nor a pytest hook (put it in "
                                "tests/support)")
    return problems


def test_tests_share_helpers_through_support_only() -> None:
    assert layout_problems(ROOT / "tests") == []


def test_the_scan_finds_each_kind_of_breach(tmp_path: Path) -> None:
    tests = tmp_path / "tests"
    for package in ("", "sim", "lab", "support"):
        (tests / package).mkdir(parents=True, exist_ok=True)
        (tests / package / "__init__.py").write_text("", encoding="utf-8")
    (tests / "support" / "jobs.py").write_text("def write_job(): ...\nclass Fleet: ...\n",
                                               encoding="utf-8")
    (tests / "conftest.py").write_text(
        "import pytest\n@pytest.fixture\ndef fleet(): ...\n"
        "def pytest_configure(config): ...\n", encoding="utf-8")
    (tests / "sim" / "conftest.py").write_text(
        "import pytest\n@pytest.fixture(scope='session')\ndef fleet(): ...\n"
        "class Helper: ...\ndef helper(): ...\n", encoding="utf-8")
    (tests / "sim" / "test_a.py").write_text(
        "from tests.lab.test_b import step\nfrom tests.sim.conftest import X\n"
        "from . import test_c\nfrom .conftest import Y\n"
        "def f():\n    import tests.lab.conftest\n"
        "def write_job(): ...\ndef run(): ...\nclass Fleet: ...\n"
        "from tests.support.jobs import write_job as w\n", encoding="utf-8")
    found = layout_problems(tests)
    assert [p.split(": ", 1)[0] for p in found] == [
        "tests/sim/conftest.py:3", "tests/sim/conftest.py:4", "tests/sim/conftest.py:5",
        "tests/sim/test_a.py:1", "tests/sim/test_a.py:2", "tests/sim/test_a.py:3",
        "tests/sim/test_a.py:4", "tests/sim/test_a.py:6", "tests/sim/test_a.py:7",
        "tests/sim/test_a.py:8", "tests/sim/test_a.py:9"], found
    assert "imports tests.lab.test_b" in found[3] and "imports tests.sim.test_c" in found[5]
    assert "a second `fleet` fixture" in found[0]
