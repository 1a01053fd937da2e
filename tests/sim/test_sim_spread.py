"""`runner lab sim` past one process's open-files limit: the fleet spread over several
simulator processes behind one command, one inventory and one state file; stopped as one,
a part that dies reported; what cannot be served refused before anything starts; running
out of descriptors named as such; a fleet seeded with configs (--configs) spread the same
way, each device served its own config by whichever process serves it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest
import yaml

from runner.lab.netns import wait_for
from runner.lab.sim.limits import FDS_PER_DEVICE, MAX_PROCESSES, RESERVE
from tests.support.base import free_port
from tests.support.fleet import Fleet, FleetSpec, on_device, sim_process, start_fleet
from tests.support.jobs import run_job, write_job

SHOW_JOB = {"driver": "asyncssh", "concurrency": 300,
            "timeouts": {"connect": 60, "command": 30, "device": 120},
            "steps": [{"name": "version", "command": "show version", "parse": "textfsm"},
                      {"name": "config", "command": "show running-config"}]}
SPREAD = FleetSpec(300, "127.150.0.1", faults=("refuse=3",), extra=("--per-process", "100"))


def alive(pid: int) -> bool:
    """The process exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def lab_sim(tmp_path: Path, *args: str, prefix: tuple[str, ...] = (),
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, sys.executable, "-m", "runner", "lab", "sim", "--dir",
                           str(tmp_path / "sim"), "--port", str(free_port()), *args],
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def spread(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with start_fleet(tmp_path_factory.mktemp("spread"), SPREAD) as fleet:
        yield fleet


def test_a_spread_fleet_is_one_fleet_every_device_answering(spread: Fleet,
                                                            tmp_path: Path) -> None:
    state = spread.sim.state
    parts = state["processes"]
    assert [(p["number"], p["devices"], p["first"], p["last"]) for p in parts] == [
        (1, 100, "sim0001", "sim0100"), (2, 100, "sim0101", "sim0200"),
        (3, 100, "sim0201", "sim0300")]
    assert spread.sim.proc is not None and state["pid"] == spread.sim.proc.pid
    pids = {p["pid"] for p in parts}
    assert len(pids) == 3 and state["pid"] not in pids
    for pid in pids:  # every part is the command's own child, in its process group
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
        assert (int(stat[1]), int(stat[2])) == (state["pid"], os.getpgid(state["pid"]))
    # one inventory and one known_hosts for every device, the usual layout
    assert spread.hosts == [f"sim{i:04d}" for i in range(1, 301)]
    hosts = yaml.safe_load((spread.inventory / "hosts.yaml").read_text(encoding="utf-8"))
    assert hosts["sim0255"]["hostname"] == "127.150.1.1"  # .255 and .0 skipped, as ever
    assert len({h["port"] for h in hosts.values()}) == 1
    known = (spread.inventory.parent / "known_hosts").read_text(encoding="utf-8")
    assert len(known.splitlines()) == 300
    assert len(spread.refusing) == 3 and state["devices"] == 300

    job = write_job(tmp_path, "show", **SHOW_JOB)
    result = run_job(tmp_path, job, spread.inventory, expect=1)  # the 3 refusing logins
    devices = result["devices"]
    assert [d["host"] for d in devices] == spread.hosts
    for device in devices:
        host = device["host"]
        if host in spread.refusing:
            assert (device["status"], device["error_class"]) == ("auth_failed", "AuthFailed")
            continue
        assert device["status"] == "ok", device
        version = device["steps"][0]["parsed"][0]
        assert version["hostname"] == host  # each device served by its own part, no other
        assert version["serial"] == [f"9SIM{int(host[3:]):08d}"]
    assert result["summary"]["ok"] == 297


@pytest.mark.parametrize("how", ["SIGTERM to the command", "SIGTERM to the process group",
                                 "Ctrl-C (SIGINT to the process group)"])
def test_a_stopped_command_stops_every_part(tmp_path: Path, how: str) -> None:
    with sim_process(tmp_path, FleetSpec(120, "127.151.0.1", extra=("--per-process", "40"),
                                         new_session=True)) as sim:
        pids = [p["pid"] for p in sim.state["processes"]]
        assert len(pids) == 3 and all(alive(pid) for pid in pids)
        assert sim.proc is not None
        if how == "SIGTERM to the command":
            sim.proc.terminate()
        else:
            os.killpg(sim.proc.pid, signal.SIGINT if "SIGINT" in how else signal.SIGTERM)
        assert sim.proc.wait(60) == 0, sim.errors()  # stopped as asked: no part called dead
    assert not any(alive(pid) for pid in pids)
    assert not (tmp_path / "sim" / "sim.json").exists()
    assert "Traceback" not in sim.errors() and "simulator process" not in sim.errors()


def test_the_soft_limit_is_raised_to_the_hard_one_first(tmp_path: Path) -> None:
    # 300 devices need ~370 descriptors: past the soft limit, within the hard one.
    with start_fleet(tmp_path, FleetSpec(300, "127.158.0.1", open_files=(200, 1000))) as fleet:
        sim = fleet.sim
        assert sim.state["open_files"] == 1000
        assert len(sim.state["processes"]) == 1  # one process, as any small fleet
        assert _answers(sim.inventory, "sim0002")
        assert "9SIM00000300" in on_device(sim.inventory, "sim0300", "show version")


@pytest.mark.parametrize("kill", ["process group", "command alone"])
def test_a_killed_command_leaves_no_part_behind(tmp_path: Path, kill: str) -> None:
    # SIGKILL gives the command no chance to stop its parts: killing its process group
    # ends them with it; killing it alone closes their pipe from it, and they stop.
    with sim_process(tmp_path, FleetSpec(120, "127.152.0.1", extra=("--per-process", "40"),
                                         new_session=True)) as sim:
        pids = [p["pid"] for p in sim.state["processes"]]
        assert sim.proc is not None
        if kill == "process group":
            os.killpg(sim.proc.pid, signal.SIGKILL)
        else:
            sim.proc.kill()
        sim.proc.wait(30)
    assert all(pid in group(sim.proc.pid) or not alive(pid) for pid in pids)
    wait_for(lambda: group(sim.proc.pid) == [], 30, "every part to end")


def test_a_part_that_dies_is_reported_and_the_fleet_stopped(tmp_path: Path) -> None:
    with sim_process(tmp_path, FleetSpec(120, "127.153.0.1",
                                         extra=("--per-process", "40"))) as sim:
        state = sim.state
        victim = state["processes"][1]
        others = [p["pid"] for p in state["processes"] if p is not victim]
        os.kill(victim["pid"], signal.SIGKILL)
        assert sim.proc is not None
        assert sim.proc.wait(60) == 1
    err = sim.errors()
    assert (f"simulator process 2 of 3 (sim0041..sim0080), pid {victim['pid']}, 40 devices, "
            f"was killed by SIGKILL: its devices no longer answer, so the whole fleet was "
            f"stopped") in err, err
    assert not any(alive(pid) for pid in others)
    assert not (tmp_path / "sim" / "sim.json").exists()


@pytest.mark.parametrize(("args", "limit", "expected"), [
    # more processes than any fleet needs
    (("--devices", "5000", "--per-process", "10"), None,
     f"--devices: 5000 at 10 per process needs 500 simulator processes; at most "
     f"{MAX_PROCESSES} are started (raise --per-process)"),
    # more per process than the open-files limit allows
    (("--devices", "300", "--per-process", "200"), 300,
     f"--per-process: 200: a process may hold 300 open files (RLIMIT_NOFILE), which serves "
     f"at most {(300 - RESERVE) // FDS_PER_DEVICE} devices per process"),
    # a limit too low for even one device
    (("--devices", "10"), RESERVE + 1,
     f"a process may hold {RESERVE + 1} open files (RLIMIT_NOFILE): too few to serve even "
     f"one simulated device"),
    # a limit that needs more processes than are started
    (("--devices", "100000"), 100,
     f"100000 at {(100 - RESERVE) // FDS_PER_DEVICE} per process needs "
     f"{-(-100000 // ((100 - RESERVE) // FDS_PER_DEVICE))} simulator processes"),
    # loopback runs out
    (("--devices", "300", "--address", "127.255.255.1"), None,
     "--address: 127.255.255.1: 300 devices run past 127.255.255.254 (the simulator stays "
     "on loopback; 254 fit from there)"),
    (("--devices", "3", "--address", "10.0.0.1"), None,
     "--address: 10.0.0.1: not a loopback address"),
])
def test_a_fleet_that_cannot_be_served_is_refused_before_anything_starts(
        tmp_path: Path, args: tuple[str, ...], limit: int | None, expected: str) -> None:
    prefix = ("prlimit", f"--nofile={limit}:{limit}", "--") if limit else ()
    proc = lab_sim(tmp_path, "--address", "127.154.0.1", *args, prefix=prefix)
    assert proc.returncode == 2, proc.stderr
    assert expected in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "sim").exists()  # nothing written, nothing started


