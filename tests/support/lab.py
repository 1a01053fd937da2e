"""Lab test helpers: run the CLI, copy a topology under a private name, a running practice
lab, polling, leftovers after `down`, and reading the routers back (vtysh, a job's step)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from runner.lab.converge import wait_converged
from runner.lab.plan import LabPlan, make_plan
from runner.lab.service import Labs
from runner.lab.state import LabIndex, LabState
from runner.lab.system import link_exists, netns_list, pid_alive
from runner.lab.topology import load_topology
from runner.settings import Settings
from tests.support.base import LAB_DIR

T = TypeVar("T")
# The drivers every lab job test runs with.
DRIVERS = ["netmiko", "scrapli", "asyncssh"]


def runner(*args: str, check: bool = True,
           timeout: float = 300) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "runner", *args], capture_output=True,
                          text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"runner {' '.join(args)} exited {proc.returncode}:\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


def run_alive(run_dir: Path) -> bool:
    """Whether the pytest run owning this basetemp dir still runs: pytest writes its pid in
    .lock there and removes the file when it ends normally."""
    try:
        return pid_alive(int((run_dir / ".lock").read_text(encoding="utf-8").strip()))
    except (OSError, ValueError):
        return False


def remove_dead_runs_labs(root: Path) -> list[str]:
    """`lab down` every lab whose files are in a pytest run dir under `root` (pytest-N/...)
    whose run has ended: what a killed run left. The names taken down."""
    root = root.resolve()
    removed = []
    for lab in LabIndex(Settings.from_env().lab_index).all_labs():
        lab_dir = Path(lab.plan.lab_dir).resolve()
        if root in lab_dir.parents and not run_alive(root / lab_dir.relative_to(root).parts[0]):
            runner("lab", "down", lab.plan.lab, check=False)
            removed.append(lab.plan.lab)
    return removed


def private_copy(src: Path, dest_dir: Path, name: str, subnet_octet: int) -> Path:
    """Copy a shipped topology (and its config dir) under another lab name and mgmt subnet,
    so tests never collide with a lab a person has up (e.g. from ./dev demo)."""
    text = src.read_text(encoding="utf-8")
    original = re.search(r"^name:\s*(\S+)", text, re.M)
    assert original
    text = text.replace(f"name: {original.group(1)}", f"name: {name}", 1)
    text = text.replace("172.20.20.", f"172.20.{subnet_octet}.")
    conf_dir = src.parent / original.group(1)
    if conf_dir.is_dir():
        shutil.copytree(conf_dir, dest_dir / original.group(1))
    dest = dest_dir / f"{name}.clab.yml"
    dest.write_text(text, encoding="utf-8")
    return dest


def plan_of(topology: Path) -> LabPlan:
    return make_plan(load_topology(topology))


def lab_pids(plan: LabPlan) -> list[int]:
    out = []
    for node in plan.nodes.values():
        proc = subprocess.run(["ip", "netns", "pids", node.netns], capture_output=True,
                              text=True, check=False)
        out += [int(p) for p in proc.stdout.split()]
    return out


def leftovers(plan: LabPlan, pids: list[int] | None = None) -> list[str]:
    """Everything of the lab still on the machine: must be empty after `down`."""
    left = [f"netns {ns}" for ns in sorted(netns_list() & {n.netns for n in plan.nodes.values()})]
    left += [f"link {i}" for i in [plan.bridge, *(n.host_veth for n in plan.nodes.values())]
             if link_exists(i)]
    left += [f"pid {p}" for p in pids or [] if pid_alive(p)]
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        mounts = fh.read()
    left += [f"mount of {ns}" for ns in (n.netns for n in plan.nodes.values())
             if f"/run/netns/{ns} " in mounts]
    # Any process anywhere still using the lab's files (e.g. an sshd with its config).
    for entry in os.listdir("/proc"):
        if entry.isdigit() and pid_alive(int(entry)):
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if plan.lab_dir.encode() in cmdline:
                left.append(f"process {entry}: {cmdline.decode(errors='replace')[:100]}")
    if Path(plan.lab_dir).exists():
        left.append(f"lab dir {plan.lab_dir}")
    index = Settings.from_env().lab_index / f"{plan.lab}.json"
    if index.exists():
        left.append(f"index entry {index}")
    return left


def status_json(topology: Path) -> dict[str, object]:
    data = json.loads(runner("lab", "status", "--json", str(topology)).stdout)
    assert isinstance(data, list) and len(data) == 1
    result: dict[str, object] = data[0]
    return result


@dataclass
class RunningLab:
    topology: Path
    plan: LabPlan
    state: LabState
    labs: Labs

    @property
    def lab_dir(self) -> Path:
        return Path(self.plan.lab_dir)

    @property
    def known_hosts(self) -> Path:
        return self.lab_dir / "known_hosts"

    def ip(self, node: str) -> str:
        return self.plan.nodes[node].mgmt_ip


@contextmanager
def practice_copy(workdir: Path, name: str, octet: int) -> Iterator[RunningLab]:
    """The shipped practice lab as `name` on 172.20.<octet>.0/24, converged; always down."""
    topology = private_copy(LAB_DIR / "practice.clab.yml", workdir, name, octet)
    try:
        runner("lab", "up", str(topology))
        labs = Labs(Settings.from_env())
        state = labs.find_lab(str(topology))
        wait_converged(labs, state, timeout=120)
        yield RunningLab(topology, plan_of(topology), state, labs)
    finally:
        runner("lab", "down", str(topology), check=False)


def poll(probe: Callable[[], T], until: Callable[[T], bool], bound: float = 90,
         interval: float = 1.0) -> T:
    """probe() until `until` holds of its result or `bound` seconds passed: the last result
    (the caller's assertion says what was expected)."""
    deadline = time.monotonic() + bound
    while True:
        result = probe()
        if until(result) or time.monotonic() > deadline:
            return result
        time.sleep(interval)


def status(lab: RunningLab) -> dict[str, Any]:
    data = json.loads(runner("lab", "status", "--json", lab.plan.lab, check=False).stdout)
    assert isinstance(data, list) and len(data) == 1
    result: dict[str, Any] = data[0]
    return result


def vtysh(lab: RunningLab, node: str, *command: str) -> str:
    return runner("lab", "exec", "--lab", str(lab.topology), node, "--", *command).stdout


def step(device: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in device["steps"] if s["name"] == name)
