"""Bench: config backups at 100,000 devices (issue 28): one commit per run, in bounded
memory, an unchanged re-run no slower than the first.

    .venv/bin/python bench/backup_scale.py --repo 10000,30000,100000 [--baseline REV]
    .venv/bin/python bench/backup_scale.py --devices 10000 [--address 127.181.0.1]

--repo N: the backup repository alone, as a run feeds it (runner.job.backups.BackupSink:
configs of ~2.5 KB handed over one by one, then the run's commit), each phase in a fresh
process: the first backup of N devices, an unchanged re-run, a re-run where 1 % changed;
wall time, CPU (the process and its git children) and peak RSS of each, and what git's
repository holds (loose objects, packs, size). --baseline REV runs the same phases with
another revision's runner package (`git archive`; it had no sink: its BackupRepo.commit
is given every config at once, as its run held them).

--devices N: real backup runs (`runner run` of a backup job as a user types it) against
`runner lab sim` with N devices: the first and an unchanged re-run, wall time, the run's
peak RSS (its process tree's largest, from wait4) and the commits made.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def config_of(i: int, version: int = 1) -> str:
    return (f"hostname edge{i:06d}\n!\n" + "".join(
        f"interface GigabitEthernet0/{n}\n description link {n} of site{i % 10}\n"
        f" ip address 10.{n}.{i // 256 % 256}.{i % 256} 255.255.255.0\n!\n"
        for n in range(24)) + f"ntp server 192.0.2.{version}\nend\n")


def phase(kind: str, n: int, repo_dir: Path, streamed: bool) -> dict[str, Any]:
    """One run's backups, in this process (started for it): its figures."""
    sys.path.insert(0, os.environ.get("BENCH_RUNNER_ROOT", str(ROOT)))
    from runner.job.backups import BackupRepo

    def version(i: int) -> int:
        return 2 if kind in ("one-percent", "unchanged again") and i % 100 == 0 else 1

    repo = BackupRepo(repo_dir)
    began, cpu = time.monotonic(), time.process_time()
    if streamed:
        from runner.job.backups import BackupSink

        sink = BackupSink(repo)
        for i in range(n):
            sink.add(f"edge{i:06d}", config_of(i, version(i)))
        try:
            sha, changed = sink.commit(f"bench {kind}")
        finally:
            sink.close()
    else:
        sha, changed = repo.commit({f"edge{i:06d}": config_of(i, version(i))
                                    for i in range(n)}, f"bench {kind}")
    wall = time.monotonic() - began
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"wall": wall, "cpu": time.process_time() - cpu + children.ru_utime
            + children.ru_stime, "rss_mib": resource.getrusage(
                resource.RUSAGE_SELF).ru_maxrss / 1024, "changed": len(changed),
            "commit": sha is not None}


def repo_bench(sizes: list[int], baseline: str | None, work: Path) -> None:
    trees: list[tuple[str, Path, bool]] = [("this tree", ROOT, True)]
    if baseline:
        where = work / "baseline"
        where.mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", baseline, "runner"],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
        trees.append((f"baseline {baseline}", where, False))
    print("| devices | code | phase | wall | CPU | peak RSS | changed | commits | "
          "repository |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for n in sizes:
        for label, tree, streamed in trees:
            repo_dir = work / f"repo-{n}-{'new' if streamed else 'old'}"
            for kind in ("first", "unchanged", "one-percent", "unchanged again"):
                out = subprocess.run(
                    [sys.executable, __file__, "--phase", kind, "--n", str(n), "--repo-dir",
                     str(repo_dir), *(["--streamed"] if streamed else [])],
                    capture_output=True, text=True, check=True,
                    env={**os.environ, "BENCH_RUNNER_ROOT": str(tree)})
                got = json.loads(out.stdout.strip().splitlines()[-1])
                commits = len(subprocess.run(
                    ["git", "-C", str(repo_dir), "log", "--format=%H"], capture_output=True,
                    text=True, check=True).stdout.split())
                print(f"| {n:,} | {label} | {kind} | {got['wall']:.1f} s | {got['cpu']:.1f} s "
                      f"| {got['rss_mib']:.0f} MiB | {got['changed']:,} | {commits} | "
                      f"{holds(repo_dir)} |", flush=True)
            shutil.rmtree(repo_dir, ignore_errors=True)


def holds(repo_dir: Path) -> str:
    counted = dict(line.split(": ", 1) for line in subprocess.run(
        ["git", "-C", str(repo_dir), "count-objects", "-v"], capture_output=True, text=True,
        check=True).stdout.splitlines())
    size = int(counted["size"]) + int(counted["size-pack"])
    return (f"{counted['count']} loose, {counted['packs']} pack(s), "
            f"{size / 1024:.0f} MiB")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def devices_bench(n: int, address: str, work: Path) -> None:
    sys.path.insert(0, str(ROOT))
    import yaml

    from runner.lab.sim.process import SimProcess

    sim = SimProcess(work / "sim", n, address=address, port=free_port())
    began = time.monotonic()
    sim.start(timeout=1800)
    print(f"simulator of {n:,} devices ready in {time.monotonic() - began:.0f} s")
    try:
        repo = work / "backups"
        job = work / "backup.yml"
        job.write_text(yaml.safe_dump({"name": "backup", "driver": "asyncssh",
                                       "steps": [{"backup": {"dir": str(repo)}}]}),
                       encoding="utf-8")
        env = {**os.environ, "RUNNER_LOCK_DIR": str(work / "locks")}
        argv = [sys.executable, "-m", "runner", "--db", f"sqlite:///{work / 'runner.db'}",
                "run", str(job), "-i", str(sim.inventory)]
        print("| run | wall | peak RSS (largest process) | exit | commits | files |")
        print("| --- | --- | --- | --- | --- | --- |")
        for label in ("first", "unchanged re-run"):
            began = time.monotonic()
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                    stderr=open(work / "stderr", "wb"), env=env, cwd=work)  # noqa: SIM115
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.monotonic() - began
            commits = len(subprocess.run(["git", "-C", str(repo), "log", "--format=%H"],
                                         capture_output=True, text=True,
                                         check=False).stdout.split())
            print(f"| {label} | {wall:.0f} s | {usage.ru_maxrss / 1024:.0f} MiB | "
                  f"{os.waitstatus_to_exitcode(status)} | {commits} | "
                  f"{len(list(repo.glob('*.cfg'))):,} |", flush=True)
            proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        sim.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repo", help="sizes of the repository bench, comma-separated")
    ap.add_argument("--baseline", help="a revision to compare with (--repo)")
    ap.add_argument("--devices", type=int, help="real backup runs against the simulator")
    ap.add_argument("--address", default="127.181.0.1")
    ap.add_argument("--phase", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--repo-dir", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--streamed", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        print(json.dumps(phase(args.phase, args.n, args.repo_dir, args.streamed)))
        return
    work = Path(tempfile.mkdtemp(prefix="backup-scale-"))
    try:
        if args.repo:
            repo_bench([int(x) for x in args.repo.split(",")], args.baseline, work)
        if args.devices:
            devices_bench(args.devices, args.address, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