def test_a_privileged_port_is_refused_for_a_user_who_cannot_bind_it(tmp_path: Path) -> None:
    start = int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text().strip())
    if start == 0:
        pytest.skip("every port is unprivileged on this machine")
    user = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
            "--inh-caps=-all") if os.geteuid() == 0 else ()
    proc = lab_sim(tmp_path, "--devices", "3", "--address", "127.154.0.1", "--port",
                   str(start - 1), prefix=user)
    assert proc.returncode == 2, proc.stderr
    assert f"--port: {start - 1}: ports below {start} need root here" in proc.stderr


def test_out_of_descriptors_while_listening_names_the_limit(tmp_path: Path) -> None:
    # A process that inherits open files has fewer left than its share assumes: the
    # command says which limit it hit, with how many devices, not "another simulator?".
    limit = 300
    per_process = (limit - RESERVE) // FDS_PER_DEVICE
    leaked = [os.open(os.devnull, os.O_RDONLY) for _ in range(200)]
    try:
        proc = subprocess.run(
            ["prlimit", f"--nofile={limit}:{limit}", "--", sys.executable, "-m", "runner",
             "lab", "sim", "--dir", str(tmp_path / "sim"), "--port", str(free_port()),
             "--address", "127.155.0.1", "--devices", str(per_process)],
            capture_output=True, text=True, timeout=60, check=False, pass_fds=leaked)
    finally:
        for fd in leaked:
            os.close(fd)
    assert proc.returncode == 1, proc.stderr
    assert "Too many open files: a process may hold 300 open files (RLIMIT_NOFILE) and this " \
        f"one was given {per_process} devices" in proc.stderr, proc.stderr
    assert "another simulator" not in proc.stderr and "Traceback" not in proc.stderr
    assert "cannot listen for sim0" in proc.stderr


