"""Hostile topologies against real labs: sysctls stay in the node's namespace, files outside
the lab need the flag, secrets stay root-only, subnets in use are refused, and a `down`
without state removes nothing another lab owns. Labs thsys/thglob/thnet* on 172.20.71-73."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.errors import LabError
from runner.lab import hostcheck, rules
from runner.lab.exercise import play
from runner.lab.exercise.spec import Action
from runner.lab.plan import LabPlan, make_plan
from runner.lab.service import Labs
from runner.lab.system import link_exists, netns_list
from runner.lab.topology import FileAccess, load_topology
from runner.settings import Settings
from tests.support.lab import lab_pids, leftovers, plan_of, runner

HOST_KEYS = ("net.core.somaxconn", "net.ipv4.tcp_keepalive_time")


def host_value(key: str) -> str:
    return Path("/proc/sys/" + key.replace(".", "/")).read_text(encoding="utf-8").strip()


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def sysctl_lab(tmp_path: Path) -> Path:
    """r1 (FRR) and h1 (host) with sysctls; r1's config lives outside the lab's directory
    and has a line FRR rejects, holding something that looks like a secret."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "r1.conf").write_text(
        "hostname r1\nbogus-command hunter2-secret\ninterface eth1\n ip address 10.71.0.1/24\n"
        "exit\n", encoding="utf-8")
    (tmp_path / "lab").mkdir()
    path = tmp_path / "lab" / "thsys.clab.yml"
    path.write_text("""\
name: thsys
mgmt: {ipv4-subnet: 172.20.71.0/24}
topology:
  nodes:
    r1:
      kind: frr
      startup-config: ../outside/r1.conf
      sysctls: {net.core.somaxconn: "1234", net.ipv4.conf.eth1.rp_filter: "2"}
    h1:
      kind: linux
      image: alpine:3
      sysctls: {net.ipv4.tcp_keepalive_time: "4321"}
  links:
    - endpoints: [r1:eth1, h1:eth1]
""", encoding="utf-8")
    return path


def test_sysctls_change_only_the_namespace_and_secrets_stay_root_only(tmp_path: Path) -> None:
    topo = sysctl_lab(tmp_path)
    plan = plan_of_outside(topo)
    before = {key: host_value(key) for key in HOST_KEYS}
    namespaces = netns_list()
    refused = runner("lab", "up", str(topo), check=False)
    assert refused.returncode == 2
    assert f"{topo}:7: topology.nodes.r1.startup-config: startup-config file " \
        "'../outside/r1.conf' (resolves to" in refused.stderr
    assert netns_list() == namespaces and not Path(plan.lab_dir).exists()
    try:
        up = runner("lab", "up", "--allow-outside-files", str(topo))
        # FRR's rejection is counted, never quoted: the line might be anyone's secret.
        assert "router r1: FRR rejected 1 line(s) of its startup config" in up.stderr
        assert "hunter2" not in up.stdout + up.stderr

        def inside(node: str, key: str) -> str:
            return runner("lab", "exec", "--lab", str(topo), node, "--shell", "--", "sysctl",
                          "-n", key).stdout.strip()

        assert inside("r1", "net.core.somaxconn") == "1234"
        assert inside("r1", "net.ipv4.conf.eth1.rp_filter") == "2"
        assert inside("h1", "net.ipv4.tcp_keepalive_time") == "4321"
        assert inside("h1", "net.core.somaxconn") == before["net.core.somaxconn"]
        assert {key: host_value(key) for key in HOST_KEYS} == before

        lab_dir = Path(plan.lab_dir)
        boot_log = lab_dir / "nodes" / "r1" / "log" / "vtysh-boot.log"
        assert "hunter2" in boot_log.read_text(encoding="utf-8")  # kept, for root only
        assert (mode(lab_dir), mode(boot_log.parent), mode(boot_log)) == (0o700, 0o700, 0o600)
        assert mode(lab_dir / "inventory" / "hosts.yaml") == 0o600
        # Clients still log in (sshd, the vtysh shell) with the lab directory root-only.
        ssh = subprocess.run(
            ["ssh", "-F", str(lab_dir / "ssh_config"), "-o", "BatchMode=yes", "-o",
             "ConnectTimeout=10", "r1", "show running-config"],
            capture_output=True, text=True, timeout=60, check=False)
        assert "hostname r1" in ssh.stdout, ssh.stderr
    finally:
        runner("lab", "down", str(topo), check=False)
    assert leftovers(plan) == []
    assert {key: host_value(key) for key in HOST_KEYS} == before


