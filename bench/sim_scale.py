"""Bench: `runner lab sim` at 100,000 devices: start time, memory, CPU and stop time.

    .venv/bin/python bench/sim_scale.py [--devices 100000] [--per-process N]
                                        [--address 127.180.0.1] [--sweep]

Starts the simulator as a user types it (one command; past the open-files limit it spreads
the devices over several processes), waits for its state file, then prints: wall time from
exec to ready, the simulator's own start time, each process's devices, start time and RSS,
the whole tree's RSS and PSS (shared pages counted once) and CPU, a login with `show
version` to the first and last device of every process, optionally (`--sweep`) an SSH
banner read from every device, and the time SIGTERM takes to stop everything (no process
left behind is checked). The simulator is always stopped, even on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
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
    import asyncssh
import yaml  # noqa: E402

from runner.lab.sim.process import SimProcess  # noqa: E402

# libyaml's loader: Python's own takes minutes over a 100,000-host inventory.
LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(path: Path) -> Any:
    return yaml.load(path.read_text(encoding="utf-8"), Loader=LOADER)  # noqa: S506


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def status_kib(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_s(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


async def logins(inventory: Path, hosts: list[str]) -> list[tuple[str, bool, float]]:
    """`show version` on each host over SSH, host key checked: (host, right device, s)."""
    data = read_yaml(inventory / "hosts.yaml")
    defaults = read_yaml(inventory / "defaults.yaml")
    out = []
    for host in hosts:
        started = time.monotonic()
        async with asyncssh.connect(
                data[host]["hostname"], data[host]["port"], username=defaults["username"],
                password=defaults["password"],
                known_hosts=str(inventory.parent / "known_hosts")) as conn:
            text = str((await conn.run("show version")).stdout)
        out.append((host, f"9SIM{int(host[3:]):08d}" in text, time.monotonic() - started))
    return out


async def sweep(inventory: Path, width: int = 500) -> tuple[int, int, float]:
    """Read the SSH banner of every device (TCP connect, first line): (answered, of, s)."""
    data = read_yaml(inventory / "hosts.yaml")
    targets = [(h["hostname"], h["port"]) for h in data.values()]
    gate = asyncio.Semaphore(width)
    started = time.monotonic()

    async def one(address: str, port: int) -> bool:
        async with gate:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(address, port), 60)
                try:
                    line = await asyncio.wait_for(reader.readline(), 60)
                finally:
                    writer.close()
                return line.startswith(b"SSH-2.0-")
            except (OSError, TimeoutError):
                return False

    answered = sum(await asyncio.gather(*(one(a, p) for a, p in targets)))
    return answered, len(targets), time.monotonic() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=100_000)
    ap.add_argument("--per-process", type=int, default=None)
    ap.add_argument("--address", default="127.180.0.1")
    ap.add_argument("--sweep", action="store_true", help="read every device's SSH banner")
    args = ap.parse_args()
    extra = ("--per-process", str(args.per_process)) if args.per_process else ()
    work = Path(tempfile.mkdtemp(prefix="sim-scale-"))
    sim = SimProcess(work / "sim", args.devices, address=args.address, port=free_port(),
                     extra=extra)
    exec_at = time.monotonic()
    state = sim.start(timeout=1800)
    ready_s = time.monotonic() - exec_at
    try:
        report(sim, state, ready_s, args.sweep)
    finally:
        stopping = time.monotonic()
        sim.stop()
        stop_s = time.monotonic() - stopping
        left = [p["pid"] for p in state["processes"] if alive(p["pid"])]
        print(f"stop (SIGTERM to the command until every process is gone): {stop_s:.1f} s; "
              f"processes left behind: {len(left)}; exit status "
              f"{sim.proc.returncode if sim.proc else '?'}")
        errors = sim.errors().strip()
        if errors:
            print("simulator stderr:\n" + errors[-3000:])
        shutil.rmtree(work, ignore_errors=True)  # its inventory holds the password


def report(sim: SimProcess, state: dict[str, Any], ready_s: float, do_sweep: bool) -> None:
    parts = state["processes"]
    pids = [state["pid"], *(p["pid"] for p in parts if p["pid"] != state["pid"])]
    print(f"simulator: {state['devices']} devices on {state['first']}..{state['last']} port "
          f"{state['port']}, {len(parts)} process(es), open-files limit "
          f"{state['open_files']}")
    print(f"ready {ready_s:.1f} s after exec (the command's own count: {state['start_s']} s)")
    print("| process | devices | first | last | listening after | RSS |")
    print("| --- | --- | --- | --- | --- | --- |")
    for p in parts:
        print(f"| {p.get('number', 1)} | {p['devices']} | {p['first']} | {p['last']} | "
              f"{p['start_s']} s | {p['rss_mib']} MiB |")
    rss = sum(status_kib(pid, "VmRSS") for pid in pids) / 1024
    pss = sum(pss_kib(pid) for pid in pids) / 1024
    cpu = sum(cpu_s(pid) for pid in pids)
    per_device = pss * 1024 / state["devices"]
    print(f"memory, idle: RSS {rss:.0f} MiB, PSS {pss:.0f} MiB ({per_device:.1f} KiB per "
          f"device, interpreters included); CPU to start: {cpu:.1f} s")
    sample = [name for p in parts for name in (p["first"], p["last"])]
    checked = asyncio.run(logins(sim.inventory, sample))
    right = sum(ok for _, ok, _ in checked)
    slowest = max(s for _, _, s in checked)
    print(f"logins (show version, host key checked) to the first and last device of every "
          f"process: {right}/{len(checked)} answered as themselves, slowest {slowest:.2f} s")
    if do_sweep:
        answered, of, took = asyncio.run(sweep(sim.inventory))
        rss = sum(status_kib(pid, "VmRSS") for pid in pids) / 1024
        print(f"sweep: {answered}/{of} devices sent their SSH banner in {took:.1f} s; RSS "
              f"after: {rss:.0f} MiB")


if __name__ == "__main__":
    main()
