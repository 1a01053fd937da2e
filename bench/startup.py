"""Bench: what `runner` costs before it does anything, in CPU, beside the bare interpreter.

    .venv/bin/python bench/startup.py [--repeat 7] [--devices 5] [--baseline REV] [--top 8]
                                      [--sim-address 127.28.6.1]

Runs each command as a user types it (`python -m runner ...`, a fresh interpreter each
time, with compiled bytecode as an installed package has it) --repeat times, interleaved,
and prints the median CPU (user + system of the child and the children it reaped, from
wait4) and that minus `python -c pass`: `runner --help`, `runner run --help`, `runner
validate` on a job (the show job, alone and with -i; the shipped jobs/facts.yml, whose
directory's jobs are read for their `after:` graph), and a small `runner run` (a show job
on --devices simulated devices, the local engine, a database already at head). Then the
libraries those commands need, each imported alone and then together per command (their
floor), and for each command
its largest imports as `python -X importtime` reports them (one more run). With
--baseline REV, the runner package of that git revision (extracted with `git archive`,
run from this venv) is measured in the same run, interleaved, for a before/after.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# asyncssh (the simulator's) names DSA, which cryptography deprecates: not this bench's news.
warnings.filterwarnings("ignore", module=r"asyncssh\.")

from runner.lab.sim.process import SimProcess  # noqa: E402

PY = sys.executable
SHOW_JOB = """\
name: startup-show
driver: asyncssh
steps:
  - name: show
    command: [show version]
