"""A library's deprecation notice never reaches runner's output (it would land above the
progress bar of every run); -vv shows it; runner's own warnings and other libraries' other
warnings are shown as log lines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from runner import logsetup
from tests.support.base import free_port, write_inventory

LIBRARY = "/usr/lib/python3/dist-packages/somelib/crypto.py"
RUNNER = str(Path(logsetup.__file__).parent / "drivers" / "asyncssh.py")
# A process that logs as `runner -v...` does, then gets warnings as libraries give them.
SCRIPT = """
import sys, warnings
from runner import logsetup

class LibraryDeprecation(UserWarning):  # as cryptography's: a UserWarning, shown by default
    pass

logsetup.configure(int(sys.argv[1]))
kinds = {"DeprecationWarning": DeprecationWarning, "RuntimeWarning": RuntimeWarning,
         "PendingDeprecationWarning": PendingDeprecationWarning,
         "LibraryDeprecation": LibraryDeprecation}
for i in range(2, len(sys.argv), 2):
    warnings.warn_explicit("old API", kinds[sys.argv[i]], sys.argv[i + 1], 32, module="lib")
"""


def stderr_of(verbose: int, *warned: str) -> list[str]:
    ran = subprocess.run([sys.executable, "-c", SCRIPT, str(verbose), *warned],
                         capture_output=True, text=True, check=True, timeout=60)
    return ran.stderr.splitlines()


@pytest.mark.parametrize("category", ["DeprecationWarning", "PendingDeprecationWarning",
                                      "LibraryDeprecation"])
def test_a_librarys_deprecation_is_hidden_and_shown_with_vv(category: str) -> None:
    assert stderr_of(0, category, LIBRARY) == []
    assert stderr_of(1, category, LIBRARY) == []
    assert stderr_of(2, category, LIBRARY) == [
        f"DEBUG runner.warnings: {category}: old API ({LIBRARY}:32)"]


def test_runners_own_deprecations_and_other_warnings_are_shown() -> None:
    assert stderr_of(0, "DeprecationWarning", RUNNER, "RuntimeWarning", LIBRARY) == [
        f"WARNING runner.warnings: DeprecationWarning: old API ({RUNNER}:32)",
        f"WARNING runner.warnings: RuntimeWarning: old API ({LIBRARY}:32)"]


def test_a_run_prints_no_library_warning(tmp_path: Path) -> None:
    """A real `runner run` with runner's asyncssh driver (whose import makes cryptography
    warn about DSA with cryptography 51) to a port where nothing listens: stderr holds the
    run's own lines only, with or without -v."""
    inventory = write_inventory(
        tmp_path, f"r1: {{hostname: 127.0.0.1, port: {free_port()}, platform: cisco_ios}}\n")
    job = tmp_path / "job.yml"
    job.write_text("name: j\ndriver: asyncssh\ntimeouts: {connect: 3}\n"
                   "steps:\n  - command: show version\n", encoding="utf-8")
    for verbose in ([], ["-v"]):
        ran = subprocess.run(
            [sys.executable, "-m", "runner", *verbose, "--db",
             f"sqlite:///{tmp_path / 'r.db'}", "run", str(job), "-i", str(inventory)],
            capture_output=True, text=True, check=False, timeout=120)
        assert ran.returncode == 1, ran.stderr  # unreachable
        assert "Warning" not in ran.stderr, ran.stderr
        assert "warnings.warn" not in ran.stderr and "deprecated" not in ran.stderr.lower()
