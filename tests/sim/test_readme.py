"""The README's and docs/tutorial.md's own command lines, run for real where they apply
without the FRR lab: the simulator (`lab sim`), runs on simulated devices, history, show,
schedule list/run, serve (until SIGTERM), validate, schema, tokens, db. Paths, the device
count, loopback addresses and run ids are substituted; nothing else. What runs where else
is listed in tests/unit/test_readme.py (COVERAGE)."""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from runner.lab.netns import wait_for
from runner.lab.sim.process import stop_process
from tests.support.base import ROOT, free_port
from tests.support.readme_commands import Command, check, documented

# Lines of these commands are run here; `run` only for jobs that fit simulated devices
# (facts, bgp-descriptions and ospf-area read FRR's output: tests/lab).
RUN_HERE = {("lab", "sim"), ("run",), ("history",), ("show",), ("schedule", "list"),
            ("schedule", "run"), ("schedule", "occurrences"), ("serve",), ("validate",),
            ("workflow", "list"),
            ("schema",), ("token", "create"), ("token", "list"), ("token", "revoke"),
            ("db", "current"), ("db", "upgrade")}
SIM_JOBS = {"jobs/backup.yml", "bench/jobs/show.yml"}
# celery, notification hooks, metrics, webhooks and syslog: tested elsewhere (COVERAGE)
NEEDS_OTHER_PARTS = ("--engine", "--notify", "--metrics-port", "--listen", "--syslog")
ADDRESSES = iter(f"127.116.0.{n}" for n in (1, 21, 41, 61, 81, 101))


@dataclass
class Workdir:
    """A copy of the repository's jobs, templates and bench jobs, its own RUNNER_HOME."""

    path: Path
    env: dict[str, str]
    values: dict[str, str] = field(default_factory=dict)   # $INV, <run>, r1, URL ...
    sims: list[subprocess.Popen[bytes]] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workdir]:
    path = tmp_path_factory.mktemp("readme")
    for sub in ("jobs", "templates", "bench/jobs"):
        shutil.copytree(ROOT / sub, path / sub)
    env = {**os.environ, "RUNNER_HOME": str(path / ".runner"),
           "RUNNER_LOCK_DIR": str(path / "locks")}
    for name in ("RUNNER_DB_URL", "RUNNER_BROKER_URL"):
        env.pop(name, None)
    wd = Workdir(path, env, {"URL": f"sqlite:///{path / '.runner' / 'results.db'}"})
    try:
        yield wd
    finally:
        for proc in wd.sims:
            stop_process(proc)


def substitute(command: Command, wd: Workdir) -> list[str]:
    """The line's words with this test's paths, counts, addresses and ids."""
    out: list[str] = []
    words = list(command.argv)
    while words:
        word = words.pop(0)
        if word in ("--devices", "-n") and command.argv[:2] == ("lab", "sim"):
            out += [word, "20"]
            words.pop(0)
        elif word == "--address":
            out += [word, next(ADDRESSES)]
            words.pop(0)
        elif word == "--slow-delay":
            out += [word, "0.1"]
            words.pop(0)
        elif word in ("$INV", "inventory"):
            out.append(wd.values["routers"])
        elif word == "sim/inventory":
            out.append(str(wd.path / "sim" / "inventory"))
        elif "*" in word:
            out += sorted(glob.glob(word, root_dir=wd.path))
        else:
            out.append(wd.values.get(word, word))
    if command.argv[:2] == ("lab", "sim"):
        if "--address" not in out:
            out += ["--address", next(ADDRESSES)]
        out += ["--port", str(free_port())]
    return out