def test_out_of_descriptors_while_serving_names_the_limit_and_recovers(
        tmp_path: Path) -> None:
    # More sessions at once than the share allows (a client opening many per device):
    # the simulator says so, names the limit, and serves again once they close.
    with start_fleet(tmp_path, FleetSpec(10, "127.156.0.1", open_files=150)) as fleet:
        sim = fleet.sim
        hosts = yaml.safe_load((sim.inventory / "hosts.yaml").read_text(encoding="utf-8"))
        target = (hosts["sim0001"]["hostname"], hosts["sim0001"]["port"])
        held: list[socket.socket] = []
        try:
            def exhausted() -> bool:
                for _ in range(20):
                    held.append(socket.create_connection(target, timeout=10))
                return "accepting a login" in sim.errors()

            wait_for(exhausted, 60, "the simulator to run out of descriptors")
            err = sim.errors()
            assert "runner lab sim: the simulator: Too many open files accepting a login: a " \
                "process may hold 150 open files (RLIMIT_NOFILE), and this process serves " \
                "10 devices (a listening socket each) with" in err, err
            assert "Traceback" not in err
        finally:
            for sock in held:
                sock.close()
        # the sessions gone, logins are accepted again
        wait_for(lambda: _answers(sim.inventory, "sim0002"), 60, "a login to succeed")


def _answers(inventory: Path, host: str) -> bool:
    try:
        return "9SIM00000002" in on_device(inventory, host, "show version")
    except (OSError, asyncssh.Error):
        return False


def test_a_part_that_cannot_listen_stops_the_start_saying_why(tmp_path: Path) -> None:
    # Something else already listens on sim0050's address and port (in the second part).
    port = free_port()
    with socket.socket() as squatter:
        squatter.bind(("127.157.0.50", port))
        squatter.listen()
        proc = subprocess.Popen(
            [sys.executable, "-m", "runner", "lab", "sim", "--dir", str(tmp_path / "sim"),
             "--devices", "120", "--per-process", "40", "--address", "127.157.0.1",
             "--port", str(port)], stderr=subprocess.PIPE, text=True,
            start_new_session=True)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert (f"runner lab sim: process 2 of 3 (sim0041..sim0080): cannot listen for sim0050 "
            f"on 127.157.0.50:{port}: Address already in use (another simulator or service "
            f"on the same --address/--port?)") in err, err
    assert "simulator process 2 of 3 (sim0041..sim0080), pid " in err
    assert "40 devices, exited with status 1 before it listened" in err
    assert "so the fleet was not started" in err and "Traceback" not in err
    assert not (tmp_path / "sim" / "sim.json").exists()
    assert group(proc.pid) == []  # none of its parts is left


