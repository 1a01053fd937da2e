"""Bench: bring up a generated N-router FRR ring, print time to up, memory per router, teardown.

Run as root:  .venv/bin/python bench/lab_scale.py [--routers 50] [--converge]
Targets (issue 2): 50 routers up in <= 15 s, <= 40 MiB per router.
Memory is PSS (proportional set size): shared pages are split among the processes that map
them, so the sum over a lab's processes is what the lab really costs the machine.
containerlab, the peer, needs a Docker engine and images, which this machine cannot run, so
only runner's figures are measured here.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_UP_S = 15.0
TARGET_MIB_PER_ROUTER = 40.0


def ring_topology(n: int, workdir: Path) -> Path:
    nodes, links = [], []
    for i in range(1, n + 1):
        conf = workdir / f"r{i}.conf"
        nxt, prv = i % n + 1, (i - 2) % n + 1
        lines = [f"hostname r{i}", "interface lo", f" ip address 10.255.{i // 250}.{i % 250}/32",
                 " ip ospf area 0", "exit"]
        # link k joins r<k>:eth1 to r<k+1>:eth2 as 10.(100 + k/200).(k%200).0/31
        for iface, link, host in (("eth1", i, 0), ("eth2", prv, 1)):
            if n == 2 and iface == "eth2":
                continue
            lines += [f"interface {iface}",
                      f" ip address 10.{100 + link // 200}.{link % 200}.{host}/31",
                      " ip ospf area 0", " ip ospf network point-to-point", "exit"]
        lines += ["router ospf", f" ospf router-id 10.255.{i // 250}.{i % 250}", "exit"]
        conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
        nodes.append(f"    r{i}: {{startup-config: r{i}.conf}}")
        links.append(f'    - endpoints: ["r{i}:eth1", "r{nxt}:eth2"]')
    path = workdir / f"ring{n}.clab.yml"
    path.write_text(
        f"name: bench-ring{n}\nmgmt: {{ipv4-subnet: 172.20.60.0/24}}\ntopology:\n"
        "  defaults: {kind: frr, extras: {frr: {daemons: [ospfd, bgpd]}}}\n  nodes:\n"
        + "\n".join(nodes) + "\n  links:\n" + "\n".join(links) + "\n", encoding="utf-8")
    return path


def runner(*args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "runner", *args], capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"runner {' '.join(args)} failed:\n{proc.stderr}")
    return proc


def pss_kib(pid: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--routers", type=int, default=50)
    ap.add_argument("--converge", action="store_true", help="also time OSPF convergence")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="runner-bench-") as tmp:
        topo = ring_topology(args.routers, Path(tmp))
        t0 = time.monotonic()
        try:
            phases = runner("-vv", "lab", "up", str(topo)).stderr
            up_s = time.monotonic() - t0
            st = json.loads(runner("lab", "status", "--json", str(topo)).stdout)[0]
            healthy = sum(1 for n in st["nodes"] if n["running"] and n["ssh"]
                          and all(n["daemons"].values()))
            pids = []
            for i in range(1, args.routers + 1):
                netns = f"clab-bench-ring{args.routers}-r{i}"
                pids += subprocess.run(["ip", "netns", "pids", netns], capture_output=True,
                                       text=True, check=False).stdout.split()
            total_mib = sum(pss_kib(p) for p in pids) / 1024
            converge_s = None
            if args.converge:
                t1 = time.monotonic()
                runner("lab", "wait", str(topo), "--timeout", "300")
                converge_s = time.monotonic() - t1
        finally:
            t2 = time.monotonic()
            runner("lab", "down", str(topo))
            down_s = time.monotonic() - t2
    per_router = total_mib / args.routers
    print(f"routers                 {args.routers} ({healthy} healthy: daemons + sshd up)")
    print(f"lab up                  {up_s:6.2f} s   target <= {TARGET_UP_S:.0f} s   "
          f"ratio {up_s / TARGET_UP_S:.2f}")
    for line in phases.splitlines():
        if " took " in line:
            print(f"  phase {line.split(': ', 2)[-1]}")
    print(f"memory (PSS, all procs) {total_mib:6.1f} MiB over {len(pids)} processes")
    print(f"memory per router       {per_router:6.1f} MiB  target <= {TARGET_MIB_PER_ROUTER:.0f} "
          f"MiB  ratio {per_router / TARGET_MIB_PER_ROUTER:.2f}")
    if converge_s is not None:
        print(f"OSPF converged after up {converge_s:6.2f} s")
    print(f"lab down                {down_s:6.2f} s")
    print("containerlab            not measured: needs a Docker engine, absent here")


if __name__ == "__main__":
    main()
