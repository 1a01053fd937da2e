"""Hostile or careless topologies: files outside the lab, special files, host-global sysctls,
unusable management subnets, names that are not hostnames, untrusted lab state."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner.errors import LabError, TopologyError
from runner.lab import confine, hostcheck, labfiles, rules, state
from runner.lab.kinds.frr import boot as frr_boot
from runner.lab.kinds.frr import daemons_for
from runner.lab.plan import make_plan
from runner.lab.topology import FileAccess, load_topology

BAD = Path(__file__).parent / "bad_topologies"
ALLOW = FileAccess(allow_outside=True)


def lab_with(tmp_path: Path, node: str, extra: str = "") -> Path:
    """A topology in tmp_path/lab with one router whose fields are `node`."""
    lab = tmp_path / "lab"
    lab.mkdir(exist_ok=True)
    path = lab / "t.clab.yml"
    path.write_text(f"name: t\ntopology:\n  nodes:\n    r1:\n      kind: frr\n      {node}\n"
                    f"{extra}", encoding="utf-8")
    return path


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A regular file beside the lab's directory, not under it."""
    path = tmp_path / "elsewhere" / "r1.conf"
    path.parent.mkdir()
    path.write_text("hostname r1\nrouter ospf\n", encoding="utf-8")
    return path


# ---- files a topology reads -----------------------------------------------------------------


def test_file_outside_is_refused_and_names_the_flag(tmp_path: Path, outside: Path) -> None:
    path = lab_with(tmp_path, f"startup-config: {outside}")
    with pytest.raises(TopologyError) as info:
        load_topology(path)
    assert str(info.value).startswith(f"{path}:6: topology.nodes.r1.startup-config: ")
    assert "outside the topology's directory" in str(info.value)
    assert "--allow-outside-files" in str(info.value)


def test_flag_allows_a_regular_file_outside(tmp_path: Path, outside: Path) -> None:
    node = load_topology(lab_with(tmp_path, f"startup-config: {outside}"), files=ALLOW).nodes["r1"]
    assert node.startup_config == "hostname r1\nrouter ospf\n"
    bind = load_topology(lab_with(tmp_path, f"binds: ['{outside}:/etc/frr/frr.conf']"),
                         files=ALLOW).nodes["r1"].binds[0]
    assert bind.text == "hostname r1\nrouter ospf\n" and bind.source == outside


@pytest.mark.parametrize("special", ["/dev/zero", "/dev/null", "/dev/urandom"])
def test_devices_are_refused_even_with_the_flag(tmp_path: Path, special: str) -> None:
    for field in (f"startup-config: {special}", f"binds: ['{special}:/etc/frr/frr.conf']"):
        with pytest.raises(TopologyError, match=r"is a character device .* expected a regular"):
            load_topology(lab_with(tmp_path, field), files=ALLOW)


def test_symlink_out_of_the_directory_counts_as_outside(tmp_path: Path) -> None:
    path = lab_with(tmp_path, "startup-config: r1.conf")
    (path.parent / "r1.conf").symlink_to("/etc/shadow")  # made here, never committed
    with pytest.raises(TopologyError, match=r"'r1.conf' \(resolves to /etc/shadow\) is outside"):
        load_topology(path)
    (path.parent / "r1.conf").unlink()
    (path.parent / "r1.conf").symlink_to("/dev/zero")
    with pytest.raises(TopologyError, match="is a character device"):
        load_topology(path, files=ALLOW)


def test_symlink_inside_the_directory_is_fine(tmp_path: Path) -> None:
    path = lab_with(tmp_path, "startup-config: r1.conf")
    (path.parent / "configs").mkdir()
    (path.parent / "configs" / "real.conf").write_text("hostname r1\n", encoding="utf-8")
    (path.parent / "r1.conf").symlink_to("configs/real.conf")
    assert load_topology(path).nodes["r1"].startup_config == "hostname r1\n"


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    path = lab_with(tmp_path, "startup-config: r1.conf")
    os.mkfifo(path.parent / "r1.conf")  # opening it would wait for a writer forever
    with pytest.raises(TopologyError, match=r"'r1\.conf' is a FIFO"):
        load_topology(path, files=ALLOW)


