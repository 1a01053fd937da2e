"""The tests share their helpers through tests/support: no test module or conftest imports
another test module or a conftest (function-level imports included), one `write_job`, one
`run_job`/`run_runner`, one `Fleet` and one `fleet` fixture, one `runner serve` starter,
simulators started only through tests/support/fleet.py (no `SimProcess(...)` and no
`Devices` class elsewhere), and conftest files hold only fixtures and pytest hooks."""

from __future__ import annotations

import ast
import ipaddress
import re
from collections.abc import Iterator
from pathlib import Path

from runner.lab.sim.fleet import build
from tests.support.base import ROOT

# A module of tests (test_*.py) or a conftest, anywhere under tests/: never imported.
TEST_MODULE = re.compile(r"^tests(\.\w+)*\.(test_\w+|conftest)$")
# Helpers with one home: tests/support.
SHARED_FUNCTIONS = {"write_job", "run_job", "run_runner", "run"}
SHARED_CLASSES = {"Fleet"}
# Classes that copied a support helper, at any depth: where the one copy lives.
COPIES = {"Devices": "Fleet in tests/support/fleet.py", "Serve": "tests/support/serve.py"}


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


def _constructs_simprocess(node: ast.AST) -> bool:
    """`SimProcess(...)` or `<module>.SimProcess(...)`: a simulator started by hand."""
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    return (isinstance(func, ast.Name) and func.id == "SimProcess") or \
        (isinstance(func, ast.Attribute) and func.attr == "SimProcess")


def _copies(rel: Path, tree: ast.Module) -> list[str]:
    """Copies of a support helper at any depth, in line order: a class of COPIES, or a
    simulator started by hand."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name in COPIES:
            found.append((node.lineno, f"defines class {node.name} (use {COPIES[node.name]})"))
        if _constructs_simprocess(node):
            found.append((node.lineno, "starts a SimProcess (start simulators with "
                          "tests/support/fleet.py: start_fleet(FleetSpec(...)), FleetPool or "
                          "the `fleet` fixture)"))
    return [f"{rel}:{line}: {what}" for line, what in sorted(found)]


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
        if not in_support:
            problems += _copies(rel, tree)
    return problems


def _int_constants(tree: ast.Module) -> dict[str, int]:
    """Module-level `NAME = <int>` assignments (a fleet's size is often one)."""
    return {target.id: node.value.value for node in tree.body if isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant) and type(node.value.value) is int
            for target in node.targets if isinstance(target, ast.Name)}


def _last_address(first: str, devices: int) -> int:
    """The address the simulator gives its last device (it skips .0 and .255)."""
    fleet = build(devices, first, 2022, {}, 0, "netops", "unused", 1.0)
    return int(ipaddress.IPv4Address(fleet.devices[-1].address))


def fleet_ranges(tests_dir: Path) -> list[tuple[str, int, int]]:
    """Every FleetSpec(devices, address, ...) under tests_dir: (where, first address, last
    address); first and last are -1 when the call does not say both as literals."""
    found = []
    for path in sorted(tests_dir.rglob("*.py")):
        rel = path.relative_to(tests_dir.parent)
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        constants = _int_constants(tree)
        for node in ast.walk(tree):
            func = node.func if isinstance(node, ast.Call) else None
            if not (isinstance(func, ast.Name) and func.id == "FleetSpec") or \
                    not isinstance(node, ast.Call):
                continue
            given = {**dict(zip(("devices", "address"), node.args, strict=False)),
                     **{k.arg: k.value for k in node.keywords if k.arg}}
            size, address = given.get("devices"), given.get("address")
            count = size.value if isinstance(size, ast.Constant) else \
                constants.get(size.id) if isinstance(size, ast.Name) else None
            if isinstance(count, int) and isinstance(address, ast.Constant) and \
                    isinstance(address.value, str):
                found.append((f"{rel}:{node.lineno}", int(ipaddress.IPv4Address(address.value)),
                               _last_address(address.value, count)))
            else:
                found.append((f"{rel}:{node.lineno}", -1, -1))
    return found


