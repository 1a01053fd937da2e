"""Bench: what loading an inventory costs `runner run` before any device (issue 28, point 1).

    .venv/bin/python bench/inventory_load.py [--hosts 100000] [--repo PATH]

Writes an inventory shaped as `runner lab sim` writes it (hosts with hostname, port and one
group; a group; defaults with credentials and three drivers' connection options), then in
one fresh process per measure loads it as `runner run` does (runner.job.run.prepare with
bench/jobs/show.yml) and prints: the CPU of prepare(), the process's peak RSS (VmHWM) and
the RSS it keeps afterwards, what tracemalloc counts (the loaded YAML's peak and live size,
prepare's live size) and the time of one full garbage collection over what was loaded,
before and after gc.freeze() (what `runner run` does before its engines fork); then the
same prepare() with a directory for the kept form of the hosts file, as `runner run` gives
it: once to write it, once more to read it (runner.inventory.kept). --repo: the runner code
to measure (another worktree, e.g. a revision before a change; default: this one; a
revision without kept forms is measured without them).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

MEASURE = r"""
import gc, json, sys, time, tracemalloc
from pathlib import Path
sys.path.insert(0, sys.argv[1])
try:
    from runner.job.prepare import prepare
except ImportError:  # a revision from before runner/job/prepare.py
    from runner.job.run import prepare
try:  # the collector's thresholds `runner run` sets before it loads anything
    from runner.job.commands import RUN_GC_THRESHOLD
    gc.set_threshold(*RUN_GC_THRESHOLD)
except ImportError:
    pass
from runner.source.yamlsrc import load_yaml

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024

inventory, root, traced = Path(sys.argv[2]), Path(sys.argv[1]), sys.argv[3] == "1"
kept = {"kept": Path(sys.argv[4])} if len(sys.argv) > 4 else {}
out = {}
if traced:
    tracemalloc.start()
    data = load_yaml(inventory / "hosts.yaml")
    out["yaml_live_mib"], out["yaml_peak_mib"] = (
        v / 2**20 for v in tracemalloc.get_traced_memory())
    del data
    tracemalloc.reset_peak()
cpu = time.process_time()
prep = prepare(root / "bench/jobs/show.yml", inventory, root / "templates", **kept)
if not traced:  # tracemalloc slows what it traces
    out["prepare_cpu_s"] = time.process_time() - cpu
if traced:
    out["prepare_live_mib"] = tracemalloc.get_traced_memory()[0] / 2**20
else:
    out["peak_rss_mib"], out["kept_rss_mib"] = status("VmHWM"), status("VmRSS")
    cpu = time.process_time()
    gc.collect()
    out["full_gc_s"], out["gc_objects"] = time.process_time() - cpu, len(gc.get_objects())
    gc.freeze()
    cpu = time.process_time()
    gc.collect()
    out["full_gc_frozen_s"] = time.process_time() - cpu
out["hosts"] = len(prep.hosts)
print(json.dumps(out))
"""


def write_inventory(directory: Path, hosts: int) -> None:
    """hosts.yaml, groups.yaml and defaults.yaml as `runner lab sim` writes them."""
    known = str(directory / "known_hosts")
    entries = {f"sim{i:06d}": {"hostname": f"127.190.{i // 250 % 250}.{i % 250 + 1}",
                               "port": 20000 + i % 20000, "groups": ["sim"]}
               for i in range(hosts)}
    defaults = {"username": "admin", "password": "bench", "platform": "cisco_ios",
                "connection_options": {
                    "netmiko": {"extras": {"ssh_strict": True, "system_host_keys": False,
                                           "alt_host_keys": True, "alt_key_file": known}},
                    "scrapli": {"extras": {"known_hosts_path": known,
                                           "enable_strict_key": True}},
                    "asyncssh": {"extras": {"known_hosts": known}}}}
    for name, data in (("hosts", entries), ("groups", {"sim": {"data": {"lab": "sim"}}}),
                       ("defaults", defaults)):
        (directory / f"{name}.yaml").write_text(
            yaml.dump(data, Dumper=_DUMPER, sort_keys=False), encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", type=int, default=100_000)
    ap.add_argument("--repo", type=Path, default=ROOT)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="runner-bench-inventory-") as tmp:
        write_inventory(Path(tmp), args.hosts)
        figures: dict[str, float] = {}
        for traced in ("0", "1"):  # tracemalloc's own cost stays out of the RSS figures
            figures.update(measure(args.repo, tmp, traced))
        kept_dir = str(Path(tmp) / "kept")
        if "kept" in (args.repo / "runner/job/prepare.py").read_text(encoding="utf-8"):
            for run in ("first", "again"):  # written by the first, read by the next
                for key, value in measure(args.repo, tmp, "0", kept_dir).items():
                    figures[f"{run}_{key}"] = value
    print(f"{args.hosts} hosts: prepare {figures['prepare_cpu_s']:.1f} s CPU; "
          f"peak RSS {figures['peak_rss_mib']:.0f} MiB, kept {figures['kept_rss_mib']:.0f} "
          f"MiB; tracemalloc: hosts.yaml loaded {figures['yaml_live_mib']:.0f} MiB (peak "
          f"{figures['yaml_peak_mib']:.0f} MiB), after prepare "
          f"{figures['prepare_live_mib']:.0f} MiB live; a full collection "
          f"{figures['full_gc_s']:.3f} s over {figures['gc_objects']:.0f} objects, "
          f"{figures['full_gc_frozen_s']:.3f} s after gc.freeze()")
    if "again_prepare_cpu_s" in figures:
        print(f"kept form: the first run (YAML, then kept) {figures['first_prepare_cpu_s']:.2f} "
              f"s, the next (kept) {figures['again_prepare_cpu_s']:.2f} s CPU "
              f"({figures['prepare_cpu_s'] / figures['again_prepare_cpu_s']:.1f}x less than "
              f"the YAML's), peak RSS {figures['again_peak_rss_mib']:.0f} MiB")


def measure(repo: Path, inventory: str, traced: str, *kept: str) -> dict[str, float]:
    """MEASURE's figures, from a fresh process."""
    done = subprocess.run([sys.executable, "-c", MEASURE, str(repo.resolve()), inventory,
                           traced, *kept], capture_output=True, text=True, check=False)
    if done.returncode:
        sys.exit(f"the measure failed ({done.returncode}): {done.stderr[-3000:]}")
    figures: dict[str, float] = json.loads(done.stdout)
    return figures


if __name__ == "__main__":
    main()
