"""What a golden-config check costs on a fleet: a compliance run (running config read, the
intended config rendered and compared per feature with hier_config, results and compliance
state stored) against a plain `show running-config` run of the same devices, on N simulated
IOS-style devices; and a check against backups (no session at all). Prints wall time,
devices per second and the ratios; tests never assert on time.

    .venv/bin/python bench/compliance.py [--devices 1000] [--repeat 3] [--driver asyncssh]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner.lab.sim.process import SimProcess  # noqa: E402

INTENDED = """hostname {{ host.name }}
ntp server 192.0.2.123
logging host 192.0.2.50
snmp-server community {{ vars.community }} RO
{% for i in range(1, 7) %}
interface GigabitEthernet0/{{ i }}
 description link {{ i }}
{% endfor %}
router ospf 1
 network 10.0.0.0 0.255.255.255 area 0
"""
FEATURES = [{"name": "ntp", "match": ["ntp server"]},
            {"name": "logging", "match": ["logging host"]},
            {"name": "snmp", "match": ["snmp-server"]},
            {"name": "links", "match": ["interface GigabitEthernet0/"],
             "ignore": ["^(ip address|duplex|speed|shutdown)"]},
            {"name": "ospf", "match": ["router ospf"], "ignore": ["^router-id "]}]


def job(path: Path, name: str, driver: str, steps: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump({"name": name, "targets": {"groups": ["sim"]},
                                    "driver": driver, "concurrency": 500,
                                    "vars": {"community": "s1mC0mmunity"},
                                    "timeouts": {"connect": 60, "command": 120,
                                                 "device": 600},
                                    "steps": steps}, sort_keys=False), encoding="utf-8")
    return path


def timed(work: Path, inventory: Path, job_file: Path) -> tuple[float, dict[str, Any]]:
    began = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "runner", "--db",
                           f"sqlite:///{work / 'bench.db'}", "run", str(job_file), "-i",
                           str(inventory), "--templates", str(work / "templates"), "--json",
                           "--engine", "local"],
                          capture_output=True, text=True, check=False, cwd=work)
    took = time.monotonic() - began
    if proc.returncode not in (0, 3):
        raise SystemExit(f"{job_file.name} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return took, json.loads(proc.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--driver", default="asyncssh")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="runner-bench-compliance-") as tmp:
        work = Path(tmp)
        (work / "templates").mkdir()
        (work / "templates" / "golden.j2").write_text(INTENDED, encoding="utf-8")
        with SimProcess(work / "sim", args.devices, address="127.125.0.1",
                        port=24222) as sim:
            inventory = sim.inventory
            groups = yaml.safe_load((inventory / "hosts.yaml").read_text(encoding="utf-8"))
            for host in groups.values():
                host["groups"] = ["sim"]
            (inventory / "hosts.yaml").write_text(yaml.safe_dump(groups), encoding="utf-8")
            (inventory / "groups.yaml").write_text("sim: {}\n", encoding="utf-8")
            show = job(work / "show.yml", "show", args.driver,
                       [{"command": "show running-config"}])
            check = job(work / "golden.yml", "golden", args.driver, [{"compliance": {
                "intended": "golden.j2", "features": FEATURES}}])
            backup = job(work / "backup.yml", "backup", args.driver,
                         [{"backup": {"dir": str(work / "backups")}}])
            timed(work, inventory, backup)
            offline = job(work / "offline.yml", "offline", args.driver, [{"compliance": {
                "intended": "golden.j2", "actual": "backup",
                "backups": str(work / "backups"), "features": FEATURES}}])
            figures: dict[str, list[float]] = {"show": [], "golden": [], "offline": []}
            summary: dict[str, Any] = {}
            for _ in range(args.repeat):
                for name, path in (("show", show), ("golden", check), ("offline", offline)):
                    took, result = timed(work, inventory, path)
                    figures[name].append(took)
                    summary[name] = result["summary"]
    n = args.devices
    base = statistics.median(figures["show"])
    print(f"{n} simulated devices, driver {args.driver}, median of {args.repeat} runs "
          "(whole `runner run`, start-up and storing included)")
    print(f"{'run':<44} {'wall s':>8} {'devices/s':>10} {'vs show':>8}")
    for name, label in (("show", "show running-config (plain command)"),
                        ("golden", "compliance, actual: running (5 features)"),
                        ("offline", "compliance, actual: backup (no session)")):
        median = statistics.median(figures[name])
        print(f"{label:<44} {median:>8.1f} {n / median:>10.1f} {median / base:>8.2f}")
    counts = {k: {s: c for s, c in v.items() if c} for k, v in summary.items()}
    print(f"outcomes of the last round: {counts}")


if __name__ == "__main__":
    main()
