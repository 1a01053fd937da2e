"""Records stream (issue 28): a `runner run` of a show job keeps each device's record only
until the store has it, so the client's memory does not grow with the number of finished
devices (checked on 1,000 and 3,000 simulated devices), and `--json` is written a device
at a time yet is the same document, to the character, that the store holds."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.store.queries import run_document, run_links
from runner.store.results import ResultsStore
from tests.support.fleet import Fleet, FleetSpec, start_fleet
from tests.support.jobs import run_argv, write_job
from tests.support.memory import peak_rss

DEVICES = 3000
FEW = DEVICES // 3
# Records big enough that holding them would show: show version + 16 running configs,
# ~40 KB of JSON per device.
CONFIGS = 16
STREAM_FLEET = FleetSpec(DEVICES, "127.160.0.1", faults=("refuse=5",))


@pytest.fixture(scope="module")
def big_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with start_fleet(tmp_path_factory.mktemp("stream-fleet"), STREAM_FLEET) as fleet:
        yield fleet


def show_job(directory: Path, name: str, hosts: list[str]) -> Path:
    return write_job(directory, name, hosts=hosts, driver="asyncssh", concurrency=100,
                     timeouts={"connect": 60, "command": 60, "device": 300},
                     steps=[{"name": "show", "command": ["show version",
                                                         *["show running-config"] * CONFIGS]}])


def peak_rss_run(workdir: Path, argv: list[str], out: Path) -> tuple[int, int]:
    """Run `argv` (`python -m runner ...`) with stdout to `out`: (exit code, the run's own
    peak RSS in bytes; tests/support/memory.py says why not wait4's)."""
    env = {**os.environ, "RUNNER_LOCK_DIR": str(workdir / "locks")}
    with out.open("w", encoding="utf-8") as stdout, \
            (workdir / f"{out.stem}.stderr").open("w", encoding="utf-8") as stderr:
        return peak_rss(argv, workdir / f"{out.stem}.hwm", stdout=stdout, stderr=stderr,
                        cwd=workdir, env=env)


def test_memory_does_not_grow_with_finished_devices(big_fleet: Fleet, tmp_path: Path) -> None:
    """The same show job on N and on 3N devices, in one local engine (one process, whose
    peak RSS is the client's), printing --json at the end. Holding the records would cost
    each extra device at least its record (~40 KB here; before records streamed, ~250 KB
    per device, with the --json document built whole); streaming leaves a summary and
    the device's inventory entry (~2-4 KB measured). The assertion compares memory with
    memory, never with time: the growth per extra device must stay under half a record,
    which holding the records crosses by far (at least a whole record each), while
    streaming leaves a margin of ~30 MiB over 2,000 devices for the allocator's noise."""
    healthy = big_fleet.healthy()
    db = f"sqlite:///{tmp_path / 'runner.db'}"
    peaks, documents = {}, {}
    for count in (FEW, DEVICES - len(big_fleet.refusing)):
        job = show_job(tmp_path, f"show{count}", healthy[:count])
        out = tmp_path / f"show{count}.json"
        code, peaks[count] = peak_rss_run(
            tmp_path, run_argv(db, job, big_fleet.inventory, "--engine", "local"), out)
        assert code == 0, (tmp_path / f"show{count}.stderr").read_text()[-3000:]
        documents[count] = json.loads(out.read_text(encoding="utf-8"))
    few, many = FEW, max(peaks)
    document = documents[many]
    # every record right: one per device, in target order, each with its own outputs
    assert [d["host"] for d in document["devices"]] == healthy[:many]
    assert document["summary"]["ok"] == many
    for device in document["devices"][::97]:
        steps = device["steps"]
        assert [s["name"] for s in steps] == ["show version", *["show running-config"] * CONFIGS]
        assert f"{device['host']} uptime is" in steps[0]["output"]
        assert all(f"hostname {device['host']}\n" in s["output"] for s in steps[1:])
    record = statistics.median(len(json.dumps(d)) for d in document["devices"])
    assert record > 30_000  # the job makes records big enough for the bound to mean much
    growth = (peaks[many] - peaks[few]) / (many - few)
    assert growth < record / 2, (
        f"peak RSS {peaks[few] / 2**20:.0f} MiB at {few} devices, {peaks[many] / 2**20:.0f} "
        f"MiB at {many}: {growth / 1024:.1f} KiB per extra device, records "
        f"{record / 1024:.1f} KiB")


def test_json_is_streamed_as_the_document_the_store_holds(big_fleet: Fleet,
                                                          tmp_path: Path) -> None:
    """`runner run --json` (engine processes, some devices refusing logins) prints what
    the store holds, exactly as the whole document was printed before it was streamed;
    `runner show --json` too."""
    hosts = big_fleet.healthy(195) + big_fleet.refusing
    job = show_job(tmp_path, "mixed", hosts)
    db = f"sqlite:///{tmp_path / 'runner.db'}"
    env = {**os.environ, "RUNNER_LOCK_DIR": str(tmp_path / "locks")}
    proc = subprocess.run(run_argv(db, job, big_fleet.inventory, "--engine", "processes",
                                   "--processes", "2"),
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600,
                          check=False)
    assert proc.returncode == 1, proc.stderr[-3000:]
    printed: dict[str, Any] = json.loads(proc.stdout)
    store = ResultsStore(db)
    row, stored = store.get_run(printed["run_id"])
    whole = json.dumps(run_document(row, stored, run_links(store, row)), indent=2) + "\n"
    assert proc.stdout == whole
    assert [d["host"] for d in printed["devices"]] == hosts
    assert {d["host"]: d["status"] for d in printed["devices"]
            if d["status"] != "ok"} == dict.fromkeys(big_fleet.refusing, "auth_failed")
    assert (printed["summary"]["ok"], printed["summary"]["auth_failed"]) == (195, 5)
    assert all(len(d["steps"]) == 1 + CONFIGS for d in printed["devices"]
               if d["status"] == "ok")
    shown = subprocess.run([sys.executable, "-m", "runner", "--db", db, "show",
                            printed["run_id"][:8], "--json"], capture_output=True, text=True,
                           cwd=tmp_path, env=env, timeout=120, check=False)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == whole