def runner(wd: Workdir, args: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=wd.path, env=wd.env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def start_sim(wd: Workdir, args: list[str]) -> Path:
    directory = wd.path / args[args.index("--dir") + 1]
    proc = subprocess.Popen([sys.executable, "-m", "runner", *args], cwd=wd.path, env=wd.env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wd.sims.append(proc)
    state = directory / "sim.json"
    wait_for(lambda: state.exists() or proc.poll() is not None, 60, f"{args} to start")
    assert state.exists(), proc.stderr.read().decode() if proc.stderr else proc.returncode
    return directory


def routers_inventory(wd: Workdir, sim_inventory: Path) -> Path:
    """The simulator's inventory with its devices in group `routers`, as the shipped jobs
    target them (the practice lab's routers are in that group)."""
    inv = wd.path / "routers-inventory"
    shutil.copytree(sim_inventory, inv)
    hosts = yaml.safe_load((inv / "hosts.yaml").read_text(encoding="utf-8"))
    for host in hosts.values():
        host["groups"] = ["routers"]
    (inv / "hosts.yaml").write_text(yaml.safe_dump(hosts), encoding="utf-8")
    (inv / "groups.yaml").write_text("routers: {data: {role: router}}\n", encoding="utf-8")
    return inv


def serve_until_sigterm(wd: Workdir, args: list[str]) -> None:
    """`runner serve` as documented: it runs until SIGTERM, then exits 0."""
    log = wd.path / "serve.log"
    with log.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "runner", *args], cwd=wd.path,
                                env=wd.env, stdout=subprocess.DEVNULL, stderr=err)
    try:
        # serving once it holds the scheduler lease (or it exited: the assert says why)
        wait_for(lambda: "active scheduler" in log.read_text(encoding="utf-8")
                 or proc.poll() is not None, 60, f"{args} to start serving")
        assert proc.poll() is None, log.read_text(encoding="utf-8")
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, log.read_text(encoding="utf-8")


def applies(command: Command) -> bool:
    path = check(command.argv)[0]
    if path not in RUN_HERE:
        return False
    if command.inline and (path in {("run",), ("show",), ("serve",), ("lab", "sim")}
                           or tuple(command.argv) == path):
        return False  # a name in a sentence (`runner schedule run`), not a command line
    if any(word in NEEDS_OTHER_PARTS for word in command.argv):
        return False
    if "my-jobs" in command.argv:  # the tutorial's scheduled ospf-area change: the FRR lab
        return False
    if path == ("run",):
        return command.argv[1] in SIM_JOBS
    if path == ("show",) and any(w.startswith("<") or w.isupper() for w in command.argv[1:2]):
        return True
    return not any(w.isupper() and w != "URL" for w in command.argv)  # RUN_ID, FILE: elsewhere


def test_the_documents_commands_run_on_the_simulator(work: Workdir) -> None:
    commands = [c for c in documented() if applies(c)]
    # the simulators first (later lines use their inventories), then in document order
    commands.sort(key=lambda c: check(c.argv)[0] != ("lab", "sim"))
    for command in commands:
        path = check(command.argv)[0]
        args = substitute(command, work)
        if path == ("lab", "sim"):
            directory = start_sim(work, args)
            if "routers" not in work.values:
                work.values["routers"] = str(routers_inventory(work, directory / "inventory"))
                hosts = yaml.safe_load((directory / "inventory" / "hosts.yaml").read_text(
                    encoding="utf-8"))
                names = sorted(hosts)
                work.values.update({"r1": names[0], "r1,r3": f"{names[0]},{names[2]}"})
        elif path == ("serve",):
            serve_until_sigterm(work, args)
        else:
            proc = runner(work, args)
            assert proc.returncode == 0, (command.where, args, proc.stdout, proc.stderr)
            if path == ("run",) and "--json" in args:
                work.values["<run_id_prefix>"] = json.loads(proc.stdout)["run_id"][:8]
            elif path == ("run",):
                latest = json.loads(runner(work, ["history", "--json"]).stdout)
                runs = latest["runs"] if isinstance(latest, dict) else latest
                work.values["<run_id_prefix>"] = runs[0]["run_id"][:8]
                work.values["<run>"] = work.values["<run_id>"] = runs[0]["run_id"]
            if path == ("show",):
                assert work.values["r1"] in proc.stdout or "--host" not in args
        work.ran.append(f"{command.where}: {command.text}")
    ran = "\n".join(work.ran)
    for expected in ("lab sim --devices 1000 --dir sim", "lab sim -n 3000 --per-process 1000",
                     "run bench/jobs/show.yml",
                     "run jobs/backup.yml -i $INV", "history --json", "show <run_id_prefix>",
                     "schedule list --json -n 5", "schedule run backup -i inventory",
                     "schedule occurrences backup",
                     "serve --jobs jobs -i inventory", "token revoke noc",
                     "db current --json", "db upgrade", "validate jobs/*.yml",
                     "schema hosts"):
        assert expected in ran, (expected, ran)
