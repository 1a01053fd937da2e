"""Breaking a running lab on purpose, and mending it: links, netem, FRR daemons, routers.

Every fault is recorded in the lab's state (`runner lab status` lists them; `lab down`
removes the lab with them). Links and netem act on the node's network namespace, which
containerlab names as runner does, so both backends share them; stopping and starting
daemons and routers is the namespace backend's (containerlab: `docker stop/start`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from dataclasses import replace

from runner.errors import BackendUnavailable, LabError
from runner.lab import shaping
from runner.lab.faults import ROUTER, Netem, split_endpoint
from runner.lab.kinds.frr import boot as frr_boot
from runner.lab.kinds.frr import files as frr_files
from runner.lab.netns import read_pid, router_pid, wait_for
from runner.lab.plan import LabPlan, NodePlan
from runner.lab.service import Labs
from runner.lab.state import LabState
from runner.lab.system import netns_pids, pid_alive, require_root, run

KILL_TIMEOUT = 10.0


def _node(lab: LabState, name: str) -> NodePlan:
    if name not in lab.plan.nodes:
        raise LabError(f"lab {lab.plan.lab} has no node {name!r} (nodes: "
                       f"{', '.join(lab.plan.nodes)})")
    return lab.plan.nodes[name]


def data_endpoint(lab: LabState, endpoint: str) -> tuple[NodePlan, str]:
    """NODE:IF of one of the lab's links (eth0, management, is not one)."""
    name, iface = split_endpoint(endpoint)
    node = _node(lab, name)
    if iface not in node.interfaces:
        have = ", ".join(node.interfaces) or "none"
        raise LabError(f"{name} has no link interface {iface!r} (its links: {have})")
    return node, iface


def _kill_and_wait(pids: list[int], what: str) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not any(pid_alive(p) for p in pids), KILL_TIMEOUT, what)