def test_size_is_capped(tmp_path: Path) -> None:
    path = lab_with(tmp_path, "binds: [big:/etc/frr/frr.conf]")
    with open(path.parent / "big", "wb") as fh:
        fh.truncate(labfiles.MAX_BYTES + 1)  # sparse: no disk used
    with pytest.raises(TopologyError, match=r"binds\[0\]: bind source 'big' is larger than 1 MiB"):
        load_topology(path)
    with open(path.parent / "big", "wb") as fh:
        fh.write(b"!\n" * (labfiles.MAX_BYTES // 2))
    assert load_topology(path).nodes["r1"].binds[0].text is not None  # exactly 1 MiB is read


def test_binary_file_is_refused(tmp_path: Path) -> None:
    path = lab_with(tmp_path, "startup-config: r1.conf")
    (path.parent / "r1.conf").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(TopologyError, match=r"'r1\.conf' is not UTF-8 text"):
        load_topology(path)


def test_topology_file_itself_must_be_a_regular_file(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match="must be a regular file"):
        load_topology(Path("/dev/zero"))
    os.mkfifo(tmp_path / "x.clab.yml")
    with pytest.raises(TopologyError, match="must be a regular file"):
        load_topology(tmp_path / "x.clab.yml")


def test_files_are_read_once_at_load(tmp_path: Path) -> None:
    path = lab_with(tmp_path, "binds: [daemons:/etc/frr/daemons]")
    (path.parent / "daemons").write_text("ospfd=yes\n", encoding="utf-8")
    node = load_topology(path).nodes["r1"]
    (path.parent / "daemons").unlink()
    (path.parent / "daemons").symlink_to("/etc/shadow")  # swapped after the check
    assert daemons_for(node) == ["ospfd"]  # what was checked is what is used


def test_status_and_down_open_no_files(tmp_path: Path) -> None:
    path = lab_with(tmp_path, "startup-config: /dev/zero",
                    "      binds: ['/etc/shadow:/etc/frr/daemons', '/root:/mnt']\n")
    topo = load_topology(path, files=FileAccess(read=False))
    node = topo.nodes["r1"]
    assert node.startup_config is None and node.binds[0].text is None
    assert make_plan(topo).nodes["r1"].netns == "clab-t-r1"


def test_ignored_binds_are_warned_about(tmp_path: Path) -> None:
    (tmp_path / "lab").mkdir()
    (tmp_path / "lab" / "data").mkdir()
    topo = load_topology(lab_with(tmp_path, "binds: ['data:/data']"))
    assert any("bind to /data is ignored by the namespace backend" in w for w in topo.warnings)


def test_up_prints_warnings(tmp_path: Path) -> None:
    (tmp_path / "lab").mkdir()
    path = lab_with(tmp_path, "memory: 1Gb")
    proc = subprocess.run([sys.executable, "-m", "runner", "lab", "up", "--backend",
                           "containerlab", str(path)], capture_output=True, text=True,
                          check=False, cwd=tmp_path)
    assert f"{path}:6: topology.nodes.r1.memory is ignored" in proc.stderr


# ---- the CLI: exit 2, one line, and the flag ------------------------------------------------

HOSTILE = ["startup_shadow", "startup_dev_zero", "startup_parent", "bind_shadow",
           "bind_target_escape", "sysctl_vm", "subnet_loopback", "subnet_simulator",
           "subnet_half", "subnet_multicast", "subnet_link_local", "node_dots"]


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runner", "lab", "up", *args],
                          capture_output=True, text=True, check=False, cwd=cwd)


def test_hostile_corpus_covers_the_issue_list() -> None:
    names = {p.name.removesuffix(".clab.yml") for p in BAD.glob("*.clab.yml")}
    assert set(HOSTILE) <= names


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_input_exit_2_one_line(name: str, tmp_path: Path) -> None:
    path = BAD / f"{name}.clab.yml"
    want = path.read_text(encoding="utf-8").splitlines()[0].split(": ", 1)[1]
    proc = cli(str(path), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: {path}:{want.split(':')[0].removeprefix('line ')}: ")
    assert not list(BAD.glob("clab-*"))


def test_cli_flag_lets_the_file_through_but_not_a_device(tmp_path: Path, outside: Path) -> None:
    path = lab_with(tmp_path, f"startup-config: {outside}")
    assert "outside the topology's directory" in cli(str(path), cwd=tmp_path).stderr
    # With the flag the file is accepted; the containerlab backend then says it cannot run.
    proc = cli("--allow-outside-files", "--backend", "containerlab", str(path), cwd=tmp_path)
    assert proc.returncode == 1 and "containerlab" in proc.stderr, proc.stderr
    path = lab_with(tmp_path, "startup-config: /dev/zero")
    proc = cli("--allow-outside-files", str(path), cwd=tmp_path)
    assert proc.returncode == 2 and "is a character device" in proc.stderr


# ---- sysctls ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "ok"), [
    ("net.ipv4.ip_forward", True), ("net.core.somaxconn", True),
    ("net.ipv6.conf.all.forwarding", True), ("net.ipv4.conf.eth1.rp_filter", True),
    ("net.ipv4.neigh.default.gc_thresh1", True), ("net.mpls.conf.eth1.input", True),
    ("vm.stat_interval", False), ("kernel.hostname", False), ("fs.file-max", False),
    ("user.max_user_namespaces", False), ("network.x", False), ("net", False),
    ("net/ipv4/ip_forward", False), ("net.ipv4..ip_forward", False),
    ("net.ipv4.conf.eth2.rp_filter", False), ("net.ipv4.ip_forward=1 vm.x", False),
])
def test_sysctl_keys(key: str, ok: bool) -> None:
    assert (rules.sysctl_problem(key, "1", ["eth1"]) is None) == ok


