"""Bench: the scale benches of issue 28, one after another, and their figures at the end.

    .venv/bin/python bench/scale.py [--only NAME]... [--skip NAME]... [--list]
    ./dev bench --scale [same options]

Each bench in SCALE_BENCHES runs as its own script (its output shown as it goes and kept
in a log), then a summary prints every bench's exit, wall time and its figure lines.
Heavy: the whole list takes ~35 minutes and up to ~2 GiB (100,000 simulated devices).
A bench that fails does not stop the others; the exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Bench:
    name: str
    argv: tuple[str, ...]  # a script under bench/ and its options
    what: str
    figures: str  # a regex: the output lines the summary repeats


# The one list of scale benches: add a bench here (name, script and options, what it
# answers, which of its lines are figures) and `./dev bench --scale` runs it.
SCALE_BENCHES: tuple[Bench, ...] = (
    Bench("startup", ("bench/startup.py", "--repeat", "7"),
          "point 6: CPU of --help, validate and a small run before any device",
          r"^\| (runner |command |validate|a run's floor)"),  # commands, floors
    Bench("fleet-10k", ("bench/fleet.py", "--devices", "10000", "--repeat", "3",
                        "--skip", "nornir", "--skip", "ansible", "--skip", "push",
                        "--sim-address", "127.170.0.1", "--sim-port", "22170"),
          "points 2 and 4: client CPU against the floor, Celery (2 workers) against the "
          "local engine, Redis commands per device, on 10,000 devices",
          r"^simulator:|^(runner|raw asyncssh|runner via Celery)|/ floor|Celery / local|"
          r"Redis commands|^    [a-z]+ \d|own peak RSS|simulator CPU per session"),
    Bench("client-parts", ("bench/client_parts.py", "--devices", "3000", "--repeat", "3",
                           "--sim-address", "127.171.0.1", "--sim-port", "22171"),
          "point 2: where runner's client CPU goes beyond the floor's, part by part "
          "(one process, 3,000 devices)",
          r"^\| |runner / floor CPU"),
    Bench("run-100k", ("bench/run_scale.py", "--devices", "100000"),
          "point 1: one `runner run` of the show job over 100,000 devices",
          r"^simulator:|^\| |^targets"),
    Bench("backup-100k", ("bench/backup_scale.py", "--repo", "100000"),
          "point 3: a backup repository fed as a run feeds it, 100,000 devices: first run, "
          "unchanged re-run, 1 % changed",
          r"^\| "),
    Bench("backup-run-100k", ("bench/run_scale.py", "--devices", "100000", "--job", "backup",
                              "--sim-address", "127.191.0.1"),
          "point 3: a backup run (`runner run` of a backup job) over 100,000 simulated "
          "devices: first into an empty repository, then unchanged; one commit, bounded "
          "memory, the re-run no slower",
          r"^simulator:|^\| |^targets"),
    Bench("store-100k", ("bench/store_scale.py", "--devices", "100000", "--db", "both"),
          "point 5: a run of 100,000 records on SQLite and PostgreSQL: run page, device "
          "search, /api/runs/ID pages, history and show, bytes per record",
          r"^\| |per device record"),
    Bench("sim-100k", ("bench/sim_scale.py", "--devices", "100000",
                       "--address", "127.180.0.1"),
          "point 1: the simulator alone at 100,000 devices (start, memory, logins, stop)",
          r"^simulator:|^ready|^memory|^logins|^stop"),
)


def run(bench: Bench, logs: Path) -> tuple[int, float, list[str]]:
    """Run one bench, its output to this terminal and its log: exit, wall, figure lines."""
    print(f"\n=== {bench.name}: {bench.what}\n    {' '.join(bench.argv)}", flush=True)
    log = logs / f"{bench.name}.log"
    pattern = re.compile(bench.figures)
    figures: list[str] = []
    t0 = time.monotonic()
    with log.open("w", encoding="utf-8") as out:
        proc = subprocess.Popen([sys.executable, *bench.argv], cwd=ROOT, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=1)
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            out.write(line)
            if pattern.search(line):
                figures.append(line.rstrip())
        code = proc.wait()
    return code, time.monotonic() - t0, figures


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    names = [b.name for b in SCALE_BENCHES]
    ap.add_argument("--only", action="append", choices=names, default=[],
                    help="run only this bench (repeatable)")
    ap.add_argument("--skip", action="append", choices=names, default=[],
                    help="leave this bench out (repeatable)")
    ap.add_argument("--list", action="store_true", help="list the benches and exit")
    args = ap.parse_args()
    if args.list:
        for bench in SCALE_BENCHES:
            print(f"{bench.name:12} {bench.what}\n{'':12} {' '.join(bench.argv)}")
        return 0
    chosen = [b for b in SCALE_BENCHES
              if (not args.only or b.name in args.only) and b.name not in args.skip]
    logs = Path(tempfile.mkdtemp(prefix="runner-bench-scale-"))
    done = [(bench, *run(bench, logs)) for bench in chosen]
    print(f"\n=== summary (full output in {logs})")
    for bench, code, wall, figures in done:
        print(f"\n{bench.name}: {'ok' if code == 0 else f'FAILED (exit {code})'}, "
              f"{wall:.0f} s; {bench.what}")
        for line in figures:
            print(f"  {line}")
    return 1 if any(code for _, code, _, _ in done) else 0


if __name__ == "__main__":
    sys.exit(main())
