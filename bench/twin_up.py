"""Bench: how long `runner twin up` takes, for the practice lab and an N-router ring (issue 25).

Run as root, under the shared lab lock (it brings labs up):
  flock /work/lab.lock .venv/bin/python bench/twin_up.py [--routers 50] [--skip practice|ring]

For each production (a copy of the practice lab; a generated ring of N FRR routers, OSPF on
every link, as bench/lab_scale.py builds it): bring it up and wait for routing, back it up
with the shipped backup job, then time `twin up` from those backups (the twin's routers up,
their configs compared with the backups, OSPF/BGP converged and compared with
production's: twin up's own checks), a
rehearsal's reset (`twin sync --reset` after one router was changed by hand) and `twin
down`. Prints the figures; nothing here asserts on them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from lab_scale import ring_topology  # noqa: E402  (a sibling script, not a package)

PROD_SUBNET, TWIN_SUBNET = "172.20.91.0/24", "172.20.92.0/24"


def runner(workdir: Path, *args: str,
           ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNNER_")}
    proc = subprocess.run([sys.executable, "-m", "runner", *args], capture_output=True,
                          text=True, check=False, cwd=workdir, env=env)
    if proc.returncode not in ok:
        sys.exit(f"runner {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-3000:]}"
                 f"{proc.stderr[-3000:]}")
    return proc


def practice(workdir: Path) -> Path:
    """The practice lab as bench-twprod on PROD_SUBNET (its configs beside it)."""
    src = ROOT / "lab" / "practice.clab.yml"
    text = src.read_text(encoding="utf-8").replace("name: practice", "name: bench-twprod", 1)
    text = text.replace("172.20.20.", PROD_SUBNET.rsplit(".", 1)[0] + ".")
    shutil.copytree(src.parent / "practice", workdir / "practice")
    path = workdir / "bench-twprod.clab.yml"
    path.write_text(text, encoding="utf-8")
    return path


def ring(workdir: Path, routers: int) -> Path:
    """bench/lab_scale.py's ring, on PROD_SUBNET."""
    path = ring_topology(routers, workdir)
    path.write_text(path.read_text(encoding="utf-8").replace("172.20.60.0/24", PROD_SUBNET),
                    encoding="utf-8")
    return path


def measure(workdir: Path, topology: Path, label: str,
            targets: dict[str, list[str]] | None = None) -> list[str]:
    """Production up, backed up; the twin's up, reset and down timed."""
    name = yaml.safe_load(topology.read_text(encoding="utf-8"))["name"]
    lines = [f"{label}"]
    runner(workdir, "lab", "up", str(topology))
    try:
        runner(workdir, "lab", "wait", str(topology), "--timeout", "300")
        inventory = workdir / f"clab-{name}" / "inventory"
        backups = workdir / f"backups-{name}"
        job = workdir / f"backup-{name}.yml"
        data = yaml.safe_load((ROOT / "jobs" / "backup.yml").read_text(encoding="utf-8"))
        data.pop("schedule", None)
        if targets is not None:
            data["targets"] = targets
        data["steps"] = [{"backup": {"dir": str(backups), "volatile": ["^frr version .*$"]}}]
        job.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        runner(workdir, "run", str(job), "-i", str(inventory))
        started = time.monotonic()
        up = runner(workdir, "twin", "up", "--from-backups", str(backups), "-i", str(inventory),
                    "--name", "bench-twin", "--mgmt-subnet", TWIN_SUBNET, "--json", ok=(0, 1))
        up_s = time.monotonic() - started
        try:
            report = json.loads(up.stdout)
            nodes = len(report["nodes"])
            lines.append(f"  twin up ({nodes} routers, configs compared, routing converged: "
                         f"{report['converged']})  {up_s:7.2f} s")
            lines.append(f"  configs equal to backups  {len(report['configs_equal'])}/{nodes}")
            same = sum(bool(c["same"]) for c in report["production"].values())
            lines.append(f"  routing as production's (read over SSH, compared)  {same}/{nodes}")
            first = report["nodes"][0]
            runner(workdir, "lab", "exec", "--lab", "bench-twin", "--shell", first, "--",
                   "vtysh", "-c", "configure terminal", "-c", "interface lo", "-c",
                   "description bench-moved")
            started = time.monotonic()
            # as a rehearsal's reset does it: production's routing is not read
            runner(workdir, "twin", "sync", "bench-twin", "--reset", "--no-production",
                   "--json", ok=(0, 1))
            lines.append(f"  twin sync --reset (1 router moved)  "
                         f"{time.monotonic() - started:7.2f} s")
        finally:
            started = time.monotonic()
            runner(workdir, "twin", "down", "bench-twin")
            lines.append(f"  twin down  {time.monotonic() - started:7.2f} s")
    finally:
        runner(workdir, "lab", "down", str(topology), ok=(0, 1))
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--routers", type=int, default=50, help="routers in the ring")
    ap.add_argument("--skip", choices=["practice", "ring"], action="append", default=[])
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (the twin's routers are FRR in network namespaces)")
    out: list[str] = []
    with tempfile.TemporaryDirectory(prefix="runner-bench-twin-") as tmp:
        if "practice" not in args.skip:
            work = Path(tmp) / "practice"
            work.mkdir()
            out += measure(work, practice(work), "practice lab (4 FRR routers, 2 hosts)")
        if "ring" not in args.skip:
            work = Path(tmp) / "ring"
            work.mkdir()
            out += measure(work, ring(work, args.routers), f"{args.routers}-router ring (OSPF)",
                           {"hosts": [f"r{i}" for i in range(1, args.routers + 1)]})
    print("\n".join(re.sub(r"\s{2,}", "  ", line) for line in out))


if __name__ == "__main__":
    main()