"""


@dataclass
class Case:
    """One command line, and its measurements per code base."""

    name: str
    args: list[str]  # after `python`
    cpu: dict[str, list[float]] = field(default_factory=dict)  # code -> CPU seconds
    imports: dict[str, list[tuple[float, str]]] = field(default_factory=dict)
    library: bool = False  # a library alone: what any command that needs it pays


# What the commands above cannot do without, each imported alone: the floor under them.
# asyncssh alone probes for liboqs and libnettle with ctypes.util.find_library (ldconfig,
# and gcc and ld for a library ldconfig does not list: child processes, counted here, a
# process's CPU includes the children it reaped); as runner imports it (its drivers,
# runner.drivers.sshlib) the probe is ldconfig's cache and the loader's directories.
_PYDANTIC = "from pydantic import BaseModel, Field; import pydantic.plugin._loader"
LIBRARIES = (
    ("click", "import click"),
    ("PyYAML", "import yaml"),
    ("pydantic (BaseModel)", "from pydantic import BaseModel"),
    # a model with fields loads pydantic.fields (its types, annotated_types); pydantic
    # imports its plugin loader (and importlib.metadata) as it builds its first validator,
    # whatever PYDANTIC_DISABLE_PLUGINS says: every job check pays both
    ("pydantic (+ fields, plugin loader)", _PYDANTIC),
    ("nornir", "import nornir.core.inventory"),
    ("SQLAlchemy (Core)", "import sqlalchemy"),
    ("asyncssh", "import asyncssh"),
    ("asyncssh (runner.drivers.sshlib)", "from runner.drivers.sshlib import asyncssh"),
    # what `validate` cannot do without, together (shared imports counted once); with -i
    # Nornir besides; a run, SQLAlchemy and asyncssh besides
    ("validate's floor: click, PyYAML, pydantic", "import click, yaml; " + _PYDANTIC),
    ("validate -i's floor: + nornir", "import click, yaml, nornir.core.inventory; "
                                      + _PYDANTIC),
    ("a run's floor: + SQLAlchemy, asyncssh", "import click, yaml, nornir.core.inventory, "
     "sqlalchemy; from runner.drivers.sshlib import asyncssh; " + _PYDANTIC),
)


def cpu_of(args: list[str], env: dict[str, str], cwd: Path) -> float:
    """User + system CPU seconds of one run of `python ARGS` (the child and what it
    reaped); it must exit 0."""
    proc = subprocess.Popen([PY, *args], env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} exited {proc.returncode}: "
                         f"{err.decode(errors='replace')[-2000:]}")
    return usage.ru_utime + usage.ru_stime


def top_imports(args: list[str], env: dict[str, str], cwd: Path,
                count: int) -> list[tuple[float, str]]:
    """The `count` largest top-level imports (cumulative microseconds -> seconds) of one
    run under -X importtime, and their total as ("total", ...)."""
    proc = subprocess.run([PY, "-X", "importtime", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, check=False)
    rows = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        _, cumulative, name = line.split("|")
        if not name.startswith("  "):  # depth 0 is " name", each level two spaces more
            rows.append((int(cumulative) / 1e6, name.strip()))
    rows.sort(reverse=True)
    return [(sum(r[0] for r in rows), "(all imports)"), *rows[:count]]


def baseline_tree(rev: str, into: Path) -> Path:
    """The runner package of git revision `rev`, extracted under `into`."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "runner"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=7, help="runs of each command (median)")
    ap.add_argument("--devices", type=int, default=5, help="simulated devices of the run")
    ap.add_argument("--baseline", metavar="REV",
                    help="also measure the runner package of this git revision")
    ap.add_argument("--top", type=int, default=8, help="imports listed per command")
    ap.add_argument("--sim-address", default="127.28.6.1", metavar="ADDRESS",
                    help="loopback address of the run's simulator (one of your own when "
                         "others run simulators on this machine)")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="runner-startup-"))
    # Compiled bytecode, as an installed package has it: without it (PYTHONDONTWRITEBYTECODE
    # set, as in some sandboxes and CI) every import compiles its source again, which
    # doubled these figures. A cache of this run's own, filled by the warm-up below.
    env = {k: v for k, v in os.environ.items()
           if k not in ("RUNNER_BROKER_URL", "RUNNER_RESULT_URL", "RUNNER_DB_URL",
                        "PYTHONPATH", "PYTHONDONTWRITEBYTECODE")}
    env |= {"RUNNER_HOME": str(work / "home"), "RUNNER_LOCK_DIR": str(work / "locks"),
            "COLUMNS": "80", "PYTHONPYCACHEPREFIX": str(work / "pycache")}
    codes: dict[str, dict[str, str]] = {"this tree": env}
    if args.baseline:
        tree = baseline_tree(args.baseline, Path(tempfile.mkdtemp(prefix="runner-base-")))
        codes[f"baseline {args.baseline}"] = {**env, "PYTHONPATH": str(tree)}
    (work / "jobs").mkdir()
    job = work / "jobs" / "show.yml"
    job.write_text(SHOW_JOB, encoding="utf-8")
    facts = ROOT / "jobs" / "facts.yml"
    templates = ROOT / "templates"

    with SimProcess(work / "sim", args.devices, address=args.sim_address,
                    port=_free_port()) as sim:
        inv = sim.inventory
        db = f"sqlite:///{work / 'results.db'}"
        runner = ["-m", "runner"]
        cases = [
            Case("python -c pass", ["-c", "pass"]),
            Case("runner --help", [*runner, "--help"]),
            Case("runner run --help", [*runner, "run", "--help"]),
            Case("runner validate (show job)", [*runner, "validate", str(job)]),
            Case("runner validate (facts.yml)", [*runner, "validate", str(facts),
                                                 "--templates", str(templates)]),
            Case("runner validate -i (show job)", [*runner, "validate", str(job), "-i",
                                                   str(inv)]),
            Case(f"runner run ({args.devices} devices)",
                 [*runner, "--db", db, "run", str(job), "-i", str(inv), "--engine",
                  "local"]),
            *(Case(f"{name} alone", ["-W", "ignore", "-c", code], library=True)
              for name, code in LIBRARIES),
        ]
        for index, code_env in enumerate(codes.values()):  # the schema made, compiled: warm
            for case in cases:
                if index == 0 or not case.library:  # a library: with this tree's runner
                    cpu_of(case.args, code_env, work)
        for _ in range(args.repeat):
            for case in cases:
                # a library is the same whatever the tree: measured with the first
                for code, code_env in list(codes.items())[:1 if case.library else None]:
                    case.cpu.setdefault(code, []).append(cpu_of(case.args, code_env, work))
        for case in cases:
            for code, code_env in codes.items():
                if not case.library:
                    case.imports[code] = top_imports(case.args, code_env, work, args.top)
    report(cases, list(codes), args.repeat)


def report(cases: list[Case], codes: list[str], repeat: int) -> None:
    median: Callable[[list[float]], float] = statistics.median
    print(f"CPU (user + system) of each command, median of {repeat}; "
          "'over python' = minus `python -c pass`\n")
    head = "| command | " + " | ".join(f"{c} | {c}: over python" for c in codes) + " |"
    print(head)
    print("|" + " --- |" * (1 + 2 * len(codes)))
    bare = {code: median(cases[0].cpu[code]) for code in codes}
    for case in cases:
        cells = []
        if case.library:  # the same library whatever the tree: one measurement
            cpu = median(case.cpu[codes[0]])
            print(f"| {case.name} | {cpu:.3f} s | {cpu - bare[codes[0]]:+.3f} s |"
                  + " |" * (2 * len(codes) - 2))
            continue
        for code in codes:
            cpu = median(case.cpu[code])
            cells += [f"{cpu:.3f} s", f"{cpu - bare[code]:+.3f} s"]
        print(f"| {case.name} | " + " | ".join(cells) + " |")
    print("\nlargest imports (-X importtime, cumulative, one run; a run's wall under load)")
    for case in cases[1:]:
        for code in case.imports:
            print(f"\n{case.name} [{code}]")
            for seconds, name in case.imports[code]:
                print(f"  {seconds * 1000:8.1f} ms  {name}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


if __name__ == "__main__":
    main()
