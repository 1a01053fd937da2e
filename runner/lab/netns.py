"""The namespace backend: each node a Linux network namespace, routers running the host's FRR."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from runner.errors import BackendUnavailable, LabError, LabNotFound
from runner.lab import confine, hostcheck, inventory, launcher, state
from runner.lab.backend import LabStatus, NodeStatus
from runner.lab.kinds.base import BOOT_LOG
from runner.lab.plan import LabPlan, NodePlan, make_plan
from runner.lab.system import (
    ip_batch,
    link_alias,
    link_exists,
    netns_inode,
    netns_list,
    netns_pids,
    pid_alive,
    pid_netns_inode,
    process_name,
    require_root,
    require_tools,
)
from runner.lab.topology import Node, Topology

log = logging.getLogger(__name__)

NAME = "namespace"
TOOLS = {
    "ip": "iproute2", "nsenter": "util-linux", "unshare": "util-linux",
    "setpriv": "util-linux", "awk": "mawk",
    "ssh-keygen": "openssh-client", "openssl": "openssl",
    "/usr/lib/frr/zebra": "frr", "/usr/lib/frr/watchfrr": "frr", "/usr/bin/vtysh": "frr",
    "/usr/sbin/sshd": "openssh-server",
}


def wait_for(condition: Callable[[], bool], timeout: float, what: str,
             interval: float = 0.05) -> None:
    """Poll `condition` until true; LabError naming `what` when the deadline passes."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise LabError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def tcp_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def stub_link_type() -> str:
    """What a `type: dummy` link's interface is: a dummy interface, as containerlab makes
    it; on a kernel that cannot load the dummy module (a container's), a bridge with no
    ports, which is just as up (carrier on) and carries its addresses the same way."""
    probe = subprocess.run(["unshare", "--net", "ip", "link", "add", "probe0", "type",
                            "dummy"], capture_output=True, check=False)
    return "dummy" if probe.returncode == 0 else "bridge"


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


