"""Bench: where runner's client CPU goes beyond the floor's, part by part (issue 28, point 2).

    .venv/bin/python bench/client_parts.py [--devices 3000] [--repeat 3]

Starts the simulator (pinned to the first core), then, --repeat rounds, each on the other
core: the show job with `runner run --processes 1` as it is, the same run with its parts
timed from inside, and the raw asyncssh floor (bench/peers/peer_asyncssh.py). The timed
run is the real command with a wrapper around each named part: the thread CPU
(time.thread_time) of every call, so the record writer's work counts in its own thread and
waiting for the GIL counts nowhere; a part called inside another counts once, in the outer
one. Start-up is the process's CPU when the first device starts. Prints, per device and in
medians: runner's CPU, the floor's, the difference, each part, runner's start-up, and the
rest against the floor's work past its own imports (the event
loop, the SSH work runner does beyond the floor's, e.g. checking host keys, the timing's
own cost). Tests never assert on these figures.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# asyncssh (the simulator's) names DSA, which cryptography deprecates: not this bench's news.
warnings.filterwarnings("ignore", module=r"asyncssh\.")

PEERS = ROOT / "bench" / "peers"

# (label, module, qualified name): the parts of a device's work runner does and the floor
# does not. Each is a plain function (not a coroutine): its thread CPU is its own work.
PARTS: tuple[tuple[str, str, str], ...] = (
    ("masking the record", "runner.execution.device", "DeviceRunner._redacted"),
    ("connection settings (inventory)", "runner.inventory.fleet",
     "FleetInventory.connect_params"),
    ("host variables (inventory)", "runner.inventory.fleet", "FleetInventory.template_vars"),
    ("driver lookup (inventory)", "runner.inventory.fleet", "FleetInventory.driver_for"),
    ("record handed over (tally, progress line, writer queue)", "runner.execution.tally",
     "Tally.finished"),
    ("device started (tally, in-progress list)", "runner.execution.tally", "Tally.started"),
    ("records stored (writer thread: JSON, SQL)", "runner.store.results",
     "RecordWriter._store_batch"),
    ("in-progress list stored (writer thread)", "runner.store.results",
     "RecordWriter._store_working"),
)
STARTUP = "start-up (CPU before the first device)"
END = "the run's end (CPU after the last record: stored, summary, table, exit)"
# What the floor imports before its first device (its start-up).
FLOOR_IMPORTS = "import asyncssh, yaml, work; from runner.drivers import sshlog; sshlog.install()"


def probe(out: Path, argv: list[str]) -> None:
    """Run `runner ARGV` in this process with PARTS timed; their totals to OUT (JSON)."""
    totals = {label: 0.0 for label, _, _ in PARTS}
    calls = dict.fromkeys(totals, 0)
    inside = threading.local()
    first: list[float] = []  # process CPU when the first device started
    last = [0.0]  # and when the last record was handed over

    def timed(label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            if getattr(inside, "on", False):  # inside another part: counted there
                return fn(*args, **kwargs)
            if label.startswith("device started") and not first:
                first.append(time.process_time())
            inside.on = True
            t0 = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                totals[label] += time.thread_time() - t0
                calls[label] += 1
                inside.on = False
                if label.startswith("record handed over"):
                    last[0] = time.process_time()
        return call

    for label, module, qual in PARTS:
        owner: Any = importlib.import_module(module)
        *path, name = qual.split(".")
        for attr in path:
            owner = getattr(owner, attr)
        setattr(owner, name, timed(label, getattr(owner, name)))

    def dump() -> None:
        out.write_text(json.dumps({"parts": totals, "calls": calls,
                                   "startup": first[0] if first else None,
                                   "end": time.process_time() - last[0],
                                   "cpu": time.process_time()}), encoding="utf-8")

    from runner.cli import main as runner_main

    sys.argv = ["runner", *argv]
    try:
        runner_main()
    finally:
        dump()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=3000)
    ap.add_argument("--repeat", type=int, default=3, help="rounds (medians are printed)")
    ap.add_argument("--sim-address", default="127.171.0.1",
                    help="the simulator's first loopback address (another bench may run)")
    ap.add_argument("--sim-port", type=int, default=22171)
    ap.add_argument("--probe", type=Path, help=argparse.SUPPRESS)
    args, rest = ap.parse_known_args()
    if args.probe is not None:  # the timed run itself (this script, run by itself)
        probe(args.probe, rest[1:] if rest[:1] == ["--"] else rest)
        return
    if rest:
        ap.error(f"unrecognized arguments: {' '.join(rest)}")
    from bench.startup import cpu_of
    from runner.lab.sim.process import SimProcess

    cores = sorted(os.sched_getaffinity(0))
    sim_cpu, client_cpu = str(cores[0]), cores[-1]
    # bytecode cached as an installed package has it (this machine's environment turns it off)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(PEERS)
    work = Path(tempfile.mkdtemp(prefix="runner-bench-parts-"))
    sim = SimProcess(work / "sim", args.devices, cpus=sim_cpu, address=args.sim_address,
                     port=args.sim_port)
    sim.start()
    # this process and every command it starts on the other core (the simulator has its own)
    os.sched_setaffinity(0, {client_cpu})
    rows: dict[str, list[float]] = {"runner": [], "runner (timed)": [], "floor": [],
                                    "floor's start-up (its imports)": []}
    parts: list[dict[str, Any]] = []
    try:
        inv = sim.inventory
        for i in range(args.repeat):
            db = work / f"round{i}.db"
            run = ["--db", f"sqlite:///{db}", "run", "bench/jobs/show.yml", "-i", str(inv),
                   "--templates", "templates", "--processes", "1"]
            rows["runner"].append(cpu_of(["-m", "runner", *run], env, ROOT))
            db.unlink()
            found = work / f"parts{i}.json"
            rows["runner (timed)"].append(cpu_of(
                [__file__, "--probe", str(found), "--", *run], env, ROOT))
            parts.append(json.loads(found.read_text(encoding="utf-8")))
            rows["floor"].append(cpu_of(
                [str(PEERS / "peer_asyncssh.py"), str(inv), "show", "1000"], env, ROOT))
            rows["floor's start-up (its imports)"].append(
                cpu_of(["-c", FLOOR_IMPORTS], env, ROOT))
            print(f"round {i + 1}: runner {rows['runner'][-1]:.2f} s, timed "
                  f"{rows['runner (timed)'][-1]:.2f} s, floor {rows['floor'][-1]:.2f} s",
                  flush=True)
    finally:
        sim.stop()
        shutil.rmtree(work, ignore_errors=True)
    report(rows, parts, args.devices)


def report(rows: dict[str, list[float]], parts: list[dict[str, Any]], devices: int) -> None:
    def ms(seconds: float) -> str:
        return f"{seconds / devices * 1000:.3f}"

    med = {name: statistics.median(values) for name, values in rows.items()}
    extra = med["runner"] - med["floor"]
    print(f"\n{devices} devices, show job, one process each, medians of {len(parts)} rounds:")
    print("| | CPU s | ms a device |\n| --- | --- | --- |")
    for name in rows:
        print(f"| {name} | {med[name]:.2f} | {ms(med[name])} |")
    print(f"| runner - floor | {extra:.2f} | {ms(extra)} |")
    rounds = [r / f for r, f in zip(rows["runner"], rows["floor"], strict=True)]
    print(f"runner / floor CPU: {med['runner'] / med['floor']:.2f} "
          f"(rounds {', '.join(f'{r:.2f}' for r in rounds)})")
    print("\nrunner's parts (the timed run; thread CPU):")
    print("| part | ms a device | calls | share of runner - floor |\n"
          "| --- | --- | --- | --- |")
    named = 0.0
    startup = statistics.median(p["startup"] or 0.0 for p in parts)
    print(f"| {STARTUP} | {ms(startup)} ({startup:.2f} s) | - | {startup / extra:.0%} |")
    for label, _, _ in PARTS:
        spent = statistics.median(p["parts"][label] for p in parts)
        count = statistics.median(p["calls"][label] for p in parts)
        named += spent
        print(f"| {label} | {ms(spent)} | {count:.0f} | {spent / extra:.0%} |")
    end = statistics.median(p["end"] for p in parts)
    print(f"| {END} | {ms(end)} ({end:.2f} s) | - | {end / extra:.0%} |")
    floor = med["floor"] - med["floor's start-up (its imports)"]
    rest = med["runner (timed)"] - startup - named - end - floor
    print(f"| the rest, against the floor's devices (event loop, SSH work, timing) "
          f"| {ms(rest)} | - | {rest / extra:.0%} |")


if __name__ == "__main__":
    main()