def overlapping(ranges: list[tuple[str, int, int]]) -> list[tuple[str, str]]:
    """Pairs of ranges that share an address."""
    ordered = sorted(ranges, key=lambda r: r[1])
    return [(a[0], b[0]) for i, a in enumerate(ordered) for b in ordered[i + 1:]
            if b[1] <= a[2]]


def test_each_simulator_has_addresses_of_its_own() -> None:
    """Every FleetSpec says its size and first address as literals, and no two simulators'
    addresses overlap: a module's devices are its own, whatever runs beside it."""
    ranges = fleet_ranges(ROOT / "tests")
    assert len(ranges) >= 19, ranges  # the scan sees the fleets
    assert [where for where, first, _ in ranges if first < 0] == []
    assert overlapping(ranges) == []


def test_the_address_scan_finds_a_shared_range(tmp_path: Path) -> None:
    tests = tmp_path / "tests"
    (tests / "sim").mkdir(parents=True)
    (tests / "sim" / "test_a.py").write_text(
        "N = 300\nA = FleetSpec(N, '127.120.0.1')\nB = FleetSpec(2, '127.120.1.40')\n"
        "C = FleetSpec(devices=2, address='127.120.1.50')\nD = FleetSpec(2, address)\n",
        encoding="utf-8")
    ranges = fleet_ranges(tests)
    # 300 devices from .0.1 skip .0.255 and .1.0: the last is 127.120.1.46
    assert ranges[0] == ("tests/sim/test_a.py:2", int(ipaddress.IPv4Address("127.120.0.1")),
                         int(ipaddress.IPv4Address("127.120.1.46")))
    assert ranges[3] == ("tests/sim/test_a.py:5", -1, -1)
    assert overlapping(ranges[:3]) == [("tests/sim/test_a.py:2", "tests/sim/test_a.py:3")]


def test_tests_share_helpers_through_support_only() -> None:
    assert layout_problems(ROOT / "tests") == []


def test_the_scan_finds_each_kind_of_breach(tmp_path: Path) -> None:
    tests = tmp_path / "tests"
    for package in ("", "sim", "lab", "support"):
        (tests / package).mkdir(parents=True, exist_ok=True)
        (tests / package / "__init__.py").write_text("", encoding="utf-8")
    (tests / "support" / "jobs.py").write_text(  # support's own helpers: no breach
        "def write_job(): ...\nclass Fleet: ...\nclass Serve: ...\nclass Devices: ...\n"
        "def start(d):\n    return SimProcess(d, 4)\n", encoding="utf-8")
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
        "from tests.support.jobs import write_job as w\n"
        "class Devices: ...\ndef sim(d):\n    with SimProcess(d, 4) as s:\n"
        "        class Serve: ...\n    return process.SimProcess(d, 2)\n", encoding="utf-8")
    found = layout_problems(tests)
    assert [p.split(": ", 1)[0] for p in found] == [
        "tests/sim/conftest.py:3", "tests/sim/conftest.py:4", "tests/sim/conftest.py:5",
        "tests/sim/test_a.py:1", "tests/sim/test_a.py:2", "tests/sim/test_a.py:3",
        "tests/sim/test_a.py:4", "tests/sim/test_a.py:6", "tests/sim/test_a.py:7",
        "tests/sim/test_a.py:8", "tests/sim/test_a.py:9", "tests/sim/test_a.py:11",
        "tests/sim/test_a.py:13", "tests/sim/test_a.py:14", "tests/sim/test_a.py:15"], found
    assert "imports tests.lab.test_b" in found[3] and "imports tests.sim.test_c" in found[5]
    assert "a second `fleet` fixture" in found[0]
    assert "defines class Devices (use Fleet in tests/support/fleet.py)" in found[11]
    assert "starts a SimProcess" in found[12] and "starts a SimProcess" in found[14]
    assert "defines class Serve (use tests/support/serve.py)" in found[13]