class NamespaceBackend:
    """Deploys a topology as network namespaces on this host; needs root, frr and sshd.

    index: where labs up on this machine are listed; ready_timeout: seconds a node's
    launcher, and all routers' daemons and sshd, may take (the settings' lab_ready_timeout).
    """

    name = NAME

    def __init__(self, index: state.LabIndex, ready_timeout: float) -> None:
        self.index = index
        self.ready_timeout = ready_timeout

    def unusable_reason(self) -> str | None:
        if os.geteuid() != 0:
            return "needs root"
        missing = [t for t in TOOLS if not (Path(t).exists() if t.startswith("/")
                                             else shutil.which(t))]
        if missing:
            return f"missing {', '.join(missing)}"
        return confine.unavailable()

    # ---- up -------------------------------------------------------------------------

    def up(self, topo: Topology, *, reconfigure: bool = False) -> LabStatus:
        require_root("the namespace lab backend")
        require_tools(TOOLS)
        why_not = confine.unavailable()
        if why_not:
            raise BackendUnavailable(why_not)
        plan = make_plan(topo)
        previous = state.load(topo.lab_dir)
        if previous is not None and not reconfigure:
            raise LabError(
                f"lab {topo.name!r} is already up (state in {topo.lab_dir}); run "
                f"`runner lab down {topo.path}` first, or `up --reconfigure`")
        self._check_name_free(topo)
        # Input errors (exit 2) before anything changes, even before a reconfigure's down.
        hostcheck.check_subnet(topo, own_dev=previous.plan.bridge if previous else None)
        hostcheck.check_sysctls(topo)
        if previous is not None:
            self.down(previous)
        self._check_conflicts(plan)
        self.index.save(state.LabState(NAME, plan, "deploying"))
        try:
            started = time.monotonic()
            phases: list[tuple[str, Callable[[], object]]] = [
                ("files", lambda: self._prepare_files(topo, plan)),
                ("network", lambda: self._create_network(plan)),
                ("launch", lambda: self._launch(plan)),
                ("ready", lambda: self._wait_ready(plan)),
                ("exec", lambda: self._run_exec(topo, plan)),
                ("inventory", lambda: inventory.write_client_files(plan, topo.nodes)),
            ]
            for phase, step in phases:
                t0 = time.monotonic()
                step()
                log.debug("lab %s: %s took %.2fs", plan.lab, phase, time.monotonic() - t0)
            self.index.save(state.LabState(NAME, plan, "up"))
            log.info("lab %s up: %d nodes in %.1fs", plan.lab, len(plan.nodes),
                     time.monotonic() - started)
        except BaseException:
            # A failed or interrupted up leaves nothing behind.
            self.teardown(plan)
            raise
        return self.status(state.LabState(NAME, plan, "up"))

    def _check_name_free(self, topo: Topology) -> None:
        """A lab of this name up from another file shares its namespaces and bridge: say so
        (and whether its processes died, as after a killed run) before the subnet check,
        which would only see the bridge's route."""
        try:
            other = self.index.load_by_name(topo.name)
        except LabNotFound:
            return
        if other.plan.lab_dir == str(topo.lab_dir):
            return
        alive = any(netns_pids(n.netns) for n in other.plan.nodes.values())
        how = "" if alive else " (its processes have stopped: left by a run that died?)"
        raise LabError(f"a lab named {topo.name!r} is already up from {other.plan.topology}"
                       f"{how}; `runner lab down {topo.name}` removes it")

    def _check_conflicts(self, plan: LabPlan) -> None:
        taken = netns_list() & {n.netns for n in plan.nodes.values()}
        if taken:
            raise LabError(f"network namespaces already exist: {', '.join(sorted(taken))} "
                           "(another lab with the same names? `runner lab status` lists labs)")
        if link_exists(plan.bridge):
            raise LabError(f"interface {plan.bridge} already exists on this host")

    def _prepare_files(self, topo: Topology, plan: LabPlan) -> None:
        lab_dir = Path(plan.lab_dir)
        shutil.rmtree(lab_dir / "nodes", ignore_errors=True)
        # Root only: node configs (maybe with passwords), the lab's private key, logs.
        lab_dir.chmod(0o700)
        pubkeys = inventory.client_public_keys(lab_dir)
        (lab_dir / "authorized_keys").write_text(pubkeys, encoding="utf-8")
        def prepare(node: Node) -> None:
            nplan = plan.nodes[node.name]
            ndir = plan.node_dir(node.name)
            ndir.mkdir(parents=True)
            # The kind's own files (a router's /etc/frr, login account, sshd), then the
            # launcher every node has, which ends with what its kind boots.
            node.kind_impl.write_files(ndir, node, nplan.daemons, pubkeys)
            launcher.write_launcher(plan, nplan, node.sysctls)

        # Host-key generation dominates; ssh-keygen runs outside the GIL, so use the cores.
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            list(pool.map(prepare, topo.nodes.values()))

    def _create_network(self, plan: LabPlan) -> None:
        cmds = [f"netns add {n.netns}" for n in plan.nodes.values()]
        # Each interface, and each namespace's eth0, carries the lab's mark (its alias), so a
        # `down` without the lab's state removes only what this lab created.
        cmds += [f"link add {plan.bridge} type bridge",
                 f"link set {plan.bridge} alias {plan.mark}",
                 f"addr add {plan.gateway}/{plan.prefixlen} dev {plan.bridge}",
                 f"link set {plan.bridge} up"]
        for node in plan.nodes.values():
            peer = "rp" + node.host_veth[2:]  # a free name until it moves in as eth0
            cmds += [f"link add {node.host_veth} type veth peer name {peer}",
                     f"link set {node.host_veth} alias {plan.mark}",
                     f"link set {peer} alias {plan.mark}",
                     f"link set {peer} netns {node.netns} name eth0",
                     f"link set {node.host_veth} master {plan.bridge} up"]
        for link in plan.links:
            mtu = f" mtu {link.mtu}" if link.mtu else ""
            cmds.append(f"link add {link.a_iface}{mtu} netns {link.a_netns} type veth "
                        f"peer name {link.b_iface}{mtu} netns {link.b_netns}")
        stub_type = stub_link_type() if any(n.stubs for n in plan.nodes.values()) else ""
        for node in plan.nodes.values():
            for iface in node.stubs:
                mtu = f" mtu {node.stub_mtu[iface]}" if iface in node.stub_mtu else ""
                cmds.append(f"link add {iface}{mtu} netns {node.netns} type {stub_type}")
        ip_batch(cmds)

    def _launch(self, plan: LabPlan) -> None:
        procs: list[tuple[NodePlan, subprocess.Popen[str]]] = []
        for node in plan.nodes.values():
            script = str(plan.node_dir(node.name) / launcher.LAUNCHER)
            argv = ["ip", "netns", "exec", node.netns]
            # Routers get their own UTS namespace so the hostname is the node's name.
            argv += ["unshare", "--uts", "sh", script] if node.kind_impl.own_namespaces \
                else ["sh", script]
            procs.append((node, subprocess.Popen(argv, stdout=subprocess.PIPE,
                                                 stderr=subprocess.STDOUT, text=True)))
        failures = []
        for node, proc in procs:
            out, _ = proc.communicate(timeout=self.ready_timeout)
            if proc.returncode != 0:
                failures.append(f"{node.name}: launcher exited {proc.returncode}: "
                                f"{out.strip()[-500:]}")
        if failures:
            raise LabError("nodes failed to start:\n  " + "\n  ".join(failures))
        for node in plan.nodes.values():
            boot_log = plan.node_dir(node.name) / "log" / BOOT_LOG
            errors = [ln for ln in _read_lines(boot_log) if "% " in ln or "rror" in ln]
            if errors:
                # Counted, never quoted: the lines may be anyone's secrets (a wrong file).
                log.warning("router %s: FRR rejected %d line(s) of its startup config; "
                            "see %s (readable by root only)", node.name, len(errors), boot_log)

    def _wait_ready(self, plan: LabPlan) -> None:
        pending = {n.name for n in plan.nodes.values() if n.kind_impl.waits_ready}

        def all_ready() -> bool:
            for name in list(pending):
                node = plan.nodes[name]
                if all(self._daemon_states(plan, node).values()) and \
                        self._ssh_up(plan, node):
                    pending.discard(name)
            return not pending

        try:
            wait_for(all_ready, self.ready_timeout, "routers' daemons and sshd")
        except LabError as exc:
            raise LabError(f"{exc}: not ready: {', '.join(sorted(pending))} (see "
                           f"{plan.lab_dir}/nodes/<node>/log)") from None

    def wait_router(self, plan: LabPlan, node: NodePlan) -> None:
        """Until one router's daemons and sshd are up (after `runner lab start`)."""
        wait_for(lambda: all(self._daemon_states(plan, node).values())
                 and self._ssh_up(plan, node), self.ready_timeout,
                 f"router {node.name}'s daemons and sshd")

    def _run_exec(self, topo: Topology, plan: LabPlan) -> None:
        for node in topo.nodes.values():
            nplan = plan.nodes[node.name]
            uid, gid, groups = node.kind_impl.exec_identity(node.username)
            for command in node.exec:
                argv = confine.exec_argv(command, uid, gid, groups, node.env,
                                         fresh_dev=not nplan.kind_impl.own_namespaces)
                proc = self._in_node(plan, nplan, argv, timeout=60, env=confine.CLEAN_ENV)
                if proc.returncode != 0:
                    log.warning("node %s: exec %r exited %d: %s", node.name, command,
                                proc.returncode, (proc.stderr or proc.stdout).strip())

    # ---- down -----------------------------------------------------------------------

    def down(self, lab: state.LabState) -> None:
        require_root("the namespace lab backend")
        self.teardown(lab.plan)

    def teardown(self, plan: LabPlan, *, only_marked: bool = False) -> None:
        """Remove every trace of the lab; idempotent, and safe on a half-built lab.

        only_marked: the plan comes from a topology file, not from the lab's state: remove
        only namespaces and interfaces that carry this lab's mark, so a file naming
        another lab's namespaces or a host interface (mgmt.bridge: eth0) removes nothing
        of theirs.
        """
        namespaces = [n.netns for n in plan.nodes.values()]
        existing = netns_list()
        live = [ns for ns in namespaces if ns in existing]
        links = [plan.bridge, *(n.host_veth for n in plan.nodes.values())]
        if only_marked:
            foreign = [ns for ns in live if link_alias("eth0", ns) != plan.mark]
            live = namespaces = [ns for ns in live if ns not in foreign]
            links = [i for i in links if link_alias(i) == plan.mark]
            if foreign:
                log.warning("lab %s: left alone namespaces this lab did not create: %s",
                            plan.lab, ", ".join(foreign))
        # watchfrr first: it restarts daemons that die.
        for ns in live:
            for pid in netns_pids(ns):
                if process_name(pid) == "watchfrr":
                    _kill(pid)

        def all_dead() -> bool:
            pids = [pid for ns in live for pid in netns_pids(ns)]
            for pid in pids:
                _kill(pid)
            return not any(pid_alive(p) for p in pids)

        wait_for(all_dead, 30, "lab processes to exit")
        cmds = [f"netns del {ns}" for ns in live]
        cmds += [f"link del {i}" for i in links if link_exists(i)]
        ip_batch(cmds, force=True)
        left = (netns_list() & set(namespaces)) | {i for i in links if link_exists(i)}
        if left:
            raise LabError(f"could not remove: {', '.join(sorted(left))}")
        if _own_state(plan):
            shutil.rmtree(plan.lab_dir, ignore_errors=True)
        self.index.forget(plan)

    # ---- status and exec --------------------------------------------------------------

    def _daemon_states(self, plan: LabPlan, node: NodePlan) -> dict[str, bool]:
        pid_files = node.kind_impl.daemon_pids(plan.node_dir(node.name), node.daemons)
        return {daemon: read_pid(path) is not None for daemon, path in pid_files.items()}

    def _ssh_up(self, plan: LabPlan, node: NodePlan) -> bool:
        pid_file = node.kind_impl.sshd_pid(plan.node_dir(node.name))
        return pid_file is not None and read_pid(pid_file) is not None and \
            tcp_open(node.mgmt_ip, 22)

    def status(self, lab: state.LabState) -> LabStatus:
        plan = lab.plan
        existing = netns_list()
        nodes = []
        for node in plan.nodes.values():
            running = node.netns in existing
            kind = node.kind_impl
            nodes.append(NodeStatus(
                name=node.name, kind=node.kind, role=kind.role, mgmt_ip=node.mgmt_ip,
                running=running,
                daemons=self._daemon_states(plan, node) if kind.waits_ready and running
                else {},
                ssh=(running and self._ssh_up(plan, node)) if kind.serves_ssh else None,
                stopped=list(lab.faults.stopped.get(node.name, [])),
            ))
        inv = Path(plan.lab_dir) / inventory.INVENTORY_DIR
        return LabStatus(lab=plan.lab, backend=NAME, topology=plan.topology,
                         lab_dir=plan.lab_dir, inventory=str(inv) if inv.exists() else None,
                         nodes=nodes, faults=lab.faults.to_json(), exercise=lab.exercise)

    def exec(self, lab: state.LabState, node: str, command: list[str],
             timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Routers: a vtysh command (or argv after `--shell`); hosts: argv in the namespace.
        The node's kind says how its CLI runs (kinds.frr: as the login user, without
        capabilities)."""
        require_root("the namespace lab backend")
        if node not in lab.plan.nodes:
            raise LabError(f"lab {lab.plan.lab} has no node {node!r} (nodes: "
                           f"{', '.join(lab.plan.nodes)})")
        nplan = lab.plan.nodes[node]
        command = nplan.kind_impl.cli_argv(nplan.username, command)
        return self._in_node(lab.plan, nplan, command, timeout=timeout)

    def _in_node(self, plan: LabPlan, node: NodePlan, argv: list[str], *, timeout: float,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """argv inside the node: a router's own namespaces, a host's network namespace.
        env: the whole environment (default: this process's)."""
        if node.kind_impl.own_namespaces:
            pid = router_pid(plan, node)
            if pid is None:
                raise LabError(f"router {node.name} is not running (no FRR daemon nor sshd; "
                               f"`runner lab start {node.name}` starts it)")
            # Enter the router's own mount and UTS namespaces too: its /etc/frr, hostname.
            prefix = ["nsenter", "-t", str(pid), "-m", "-u", "-n"]
        else:
            prefix = ["ip", "netns", "exec", node.netns]
        return subprocess.run([*prefix, *argv], capture_output=True, text=True,
                              timeout=timeout, env=dict(os.environ) if env is None else env,
                              check=False)


def read_pid(path: Path) -> int | None:
    """The live process a pid file names, or None."""
    pid = _read_pid(path)
    return pid if pid is not None and pid_alive(pid) else None


def router_pid(plan: LabPlan, node: NodePlan) -> int | None:
    """A live process of the router (its kind's pid files in its order: zebra first): its
    mount and UTS namespaces are the router's own /etc/frr, /run/frr and hostname, which
    nsenter joins."""
    candidates = node.kind_impl.entry_pids(plan.node_dir(node.name), node.daemons)
    # The pid files are the router's to write: a pid is believed only when that process is
    # in the router's network namespace (never, say, PID 1's namespaces).
    own = netns_inode(node.netns)
    return next((pid for pid in map(read_pid, candidates)
                 if pid is not None and own is not None and pid_netns_inode(pid) == own), None)


def _own_state(plan: LabPlan) -> bool:
    """True when the plan's lab dir holds this lab's state, written by runner: only then is
    the directory removed (a plan from the index could name any directory)."""
    try:
        found = state.load(Path(plan.lab_dir))
    except (LabError, OSError, ValueError, KeyError):
        return False
    return found is not None and found.plan.lab == plan.lab


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
