"""Bench: one `runner run` of the show job over 100,000 simulated devices (issue 28, point 1).

    .venv/bin/python bench/run_scale.py [--devices 100000] [--sim-address 127.190.0.1]
                                        [--repeat 1] [-- extra runner run options]

Starts `runner lab sim --devices N` (one command; it spreads over processes past the
open-files limit), then runs bench/jobs/show.yml (show version, show running-config) on
every device with `runner run --json`, as a user types it, and prints: wall time, CPU of
the client's process tree, the client's own peak RSS (VmHWM of the `runner run` process)
and the peak PSS of its tree (engine processes included; the simulator is not), and
whether every record is right: one per inventory host, each ok, the --json document
parsed whole. Targets from the issue are printed beside the figures (wall <= 6 min, client
peak RSS <= 500 MiB); the script does not fail on them. The simulator is always stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

with warnings.catch_warnings():  # cryptography's notice about DSA, at import: not ours
    warnings.simplefilter("ignore")
    import asyncssh  # noqa: F401
from bench.fleet import Peak  # noqa: E402
from bench.sim_scale import free_port, read_yaml  # noqa: E402
from runner.lab.sim.process import SimProcess  # noqa: E402

BIN = Path(sys.executable).parent
WALL_TARGET_S = 360
RSS_TARGET_MIB = 500


def run_once(inventory: Path, work: Path, n: int, extra: list[str],
             env: dict[str, str]) -> dict[str, Any]:
    """One `runner run --json`: wall, CPU, memory and the records checked."""
    db = work / f"results-{n}.db"
    out_path = work / f"run-{n}.json"
    cmd = [str(BIN / "runner"), "--db", f"sqlite:///{db}", "run", "bench/jobs/show.yml",
           "-i", str(inventory), "--json", *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    with out_path.open("wb") as out, (work / f"run-{n}.stderr").open("wb") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=ROOT, env=env)
        peak = Peak(proc.pid, [])
        peak.start()
        proc.wait()
    wall = time.monotonic() - started
    peak.done.set()
    peak.join()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the waited-for tree, whole
    cpu = usage.ru_utime + usage.ru_stime - before.ru_utime - before.ru_stime
    return {"exit": proc.returncode, "wall": wall, "cpu": cpu, "rss_mib": peak.rss,
            "pss_mib": peak.peak, "out": out_path,
            "stderr": (work / f"run-{n}.stderr").read_text(errors="replace")[-800:]}


def check(out_path: Path, hosts: list[str]) -> tuple[int, int, list[str]]:
    """(records ok, records, problems) of the --json document."""
    problems: list[str] = []
    try:
        document = json.loads(out_path.read_text(encoding="utf-8"))
    except ValueError as exc:
        return 0, 0, [f"--json is not one JSON document: {exc}"]
    devices = document.get("devices", [])
    seen = [d["host"] for d in devices]
    if sorted(seen) != sorted(hosts):
        missing = sorted(set(hosts) - set(seen))
        doubled = len(seen) - len(set(seen))
        problems.append(f"records vs inventory: {len(seen)} for {len(hosts)} hosts, "
                        f"{len(missing)} missing (e.g. {missing[:3]}), {doubled} doubled")
    ok = sum(1 for d in devices if d.get("status") == "ok")
    bad = [d for d in devices if d.get("status") != "ok"]
    if bad:
        kinds: dict[str, int] = {}
        for d in bad:
            key = f"{d.get('status')} {d.get('error_class')}"
            kinds[key] = kinds.get(key, 0) + 1
        problems.append(f"not ok: {kinds}")
    if document.get("status") != "ok":
        problems.append(f"run status {document.get('status')!r}")
    return ok, len(devices), problems


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=100_000)
    ap.add_argument("--sim-address", default="127.190.0.1")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("extra", nargs="*", help="more `runner run` options (after --)")
    args = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    work = Path(tempfile.mkdtemp(prefix="runner-bench-run-scale-"))
    sim = SimProcess(work / "sim", args.devices, address=args.sim_address, port=free_port())
    t0 = time.monotonic()
    state = sim.start(timeout=1800)
    try:
        print(f"simulator: {state['devices']} devices in {len(state['processes'])} "
              f"process(es), ready {time.monotonic() - t0:.1f} s after exec")
        hosts = list(read_yaml(sim.inventory / "hosts.yaml"))
        print("| run | exit | wall | CPU (client tree) | client peak RSS | tree peak PSS | "
              "records ok | problems |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for n in range(1, args.repeat + 1):
            row = run_once(sim.inventory, work, n, args.extra, env)
            ok, records, problems = check(row["out"], hosts)
            print(f"| {n} | {row['exit']} | {row['wall']:.1f} s | {row['cpu']:.1f} s | "
                  f"{row['rss_mib']:.0f} MiB | {row['pss_mib']:.0f} MiB | {ok}/{records} | "
                  f"{'; '.join(problems) or '-'} |", flush=True)
            if row["exit"] not in (0,):
                print(f"stderr: {row['stderr']}")
            print(f"targets: wall <= {WALL_TARGET_S} s "
                  f"({'met' if row['wall'] <= WALL_TARGET_S else 'NOT met'}), client peak "
                  f"RSS <= {RSS_TARGET_MIB} MiB "
                  f"({'met' if row['rss_mib'] <= RSS_TARGET_MIB else 'NOT met'})")
            row["out"].unlink()
    finally:
        sim.stop()
        shutil.rmtree(work, ignore_errors=True)  # the inventory holds the password


if __name__ == "__main__":
    main()