def plan_of_outside(topo: Path) -> LabPlan:
    return make_plan(load_topology(topo, files=FileAccess(allow_outside=True)))


@pytest.mark.parametrize(("key", "problem"), [
    ("net.core.netdev_max_backlog", "is host-global on this kernel (a fresh network namespace "
     "has no writable /proc/sys/net/core/netdev_max_backlog); setting it would fail or change "
     "this machine's own value"),
    ("net.ipv4.no_such_knob", "does not exist on this kernel (no "
     "/proc/sys/net/ipv4/no_such_knob)"),
])
def test_sysctl_not_in_a_namespace_is_refused_before_anything_exists(
        tmp_path: Path, key: str, problem: str) -> None:
    assert hostcheck.unnamespaced([key, "net.core.somaxconn",
                                   "net.ipv4.conf.eth1.rp_filter"]) == {key}
    topo = tmp_path / "thglob.clab.yml"
    topo.write_text(f"""\
name: thglob
mgmt: {{ipv4-subnet: 172.20.71.0/24}}
topology:
  nodes:
    h1:
      kind: linux
      sysctls:
        net.ipv4.ip_forward: 1
        {key}: 5000
""", encoding="utf-8")
    before = netns_list()
    value = host_value(key) if Path(rules.sysctl_probe_path(key)).exists() else None
    proc = runner("lab", "up", str(topo), check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {topo}:9: topology.nodes.h1.sysctls.{key}: node h1: sysctl {key} {problem}"]
    assert netns_list() == before
    assert value is None or host_value(key) == value
    assert not (tmp_path / "clab-thglob").exists()


def hosts_lab(directory: Path, name: str, subnet: str, bridge: str = "") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.clab.yml"
    mgmt = f"{{ipv4-subnet: {subnet}{', bridge: ' + bridge if bridge else ''}}}"
    path.write_text(f"name: {name}\nmgmt: {mgmt}\ntopology:\n  nodes:\n"
                    "    h1: {kind: linux}\n    h2: {kind: linux}\n", encoding="utf-8")
    return path


def test_subnets_in_use_and_down_without_state(tmp_path: Path) -> None:
    first = hosts_lab(tmp_path / "a", "thnet1", "172.20.72.0/24")
    second = hosts_lab(tmp_path / "b", "thnet2", "172.20.73.0/24")
    plans = [plan_of(first), plan_of(second)]
    try:
        runner("lab", "up", str(first))
        runner("lab", "up", str(second))  # two labs, distinct subnets, at once
        before = netns_list()

        overlapping = hosts_lab(tmp_path / "c", "thnet3", "172.20.72.0/25")
        proc = runner("lab", "up", str(overlapping), check=False)
        assert proc.returncode == 2
        assert proc.stderr.strip().splitlines() == [
            f"error: {overlapping}:2: mgmt.ipv4-subnet: management subnet 172.20.72.0/25 "
            f"overlaps the route 172.20.72.0/24 on {plans[0].bridge} of this host; choose a "
            "free private subnet (`ip route` lists those in use)"]
        assert netns_list() == before and leftovers(plan_of(overlapping)) == []

        # Its own bridge's route is no conflict when the lab is brought up again.
        runner("lab", "up", "--reconfigure", str(first))

        # The same lab name in another directory: same namespace and bridge names, but
        # `down` of that file (not up) must not touch the lab that is up; nor may a file
        # naming that lab's bridge as its own.
        copy = hosts_lab(tmp_path / "copy", "thnet1", "172.20.72.0/24")
        thief = hosts_lab(tmp_path / "d", "thnet4", "172.20.72.0/24", bridge=plans[0].bridge)
        for other in (copy, thief):
            out = runner("lab", "down", str(other))
            assert "is not up; nothing left to remove" in out.stdout
        assert {n.netns for n in plans[0].nodes.values()} <= netns_list()
        assert link_exists(plans[0].bridge)
        assert all(n["running"] for n in status_nodes(first))
    finally:
        for topo in (first, second):
            runner("lab", "down", str(topo), check=False)
    for plan in plans:
        assert leftovers(plan) == []


def status_nodes(topo: Path) -> list[dict[str, object]]:
    data = json.loads(runner("lab", "status", "--json", str(topo)).stdout)
    nodes: list[dict[str, object]] = data[0]["nodes"]
    return nodes


@pytest.fixture(autouse=True)
def _no_leftover_labs_of_ours() -> None:
    """These names are this module's alone: none may exist before a test."""
    ours = {ns for ns in netns_list() if ns.startswith(("clab-thsys-", "clab-thglob-",
                                                        "clab-thnet", "clab-thesc-"))}
    assert not ours, f"leftovers from an earlier run: {sorted(ours)}"


# ---- the lab's processes cannot reach the host ------------------------------------------------
# Each attempt would leave its probe file on the host (or change what the test reads back)
# if it got out. {P} is the probe of the attempt, {LOOP} a loop device of the host backed by
# a file the test reads back, {PID} a host process, {LABDIR} the lab's own directory.
ESCAPES = [
    "sh -c 'mount -o remount,bind,rw / && touch {P}'",
    "sh -c 'mount -o remount,rw / ; touch {P}'",
    "sh -c 'mkdir -p /tmp/p && mount -t proc proc /tmp/p && echo 7 > "
    "/tmp/p/sys/vm/stat_interval; touch /tmp/p/1/root{P}'",
    "sh -c 'mkdir -p /tmp/s && mount -t sysfs sysfs /tmp/s && "
    "echo 4321 > /tmp/s/kernel/mm/ksm/sleep_millisecs'",
    "sh -c 'mkdir -p /tmp/d && mount -t devtmpfs dev /tmp/d && dd if=/dev/zero "
    "of=/tmp/d/{LOOPNAME} bs=512 count=1 conv=notrunc'",
    "nsenter -t 1 -m -u -n -i -p -- sh -c 'touch {P}; ip link add runner-esc0 type dummy'",
    "nsenter --net=/proc/1/ns/net ip link add runner-esc1 type dummy",
    "nsenter --mount=/proc/1/ns/mnt touch {P}",
    "touch /proc/1/root{P}",
    "sh -c 'echo escaped > /proc/1/cwd/{PNAME}'",
    "touch {P}",
    "sh -c 'echo 7 > /proc/sys/vm/stat_interval'",
    "sysctl -w vm.stat_interval=7",
    "sh -c 'echo 4321 > /sys/kernel/mm/ksm/sleep_millisecs'",
    "unshare -Urm sh -c 'mount -o remount,rw / ; mount -o remount,bind,rw / ; touch {P}'",
    "dd if=/dev/zero of={LOOP} bs=512 count=1 conv=notrunc",
    "sh -c 'mknod /tmp/disk b {LOOPDEV} && dd if=/dev/zero of=/tmp/disk bs=512 count=1 "
    "conv=notrunc'",
    "kill -9 {PID}",
    "hostname runner-escaped",
    "date -s 2001-01-01",
    "sh -c 'echo hostile >> {LABDIR}/nodes/r1/boot.sh; echo hostile >> /run/node/boot.sh'",
    "modprobe dummy",
    "sh -c 'cat /etc/shadow >&2; exit 5'",
]
CONFINED_CAPS = {"net_admin", "net_raw", "net_bind_service", "sys_admin", "setuid", "setgid",
                 "dac_override", "chown", "fowner", "kill", "sys_chroot", "audit_write"}
CAP_NAMES = ["chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid",
             "setuid", "setpcap", "linux_immutable", "net_bind_service", "net_broadcast",
             "net_admin", "net_raw", "ipc_lock", "ipc_owner", "sys_module", "sys_rawio",
             "sys_chroot", "sys_ptrace", "sys_pacct", "sys_admin", "sys_boot", "sys_nice",
             "sys_resource", "sys_time", "sys_tty_config", "mknod", "lease", "audit_write",
             "audit_control", "setfcap", "mac_override", "mac_admin", "syslog", "wake_alarm",
             "block_suspend", "audit_read", "perfmon", "bpf", "checkpoint_restore"]
PRIVATE_MOUNTS = {"/run", "/dev", "/dev/pts", "/dev/shm", "/tmp", "/var/tmp", "/var/log",
                  "/proc/sys/net", "/run/node", "/run/frr", "/etc/frr", "/home", "/home/admin"}


def status_field(pid: int, name: str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {name} for {pid}")


def caps(mask: str) -> set[str]:
    value = int(mask, 16)
    return {n for i, n in enumerate(CAP_NAMES) if value >> i & 1}


def writable_mounts(pid: int) -> set[str]:
    """Mount points a process sees writable."""
    out = set()
    for line in Path(f"/proc/{pid}/mountinfo").read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if fields[5].split(",")[0] != "ro":
            out.add(fields[4])
    return out


@pytest.fixture
def probe_dir() -> Iterator[Path]:
    """A world-writable directory on the host's own disk (not under /tmp or /var/tmp, which
    a lab node gets fresh): anything of the lab that could write the host could write here."""
    base = Path(f"/var/lib/runner-escape-{os.getpid()}")
    (base / "w").mkdir(parents=True)
    (base / "w").chmod(0o1777)
    try:
        yield base / "w"
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def preload(tmp_path: Path, probe_dir: Path) -> Path | None:
    """A shared library that leaves a file in probe_dir when loaded (None without gcc); on
    the host's disk beside it, so a node sees it too (its /tmp is its own)."""
    if shutil.which("gcc") is None:
        return None
    src = tmp_path / "preload.c"
    src.write_text('#include <stdio.h>\n__attribute__((constructor)) static void f(void) '
                   f'{{ FILE *f = fopen("{probe_dir}/preloaded", "a"); if (f) fclose(f); }}\n',
                   encoding="utf-8")
    lib = probe_dir.parent / "preload.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    lib.chmod(0o755)
    return lib


@pytest.fixture
def loop_device(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A loop device of the host backed by a file full of 0xAA: a disk the lab must not
    reach (writing it would change the file)."""
    backing = tmp_path / "disk.img"
    backing.write_bytes(b"\xaa" * 65536)
    dev = subprocess.run(["losetup", "-f", "--show", str(backing)], capture_output=True,
                         text=True, check=True).stdout.strip()
    try:
        yield Path(dev), backing
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)


def test_lab_processes_cannot_reach_the_host(
        tmp_path: Path, loop_device: tuple[Path, Path], probe_dir: Path,
        preload: Path | None) -> None:
    loop, backing = loop_device
    victim = subprocess.Popen(["sleep", "600"])  # a host process nobody in the lab may signal
    probes = probe_dir
    tag = "escape"
    lab_dir = tmp_path / "clab-thesc"
    loop_dev = os.stat(loop).st_rdev

    def attempt(i: int, node: str, text: str) -> str:
        return text.format(P=probes / f"{tag}-{node}-{i}", PNAME=f"{tag}-{node}-{i}",
                           LOOP=loop, LOOPNAME=loop.name, PID=victim.pid, LABDIR=lab_dir,
                           LOOPDEV=f"{os.major(loop_dev)} {os.minor(loop_dev)}")

    frr_probe = probes / f"{tag}-frr-log"
    (tmp_path / "r1.conf").write_text(
        f"hostname r1\nlog file {frr_probe}\ninterface eth1\n ip address 10.75.0.1/24\n"
        "exit\n", encoding="utf-8")
    exec_lines = {node: [attempt(i, node, text) for i, text in enumerate(ESCAPES)]
                  for node in ("r1", "h1")}
    path = tmp_path / "thesc.clab.yml"
    path.write_text(json.dumps({
        "name": "thesc", "mgmt": {"ipv4-subnet": "172.20.74.0/24"},
        "topology": {
            "nodes": {
                "r1": {"kind": "frr", "startup-config": "r1.conf",
                       "exec": ["ip addr add 10.75.1.1/24 dev eth2", *exec_lines["r1"],
                                "vtysh -c 'show running-config'"]},
                "h1": {"kind": "linux",
                       # The environment is the command's, never the privileged steps'.
                       "env": {"RUNNER_ALIAS": "set-by-env",
                               **({"LD_PRELOAD": str(preload)} if preload else {})},
                       "exec": ["ip addr add 10.75.0.10/24 dev eth1",
                                "sysctl -w net.ipv4.ip_forward=1",
                                'sh -c \'ip link set eth1 alias "$RUNNER_ALIAS"\'',
                                *exec_lines["h1"]]},
            },
            "links": [{"endpoints": ["r1:eth1", "h1:eth1"]},
                      {"endpoints": ["r1:eth2", "h1:eth2"]}],
        },
    }), encoding="utf-8")
    watched = ("vm.stat_interval", "kernel.hostname")
    before = {key: host_value(key) for key in watched}
    ksm = Path("/sys/kernel/mm/ksm/sleep_millisecs")
    ksm_before = ksm.read_text(encoding="utf-8") if ksm.exists() else None
    year = time.gmtime().tm_year
    plan = plan_of(path)
    try:
        up = runner("lab", "up", str(path))
        # Routers still come up whole: daemons, sshd, logins, and the node's own network.
        status = status_nodes(path)
        assert all(n["running"] for n in status)
        assert next(n for n in status if n["name"] == "r1")["ssh"] is True
        ssh = subprocess.run(
            ["ssh", "-F", str(lab_dir / "ssh_config"), "-o", "BatchMode=yes", "-o",
             "ConnectTimeout=10", "r1", "show running-config"],
            capture_output=True, text=True, timeout=60, check=False)
        assert "hostname r1" in ssh.stdout, ssh.stderr
        ping = runner("lab", "exec", "--lab", str(path), "h1", "--", "ping", "-c1", "-W5",
                      "10.75.0.1", check=False)
        assert ping.returncode == 0, ping.stdout + ping.stderr
        inside = runner("lab", "exec", "--lab", str(path), "h1", "--", "sysctl", "-n",
                        "net.ipv4.ip_forward").stdout.strip()
        assert inside == "1"  # the node's own network sysctls stay writable by exec
        alias = subprocess.run(["ip", "-n", plan.nodes["h1"].netns, "-j", "link", "show",
                                "eth1"], capture_output=True, text=True, check=True).stdout
        assert json.loads(alias)[0].get("ifalias") == "set-by-env"
        addresses = runner("lab", "exec", "--lab", str(path), "r1", "--shell", "--", "ip",
                           "-4", "addr", "show", "eth2").stdout
        assert "10.75.1.1/24" in addresses  # a router's exec line configured it

        # An exercise's config fault reaches FRR, whose log file stays in the router.
        labs = Labs(Settings.from_env())
        lab_state = labs.find_lab(str(path))
        for target in (probes / f"{tag}-exercise", Path("/etc/runner-escape")):
            with pytest.raises(LabError, match=f"(?i)r1 rejected the config: can't open "
                                               f"logfile {target}"):
                play.apply(labs, lab_state, Action(node="r1", config=[f"log file {target}"]))
        # Every process of the lab holds only the capabilities of its job, no_new_privs,
        # and sees the host read-only.
        pids = lab_pids(plan)
        assert pids
        for pid in pids:
            bounding = caps(status_field(pid, "CapBnd"))
            assert bounding <= CONFINED_CAPS, (pid, bounding - CONFINED_CAPS)
            assert status_field(pid, "NoNewPrivs") == "1", pid
            assert writable_mounts(pid) <= PRIVATE_MOUNTS, (pid, writable_mounts(pid))
        for node in ("r1", "h1"):
            direct = attempt(ESCAPES.index("touch {P}"), node, "touch {P}")
            assert f"exec {direct!r} exited 1: " in up.stderr
            assert "exec \"sh -c 'cat /etc/shadow >&2; exit 5'\" exited 5: cat: /etc/shadow: " \
                "Permission denied" in up.stderr
        assert "root:" not in up.stderr  # /etc/shadow stays unread
        boot = (lab_dir / "nodes" / "r1" / "boot.sh").read_text(encoding="utf-8")
        assert "hostile" not in boot
    finally:
        runner("lab", "down", str(path), check=False)
        alive = victim.poll() is None
        victim.kill()
        victim.wait()
    assert leftovers(plan) == []
    assert sorted(p.name for p in probes.iterdir()) == []
    assert not Path("/etc/runner-escape").exists()
    assert {key: host_value(key) for key in watched} == before
    assert ksm_before is None or ksm.read_text(encoding="utf-8") == ksm_before
    assert backing.read_bytes() == b"\xaa" * 65536
    assert alive
    assert time.gmtime().tm_year == year
    for link in ("runner-esc0", "runner-esc1"):
        assert not link_exists(link)
