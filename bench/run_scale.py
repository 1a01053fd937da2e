"""Bench: one `runner run` over 100,000 simulated devices, of the show job or a backup job
(issue 28, points 1 and 3).

    .venv/bin/python bench/run_scale.py [--devices 100000] [--sim-address 127.190.0.1]
                                        [--job show|backup] [--repeat 1] [--profile DIR]
                                        [-- extra runner run options]

Starts `runner lab sim --devices N` (one command; it spreads over processes past the
open-files limit), then runs bench/jobs/show.yml (show version, show running-config) on
every device with `runner run --json`, as a user types it, and prints: wall time, CPU of
the client's process tree, the client's own peak RSS (VmHWM of the `runner run` process)
and the peak PSS of its tree (engine processes included; the simulator is not), and
whether every record is right: one per inventory host, each ok, the --json document
parsed whole. Targets from the issue are printed beside the figures (wall <= 6 min, client
peak RSS <= 500 MiB); the script does not fail on them. The simulator is always stopped.

--job backup runs bench/jobs/backup.yml (the `backup:` step: each device's running
configuration into a git repository) instead, twice per repeat: first into an empty
repository, then again with nothing changed. Each run also prints the commits it added
(1, then 0: runner commits nothing when no config changed), the files in HEAD's tree and
in the work tree, the simulator's CPU over the run, the time from the last device's record
to the run's end (the commit and the work tree) and the machine's load; every record must
be right (the first run's `changed`, the re-run's `ok`). The target printed beside: the
re-run's wall <= the first's, with the same ratio on CPU (client + simulator), which other
work on the machine moves less.
--profile DIR runs the client under cProfile (DIR/<run>.prof; slower, figures not
comparable) and keeps git's own timings (GIT_TRACE2_PERF, DIR/<run>.git-perf).
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
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

with warnings.catch_warnings():  # cryptography's notice about DSA, at import: not ours
    warnings.simplefilter("ignore")
    import asyncssh  # noqa: F401
from bench.fleet import Peak, cpu_s  # noqa: E402
from bench.sim_scale import free_port, read_yaml  # noqa: E402
from runner.lab.sim.process import SimProcess  # noqa: E402

BIN = Path(sys.executable).parent
WALL_TARGET_S = 360
RSS_TARGET_MIB = 500


def run_once(job: Path, inventory: Path, work: Path, label: str, extra: list[str],
             env: dict[str, str], profile: Path | None = None,
             sim_pids: tuple[int, ...] = ()) -> dict[str, Any]:
    """One `runner run --json` (in `work`): wall, CPU (the client's and the simulator's),
    memory, the machine's load and where its output is."""
    sim_before = cpu_s(list(sim_pids))
    db = work / "results.db"
    out_path = work / f"run-{label}.json"
    client = [str(BIN / "runner")]
    if profile is not None:
        client = [sys.executable, "-m", "cProfile", "-o", str(profile / f"{label}.prof"),
                  str(BIN / "runner")]
        env = {**env, "GIT_TRACE2_PERF": str(profile / f"{label}.git-perf")}
    cmd = [*client, "--db", f"sqlite:///{db}", "run", str(job), "-i", str(inventory),
           "--json", *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    with out_path.open("wb") as out, (work / f"run-{label}.stderr").open("wb") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=work, env=env)
        peak = Peak(proc.pid, [])
        peak.start()
        proc.wait()
    wall = time.monotonic() - started
    peak.done.set()
    peak.join()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the waited-for tree, whole
    cpu = usage.ru_utime + usage.ru_stime - before.ru_utime - before.ru_stime
    return {"exit": proc.returncode, "wall": wall, "cpu": cpu, "rss_mib": peak.rss,
            "sim_cpu": cpu_s(list(sim_pids)) - sim_before, "load": os.getloadavg()[1],
            "pss_mib": peak.peak, "out": out_path,
            "stderr": (work / f"run-{label}.stderr").read_text(errors="replace")[-800:]}


def check(out_path: Path, hosts: list[str],
          expected: str = "ok") -> tuple[int, int, list[str]]:
    """(records right, records, problems) of the --json document: one record per host, each
    of the `expected` status."""
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
    ok = sum(1 for d in devices if d.get("status") == expected)
    bad = [d for d in devices if d.get("status") != expected]
    if bad:
        kinds: dict[str, int] = {}
        for d in bad:
            key = f"{d.get('status')} {d.get('error_class')}"
            kinds[key] = kinds.get(key, 0) + 1
        problems.append(f"not {expected}: {kinds}")
    if document.get("status") != "ok":
        problems.append(f"run status {document.get('status')!r}")
    return ok, len(devices), problems


def end_s(document: dict[str, Any]) -> float | None:
    """Seconds from the last device's end to the run's (the commit, the work tree)."""
    ends = [d.get("finished") for d in document.get("devices", []) if d.get("finished")]
    if not ends or not document.get("finished"):
        return None
    return (datetime.fromisoformat(document["finished"])
            - datetime.fromisoformat(max(ends))).total_seconds()


def git_out(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          check=False).stdout


