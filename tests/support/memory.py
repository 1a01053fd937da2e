"""A `runner` process's own peak memory, measured the only way that is not the test's: the
process reads its VmHWM (the high-water mark of its memory since its exec) as it exits.
ru_maxrss from wait4 cannot be used: the child is (v)forked from pytest, and the kernel
carries the parent's resident size over the exec into the child's maxrss, so in a long
test session that figure is pytest's size, not the run's."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import IO, Any

# `python -c MEASURED FILE ARGS...` runs `python -m runner ARGS...` in its own process and
# writes the process's VmHWM (KiB) to FILE at exit.
MEASURED = """
import atexit, runpy, sys
out = sys.argv.pop(1)
def _hwm():
    for line in open("/proc/self/status", encoding="ascii"):
        if line.startswith("VmHWM:"):
            with open(out, "w", encoding="ascii") as f:
                f.write(line.split()[1])
atexit.register(_hwm)
sys.argv[0] = "runner"
runpy.run_module("runner", run_name="__main__", alter_sys=True)
"""


def measured(argv: list[str], hwm: Path) -> list[str]:
    """`argv` (`python -m runner ...`) as a command that leaves its peak RSS in `hwm`."""
    assert argv[1:3] == ["-m", "runner"], argv
    return [argv[0], "-c", MEASURED, str(hwm), *argv[3:]]


def peak_rss(argv: list[str], hwm: Path, *, stdout: IO[Any] | int | None = None,
             stderr: IO[Any] | int | None = None, timeout: float = 900,
             **popen: Any) -> tuple[int, int]:
    """Run `argv` (`python -m runner ...`) to its end: (exit code, its peak RSS in bytes).
    A run that outlives `timeout` is killed and fails the test."""
    proc = subprocess.Popen(measured(argv, hwm), stdout=stdout, stderr=stderr, **popen)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    return proc.returncode, int(hwm.read_text(encoding="ascii")) * 1024