SEEDED = ("core-a", "core-b", "dist1.dc1", "edge-1", "edge-2", "wan-9")  # sorted: files' order


def seeded_config(i: int, name: str) -> str:
    """A backup-like config of its own for device `name`, as IOS prints it."""
    return "\n".join(["!", f"hostname {name}", "!", "interface Loopback0",
                      f" description seeded {name}", f" ip address 10.9.0.{i} 255.255.255.255",
                      "!", f"ntp server 192.0.2.{i}", "!", f"snmp-server location rack-{i}",
                      "!", "end"])


@pytest.fixture
def configs(tmp_path: Path) -> Path:
    directory = tmp_path / "configs"
    directory.mkdir()
    for i, name in enumerate(SEEDED, 1):
        (directory / f"{name}.cfg").write_text(seeded_config(i, name), encoding="utf-8")
    return directory


def test_a_seeded_fleet_spread_over_processes_serves_each_device_its_own_config(
        tmp_path: Path, configs: Path) -> None:
    spec = FleetSpec(6, "127.159.0.1", extra=("--configs", str(configs), "--per-process", "2"))
    with start_fleet(tmp_path, spec) as fleet:
        state = fleet.sim.state
        # three processes of two devices each, named after the files, in their order
        assert [(p["number"], p["devices"], p["first"], p["last"])
                for p in state["processes"]] == [
            (1, 2, "core-a", "core-b"), (2, 2, "dist1.dc1", "edge-1"), (3, 2, "edge-2", "wan-9")]
        assert len({p["pid"] for p in state["processes"]}) == 3
        assert fleet.hosts == list(SEEDED) and state["faults"] == {}
        assert [fleet.entries[h]["hostname"] for h in SEEDED] == [
            f"127.159.0.{i}" for i in range(1, 7)]
        # over SSH as any client (host key checked): each device's running config is its file
        for i, name in enumerate(SEEDED, 1):
            served = fleet.run_on(name, "show running-config").rstrip()
            head, body = served.split("\n", 3)[:3], served.split("\n", 3)[3]
            assert head[0] == "Building configuration..." and body == seeded_config(i, name)
        # through runner: every device answers as itself, with its own config and serial
        job = write_job(tmp_path, "show", **SHOW_JOB)
        result = run_job(tmp_path, job, fleet.inventory, expect=0)
        assert [d["host"] for d in result["devices"]] == list(SEEDED)
        for i, device in enumerate(result["devices"], 1):
            name = device["host"]
            assert device["status"] == "ok", device
            version = device["steps"][0]["parsed"][0]
            assert version["hostname"] == name and version["serial"] == [f"9SIM{i:08d}"]
            output = device["steps"][1]["output"]
            assert f"ntp server 192.0.2.{i}\n" in output
            assert f" description seeded {name}\n" in output
            others = [f"seeded {other}\n" for other in SEEDED if other != name]
            assert not any(other in output for other in others)


@pytest.mark.parametrize(("args", "limit", "expected"), [
    (("--fault", "slow=1"), None,
     "--fault: faults are not injected into a seeded fleet"),
    (("--address", "127.255.255.253"), None,
     "--address: 127.255.255.253: 6 devices run past 127.255.255.254 (the simulator stays "
     "on loopback; 2 fit from there)"),
    (("--per-process", "200"), 300,
     f"--per-process: 200: a process may hold 300 open files (RLIMIT_NOFILE), which serves "
     f"at most {(300 - RESERVE) // FDS_PER_DEVICE} devices per process"),
])
def test_a_seeded_fleet_that_cannot_be_served_is_refused_before_anything_starts(
        tmp_path: Path, configs: Path, args: tuple[str, ...], limit: int | None,
        expected: str) -> None:
    prefix = ("prlimit", f"--nofile={limit}:{limit}", "--") if limit else ()
    proc = lab_sim(tmp_path, "--address", "127.154.0.1", "--configs", str(configs), *args,
                   prefix=prefix)
    assert proc.returncode == 2, proc.stderr
    assert expected in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "sim").exists()  # nothing written, nothing started


def test_a_configs_directory_without_configs_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not a config\n", encoding="utf-8")
    proc = lab_sim(tmp_path, "--address", "127.154.0.1", "--configs", str(empty))
    assert proc.returncode == 2, proc.stderr
    assert f"--configs: {empty}: no <name>.cfg files in it" in proc.stderr, proc.stderr
    assert not (tmp_path / "sim").exists()


def group(pgid: int) -> list[int]:
    """The live processes of a process group."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[2]) == pgid and stat[0] != "Z":
                members.append(int(entry.name))
    return members