def repository(repo: Path) -> tuple[int, int, int]:
    """(commits, files in HEAD's tree, backup files in the work tree) of a backup
    repository."""
    commits = len(git_out(repo, "rev-list", "--all").split())
    tree = len(git_out(repo, "ls-tree", "--name-only", "-z", "HEAD").split("\0")) - 1 \
        if commits else 0
    return commits, max(tree, 0), sum(1 for _ in repo.glob("*.cfg"))


def show_runs(args: argparse.Namespace, inventory: Path, hosts: list[str], work: Path,
              env: dict[str, str]) -> None:
    print("| run | exit | wall | CPU (client tree) | client peak RSS | tree peak PSS | "
          "records ok | problems |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for n in range(1, args.repeat + 1):
        row = run_once(ROOT / "bench/jobs/show.yml", inventory, work, str(n), args.extra,
                       env, args.profile)
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


def backup_runs(args: argparse.Namespace, inventory: Path, hosts: list[str], work: Path,
                env: dict[str, str], sim_pids: tuple[int, ...]) -> None:
    print("| run | exit | wall | client CPU (tree) | simulator CPU | client peak RSS | "
          "tree peak PSS | last record to run's end | commits added | files (HEAD / work "
          "tree) | records right | load (5 min) | problems |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for n in range(1, args.repeat + 1):
        where = work / f"backup-{n}"  # the job's `dir: backups` is under the run's cwd
        where.mkdir()
        # the results database made beforehand: the first run pays no schema creation
        subprocess.run([str(BIN / "runner"), "--db", f"sqlite:///{where / 'results.db'}",
                        "db", "upgrade"], check=True, capture_output=True, env=env)
        walls: dict[str, float] = {}
        cpus: dict[str, float] = {}
        for label, expected in (("first", "changed"), ("unchanged", "ok")):
            commits_before = repository(where / "backups")[0]
            row = run_once(ROOT / "bench/jobs/backup.yml", inventory, where,
                           f"{n}-{label}", args.extra, env, args.profile, sim_pids)
            right, records, problems = check(row["out"], hosts, expected)
            try:
                end = end_s(json.loads(row["out"].read_text(encoding="utf-8")))
            except ValueError:
                end = None
            commits, tree, files = repository(where / "backups")
            want = 1 if label == "first" else 0
            if commits - commits_before != want:
                problems.append(f"{commits - commits_before} commit(s) added, not {want}")
            if tree != len(hosts) or files != len(hosts):
                problems.append(f"{tree} files in HEAD, {files} in the work tree, "
                                f"not {len(hosts)}")
            walls[label] = row["wall"]
            cpus[label] = row["cpu"] + row["sim_cpu"]
            print(f"| {n} {label} | {row['exit']} | {row['wall']:.1f} s | {row['cpu']:.1f} s "
                  f"| {row['sim_cpu']:.1f} s | {row['rss_mib']:.0f} MiB | "
                  f"{row['pss_mib']:.0f} MiB | "
                  f"{'-' if end is None else f'{end:.1f} s'} | {commits - commits_before} | "
                  f"{tree:,} / {files:,} | {right}/{records} | {row['load']:.1f} | "
                  f"{'; '.join(problems) or '-'} |", flush=True)
            if row["exit"] not in (0,):
                print(f"stderr: {row['stderr']}")
            row["out"].unlink()
        ratio = walls["unchanged"] / walls["first"]
        print(f"targets: unchanged re-run wall <= the first's: {walls['unchanged']:.1f} s / "
              f"{walls['first']:.1f} s = {ratio:.2f} ({'met' if ratio <= 1 else 'NOT met'}); "
              f"CPU (client + simulator), which the machine's load moves less: "
              f"{cpus['unchanged']:.1f} s / {cpus['first']:.1f} s = "
              f"{cpus['unchanged'] / cpus['first']:.2f}", flush=True)
        shutil.rmtree(where / "backups", ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=100_000)
    ap.add_argument("--sim-address", default="127.190.0.1")
    ap.add_argument("--job", choices=("show", "backup"), default="show",
                    help="the show job, or a backup job run twice (first, unchanged)")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--profile", type=Path,
                    help="cProfile the client and keep git's timings into this directory")
    ap.add_argument("extra", nargs="*", help="more `runner run` options (after --)")
    args = ap.parse_args()
    if args.profile is not None:
        args.profile = args.profile.resolve()
        args.profile.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    work = Path(tempfile.mkdtemp(prefix="runner-bench-run-scale-"))
    sim = SimProcess(work / "sim", args.devices, address=args.sim_address, port=free_port())
    t0 = time.monotonic()
    state = sim.start(timeout=1800)
    try:
        print(f"simulator: {state['devices']} devices in {len(state['processes'])} "
              f"process(es), ready {time.monotonic() - t0:.1f} s after exec")
        hosts = list(read_yaml(sim.inventory / "hosts.yaml"))
        if args.job == "backup":
            pids = tuple(int(p["pid"]) for p in state["processes"])
            backup_runs(args, sim.inventory, hosts, work, env, pids)
        else:
            show_runs(args, sim.inventory, hosts, work, env)
    finally:
        sim.stop()
        shutil.rmtree(work, ignore_errors=True)  # the inventory holds the password


if __name__ == "__main__":
    main()