def test_sysctl_probe_path_uses_default_for_interfaces() -> None:
    assert rules.sysctl_probe_path("net.ipv4.conf.eth1.rp_filter") == \
        "/proc/sys/net/ipv4/conf/default/rp_filter"
    assert rules.sysctl_probe_path("net.ipv6.conf.all.forwarding") == \
        "/proc/sys/net/ipv6/conf/all/forwarding"
    assert rules.sysctl_probe_path("net.core.somaxconn") == "/proc/sys/net/core/somaxconn"


def test_sysctl_error_names_the_level_that_wrote_the_key(tmp_path: Path) -> None:
    path = lab_with(tmp_path, "sysctls: {net.ipv4.ip_forward: '0'}", """\
  defaults:
    sysctls:
      net.core.somaxconn: 100
      vm.swappiness: 1
""")
    with pytest.raises(TopologyError) as info:
        load_topology(path)
    assert str(info.value).startswith(f"{path}:10: topology.defaults.sysctls.vm.swappiness: "
                                      "node r1: sysctl vm.swappiness is not per network")
    path.write_text(path.read_text(encoding="utf-8").replace("      vm.swappiness: 1\n", ""),
                    encoding="utf-8")
    node = load_topology(path).nodes["r1"]
    assert node.sysctls == {"net.core.somaxconn": "100", "net.ipv4.ip_forward": "0"}
    assert node.sysctl_locs["net.ipv4.ip_forward"][:3] == ("topology", "nodes", "r1")
    assert node.sysctl_locs["net.core.somaxconn"][:2] == ("topology", "defaults")


# ---- management subnets -----------------------------------------------------------------------


@pytest.mark.parametrize(("subnet", "ok"), [
    ("172.20.20.0/24", True), ("10.0.0.0/8", True), ("192.168.77.0/29", True),
    ("172.16.0.0/12", True), ("172.32.0.0/24", False), ("100.64.0.0/10", False),
    ("127.100.0.0/24", False), ("169.254.1.0/24", False), ("224.0.0.0/24", False),
    ("0.0.0.0/1", False), ("0.0.0.0/24", False), ("8.8.8.0/24", False),
    ("192.168.0.0/15", False),
])
def test_management_subnets(subnet: str, ok: bool) -> None:
    assert (rules.subnet_problem(ipaddress.IPv4Network(subnet)) is None) == ok


ROUTES = json.loads("""[
 {"dst": "default", "gateway": "192.0.2.1", "dev": "eth0"},
 {"dst": "0.0.0.0/1", "gateway": "10.8.0.1", "dev": "tun0"},
 {"dst": "128.0.0.0/1", "gateway": "10.8.0.1", "dev": "tun0"},
 {"dst": "10.8.0.0/24", "dev": "tun0", "protocol": "kernel"},
 {"dst": "172.20.31.0/24", "dev": "rbaaaaaaaaaaa", "protocol": "kernel"},
 {"type": "local", "dst": "192.168.50.7", "dev": "lo", "table": "local"},
 {"type": "local", "dst": "127.0.0.0/8", "dev": "lo", "table": "local"},
 {"type": "broadcast", "dst": "172.20.45.255", "dev": "rbbbbbbbbbbbb", "table": "local"}
]""")