class Impair:
    """Fault operations on the labs of this machine; each saves the lab's faults."""

    def __init__(self, labs: Labs) -> None:
        self.labs = labs

    def _save(self, lab: LabState) -> None:
        self.labs.index.save(lab)

    # ---- links and netem ------------------------------------------------------------

    def link(self, lab: LabState, endpoint: str, up: bool) -> str:
        """Set a link interface down (its peer loses carrier) or up again."""
        require_root("changing a lab's links")
        node, iface = data_endpoint(lab, endpoint)
        end = f"{node.name}:{iface}"
        if lab.faults.router_stopped(node.name) and up:
            raise LabError(f"router {node.name} is stopped; `runner lab start {node.name}` "
                           "first")
        run(["ip", "-n", node.netns, "link", "set", iface, "up" if up else "down"])
        downs = set(lab.faults.links_down)
        downs.discard(end) if up else downs.add(end)
        lab.faults.links_down = sorted(downs)
        self._save(lab)
        return f"{end} is {'up' if up else 'down'}"

    def netem(self, lab: LabState, endpoint: str, spec: Netem | None) -> str:
        """Set (replacing any earlier) or clear (spec None) impairments on a link interface's
        egress, with tc netem in the node's namespace, as containerlab's `tools netem set`."""
        require_root("netem on a lab's links")
        node, iface = data_endpoint(lab, endpoint)
        end = f"{node.name}:{iface}"
        if spec is None:
            shaping.clear(node.netns, iface)
            if lab.faults.netem.pop(end, None) is not None:
                self._save(lab)
            return f"{end}: no impairments"
        method = shaping.apply(node.netns, iface, spec)
        spec = replace(spec, method=method)
        lab.faults.netem[end] = spec
        self._save(lab)
        return f"{end}: {spec}"

    # ---- daemons and routers ----------------------------------------------------------

    def stop(self, lab: LabState, name: str, daemon: str | None) -> str:
        """Kill one FRR daemon (watchfrr is told to leave it dead), or the whole router:
        every process of it, and its links down, as if powered off."""
        node = self._router(lab, name)
        if lab.backend != "namespace":
            return self._docker(lab, node, daemon, "stop")
        stopped = set(lab.faults.stopped.get(name, []))
        if ROUTER in stopped:
            raise LabError(f"router {name} is already stopped")
        if daemon is None:
            self._power_off(lab.plan, node)
            stopped = {ROUTER}
        else:
            self._check_daemon(node, daemon)
            if daemon in stopped:
                raise LabError(f"{daemon} is already stopped on {name}")
            stopped.add(daemon)
            self._supervise(lab.plan, node, [], stopped)
            pid = read_pid(frr_files.pid_file(lab.plan.node_dir(name), daemon))
            if pid is not None:
                _kill_and_wait([pid], f"{daemon} on {name} to exit")
        lab.faults.stopped[name] = sorted(stopped)
        self._save(lab)
        return f"stopped {daemon} on {name}" if daemon else f"router {name} stopped"

    def start(self, lab: LabState, name: str, daemon: str | None) -> str:
        """Start a stopped daemon again (its part of the saved frr.conf applied, as FRR does
        on a restart), every stopped daemon, or a stopped router (booted from its saved
        config: what was not saved is lost, as on a real reload)."""
        node = self._router(lab, name)
        if lab.backend != "namespace":
            return self._docker(lab, node, daemon, "start")
        stopped = set(lab.faults.stopped.get(name, []))
        if ROUTER in stopped:
            if daemon is not None:
                raise LabError(f"router {name} is stopped; `runner lab start {name}` starts "
                               "it whole")
            self._power_on(lab, node)
            lab.faults.stopped.pop(name, None)
            self._save(lab)
            return f"router {name} started"
        if daemon is not None:
            self._check_daemon(node, daemon)
            if daemon not in stopped:
                raise LabError(f"{daemon} is not stopped on {name} (stopped: "
                               f"{', '.join(sorted(stopped)) or 'nothing'})")
        starting = [daemon] if daemon else sorted(stopped)
        if not starting:
            raise LabError(f"nothing is stopped on {name}")
        self._supervise(lab.plan, node, starting, stopped - set(starting))
        lab.faults.stopped[name] = sorted(stopped - set(starting))
        if not lab.faults.stopped[name]:
            del lab.faults.stopped[name]
        self._save(lab)
        return f"started {', '.join(starting)} on {name}"

    def _router(self, lab: LabState, name: str) -> NodePlan:
        require_root("stopping and starting lab routers")
        node = _node(lab, name)
        if not node.kind_impl.stoppable:
            raise LabError(f"{name} is a {node.role}, not a router: only routers' daemons can "
                           "be stopped and started (take its link down instead)")
        return node

    def _check_daemon(self, node: NodePlan, daemon: str) -> None:
        runs = frr_boot.supervised(node.daemons)
        if daemon not in runs:
            raise LabError(f"{node.name} runs no {daemon!r} (its daemons: {', '.join(runs)})")

    def _supervise(self, plan: LabPlan, node: NodePlan, starting: list[str],
                   stopped: set[str]) -> None:
        """Replace watchfrr by one that supervises all but the stopped daemons, starting
        `starting` in between (each given its part of the saved config)."""
        ndir = plan.node_dir(node.name)
        daemons_file = frr_files.daemons_file(ndir)
        watchfrr = read_pid(frr_files.pid_file(ndir, "watchfrr"))
        if watchfrr is not None:
            _kill_and_wait([watchfrr], f"watchfrr on {node.name} to exit")
        for daemon in starting:
            self._in_router(plan, node, frr_boot.daemon_argv(daemons_file, daemon))
            self._in_router(plan, node, frr_boot.vtysh_boot_argv(daemon), check=False)
        keep = [d for d in frr_boot.supervised(node.daemons) if d not in stopped]
        if keep:
            self._in_router(plan, node, frr_boot.watchfrr_argv(daemons_file, keep))

    def _in_router(self, plan: LabPlan, node: NodePlan, argv: list[str],
                   check: bool = True) -> subprocess.CompletedProcess[str]:
        pid = router_pid(plan, node)
        if pid is None:
            raise LabError(f"router {node.name} has no process left to enter; "
                           f"`runner lab stop {node.name}` then `start {node.name}` reboots it")
        return run(["nsenter", "-t", str(pid), "-m", "-u", "-n", *argv], check=check)

    def _power_off(self, plan: LabPlan, node: NodePlan) -> None:
        pid = router_pid(plan, node)
        if pid is not None:
            mnt = os.readlink(f"/proc/{pid}/ns/mnt")
            watchfrr = read_pid(frr_files.pid_file(plan.node_dir(node.name), "watchfrr"))
            if watchfrr is not None:
                _kill_and_wait([watchfrr], f"watchfrr on {node.name} to exit")
            # The router's processes: those in its own mount namespace (daemons, sshd, login
            # sessions); a capture started with `ip netns exec` is not the router's.
            mine = [p for p in netns_pids(node.netns) if _mount_ns(p) == mnt]
            _kill_and_wait(mine, f"router {node.name}'s processes to exit")
        for iface in node.interfaces:
            run(["ip", "-n", node.netns, "link", "set", iface, "down"])

    def _power_on(self, lab: LabState, node: NodePlan) -> None:
        plan = lab.plan
        for iface in node.interfaces:
            if f"{node.name}:{iface}" not in lab.faults.links_down:
                run(["ip", "-n", node.netns, "link", "set", iface, "up"])
        script = plan.node_dir(node.name) / frr_boot.BOOT_SCRIPT
        if not script.exists():
            raise LabError(f"{script} is missing: bring the lab up again with this runner "
                           "(`runner lab up --reconfigure`)")
        proc = run(["ip", "netns", "exec", node.netns, "unshare", "--uts", "sh", str(script)],
                   check=False, timeout=self.labs.namespace.ready_timeout)
        if proc.returncode != 0:
            raise LabError(f"router {node.name} failed to start: "
                           f"{(proc.stderr or proc.stdout).strip()[-500:]}")
        self.labs.namespace.wait_router(plan, node)

    def _docker(self, lab: LabState, node: NodePlan, daemon: str | None, verb: str) -> str:
        if daemon is not None:
            raise BackendUnavailable(f"stopping one daemon is the namespace backend's; with "
                                     f"containerlab, `docker exec {node.netns} ...`")
        run(["docker", verb, node.netns], timeout=120)
        stopped = lab.faults.stopped
        if verb == "stop":
            stopped[node.name] = [ROUTER]
        else:
            stopped.pop(node.name, None)
        self._save(lab)
        return f"router {node.name} {verb}{'ped' if verb == 'stop' else 'ed'}"


def _mount_ns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None