@pytest.mark.parametrize(("subnet", "own", "conflict"), [
    ("172.20.20.0/24", None, None),
    ("172.20.31.0/24", None, "route 172.20.31.0/24 on rbaaaaaaaaaaa"),
    ("172.20.31.128/25", None, "route 172.20.31.0/24 on rbaaaaaaaaaaa"),
    ("172.20.31.0/24", "rbaaaaaaaaaaa", None),  # the lab's own bridge, when reconfigured
    ("10.0.0.0/12", None, "route 10.8.0.0/24 on tun0"),
    ("192.168.50.0/24", None, "address 192.168.50.7/32 on lo (table local)"),
    ("172.20.45.0/24", None, None),
])
def test_route_conflicts(subnet: str, own: str | None, conflict: str | None) -> None:
    assert hostcheck.route_conflict(ipaddress.IPv4Network(subnet), ROUTES, own) == conflict


# ---- node names -------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "ok"), [
    ("r1", True), ("R1", True), ("1r", True), ("edge-1", True), ("r1.site", True),
    ("a" * 63, True), ("a" * 64, False), ("r..", False), (".r", False), ("r.", False),
    ("r_1", False), ("-r", False), ("r-", False), ("r1.-x", False), ("r|1", False),
    ("r 1", False), ("", False),
])
def test_node_names_are_hostnames(name: str, ok: bool) -> None:
    assert (rules.hostname_problem(name) is None) == ok


# ---- the lab's own state ----------------------------------------------------------------------


def saved_state(tmp_path: Path) -> Path:
    topo = load_topology(lab_with(tmp_path, "mgmt-ipv4: 172.20.20.5"))
    state.LabIndex(tmp_path / "index").save(state.LabState("namespace", make_plan(topo), "up"))
    return topo.lab_dir


def test_state_is_written_for_its_owner_only(tmp_path: Path) -> None:
    lab_dir = saved_state(tmp_path)
    assert lab_dir.stat().st_mode & 0o777 == 0o700
    assert state.load(lab_dir) is not None


def test_state_others_could_write_is_not_trusted(tmp_path: Path) -> None:
    lab_dir = saved_state(tmp_path)
    lab_dir.chmod(0o777)
    with pytest.raises(LabError, match="writable by others"):
        state.load(lab_dir)
    with pytest.raises(LabError, match="refusing to use"):
        state.prepare_dir(lab_dir)


def test_state_of_another_directory_is_not_trusted(tmp_path: Path) -> None:
    lab_dir = saved_state(tmp_path)
    data = json.loads((lab_dir / state.STATE_FILE).read_text(encoding="utf-8"))
    data["plan"]["lab_dir"] = "/home"
    (lab_dir / state.STATE_FILE).write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(LabError, match="it is the state of /home"):
        state.load(lab_dir)


def test_lab_dir_may_not_be_a_symlink(tmp_path: Path) -> None:
    lab = lab_with(tmp_path, "mgmt-ipv4: 172.20.20.5").parent
    (tmp_path / "target").mkdir(mode=0o700)
    (lab / "clab-t").symlink_to(tmp_path / "target")
    with pytest.raises(LabError, match="is a symbolic link"):
        state.prepare_dir(lab / "clab-t")


# ---- what a node's processes are started with -------------------------------------------------

DAEMONS_REFUSED = {
    "shell": ('zebra_options="-A 127.0.0.1; touch /var/tmp/x"', "-A '127.0.0.1;' is not an IP"),
    "substitution": ('bgpd_options="-A $(id)"', "-A '$(id)' is not an IP address"),
    "vrf_netns": ('zebra_options="-A 127.0.0.1 -n"', "option '-n' is not allowed"),
    "log_file": ('ospfd_options="--log file:/var/tmp/x"', "option '--log' is not allowed"),
    "log_equals": ('ospfd_options="--log=file:/var/tmp/x"', "option '--log' is not allowed"),
    "config_file": ('bgpd_options="-f /etc/shadow"', "option '-f' is not allowed"),
    "pid_file": ('zebra_options="-i /etc/passwd"', "option '-i' is not allowed"),
    "user": ('bgpd_options="-u root -g root"', "option '-u' is not allowed"),
    "skip_runas": ('bgpd_options="-S"', "option '-S' is not allowed"),
    "module_path": ('zebra_options="-M /tmp/evil.so"', "-M '/tmp/evil.so' is not a module"),
    "module_dir": ('zebra_options="--moduledir /tmp"', "option '--moduledir' is not allowed"),
    "vty_socket": ('zebra_options="--vty_socket /tmp"', "option '--vty_socket' is not allowed"),
    "pathspace": ('zebra_options="-N ../../etc"', "option '-N' is not allowed"),
    "quote": ('zebra_options="-A \'127.0.0.1"', "No closing quotation"),
    "profile": ('frr_profile="traditional;id"', "is not one of traditional, datacenter"),
}


@pytest.mark.parametrize("case", DAEMONS_REFUSED.values(), ids=DAEMONS_REFUSED.keys())
def test_daemons_file_options_are_an_allow_list(tmp_path: Path, case: tuple[str, str]) -> None:
    line, problem = case
    path = lab_with(tmp_path, "binds: ['daemons:/etc/frr/daemons']")
    (path.parent / "daemons").write_text(f"bgpd=yes\n{line}\n", encoding="utf-8")
    with pytest.raises(TopologyError) as info:
        load_topology(path)
    message = str(info.value)
    assert message.startswith(f"{path}:6: topology.nodes.r1.binds[0]: daemons file 'daemons': "
                              "line 2: ")
    assert problem in message, message


def test_allowed_daemon_options_become_quoted_arguments(tmp_path: Path) -> None:
    daemons = tmp_path / "daemons"
    daemons.write_text('zebra_options="  -A 127.0.0.1 -s 90000000"\nbgpd_options="-A127.0.0.1 '
                       '-M rpki -p 1179 --limit-fds=4096"\nfrr_profile="datacenter"\n',
                       encoding="utf-8")
    argv = frr_boot.daemon_argv(daemons, "bgpd")
    assert argv[argv.index("/usr/lib/frr/bgpd"):] == [
        "/usr/lib/frr/bgpd", "-d", "-F", "datacenter", "-A", "127.0.0.1", "-M", "rpki", "-p",
        "1179", "--limit-fds", "4096"]
    assert argv[:argv.index("/usr/lib/frr/bgpd")] == confine.setpriv(confine.FRR_CAPS)
    # A daemons file changed inside the router after boot is checked again at a restart.
    daemons.write_text('zebra_options="-A 127.0.0.1 -n"\n', encoding="utf-8")
    with pytest.raises(LabError, match="option '-n' is not allowed"):
        frr_boot.daemon_argv(daemons, "zebra")


@pytest.mark.parametrize("name", ["1ABC", "A-B", "A B", "LD PRELOAD", ""])
def test_exec_environment_names_are_names(tmp_path: Path, name: str) -> None:
    path = lab_with(tmp_path, f"env: {{'{name}': x}}\n      exec: [ip link]")
    with pytest.raises(TopologyError, match="is not a name such as HTTP_PROXY"):
        load_topology(path)


def test_no_user_namespaces_means_no_lab(tmp_path: Path) -> None:
    knob = tmp_path / "max_user_namespaces"
    knob.write_text("0\n", encoding="utf-8")
    assert "user namespaces are disabled" in (confine.unavailable(str(knob)) or "")
    knob.write_text("15000\n", encoding="utf-8")
    assert confine.unavailable(str(knob)) is None


def test_capability_sets_keep_only_what_each_process_needs() -> None:
    dangerous = {"sys_module", "sys_rawio", "sys_ptrace", "sys_boot", "sys_time", "mknod",
                 "setpcap", "setfcap", "bpf", "perfmon", "syslog", "dac_read_search",
                 "linux_immutable", "sys_resource", "mac_admin", "mac_override"}
    for caps in (confine.FRR_CAPS, confine.SSHD_CAPS, confine.EXEC_CAPS):
        assert not dangerous & set(caps)
    assert "sys_admin" not in confine.SSHD_CAPS + confine.EXEC_CAPS
    assert "sys_chroot" not in confine.FRR_CAPS + confine.EXEC_CAPS  # no setns into a mount ns
    argv = confine.setpriv(confine.EXEC_CAPS, uid=42000, gid=42000)
    assert "--no-new-privs" in argv and "--clear-groups" in argv
    assert "--ambient-caps=-all,+net_admin,+net_raw,+net_bind_service" in argv
    assert confine.mount_escape("/a b\\c") == "/a\\040b\\134c"
