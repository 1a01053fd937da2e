"""Bench: the results store and `runner web` with one run of 100,000 device records, on
SQLite and PostgreSQL (issue 28).

    .venv/bin/python bench/store_scale.py [--devices 100000] [--db sqlite|postgresql|both]
                                          [--repeat 5] [--dir /tmp/bench-store]

Fills the store through its own API (ResultsStore.start_run, record_devices in the
RecordWriter's batches of 500, finish_run) with a show job's records as a run writes them
(`show version` parsed, a running config of ~3 KB; 3 % of the devices failed in four
ways), beside 2,000 older small runs; prints the fill rate and the database's size per
device record. Then starts a real `runner web` on it (an inventory of the same devices,
ten sites) and prints each page's and API call's server time (its Server-Timing header:
the median and worst of --repeat) and the wall time of `runner history` and `runner show`
as a user types them. Target: 100 ms of server time; the CLI instant.
PostgreSQL is Debian's server in a throwaway cluster (tests/support/pg.py).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.sim_scale import free_port  # noqa: E402
from runner.records import DeviceResult, RunResult, StepResult  # noqa: E402
from runner.store.results import ResultsStore  # noqa: E402
from runner.vocab import DeviceStatus, StepKind  # noqa: E402

TARGET_MS = 100.0
RUN_ID = "b16000000000"
BATCH = 500  # RecordWriter.BATCH_RECORDS
FAILURES = [(DeviceStatus.UNREACHABLE, "ConnectFailed", "connection refused"),
            (DeviceStatus.TIMED_OUT, "Timeout", "no answer within 30 s"),
            (DeviceStatus.AUTH_FAILED, "AuthFailed", "permission denied"),
            (DeviceStatus.FAILED, "CommandRejected", "% Invalid input detected")]


def host_of(i: int) -> str:
    return f"edge{i:06d}"


def config_of(host: str, i: int) -> str:
    return (f"hostname {host}\n!\n" + "".join(
        f"interface GigabitEthernet0/{n}\n description link {n} of site{i % 10}\n"
        f" ip address 10.{n}.{i // 256 % 256}.{i % 256} 255.255.255.0\n!\n"
        for n in range(24)) + "ntp server 192.0.2.1\nend\n")


def record(host: str, i: int, rng: random.Random, began: datetime) -> DeviceResult:
    """A show job's record as the engine makes it (masked, parsed)."""
    at = (began + timedelta(seconds=i * 0.003)).isoformat(timespec="milliseconds")
    if rng.random() < 0.03:
        status, error_class, error = FAILURES[i % len(FAILURES)]
        return DeviceResult(host=host, status=status, duration_s=rng.uniform(1, 30),
                            error=f"{error} ({host})", error_class=error_class, attempts=2,
                            driver="asyncssh", started=at, finished=at)
    version = (f"Cisco IOS Software, Version 15.2(4)M7\n{host} uptime is 3 weeks\n"
               f"Processor board ID 9SIM{i:08d}\n")
    steps = [StepResult(name="show version", kind=StepKind.COMMAND, output=version,
                        parsed={"version": "15.2(4)M7", "hostname": host,
                                "serial": f"9SIM{i:08d}", "uptime": "3 weeks"}),
             StepResult(name="show running-config", kind=StepKind.COMMAND,
                        output=config_of(host, i))]
    return DeviceResult(host=host, status=DeviceStatus.OK, duration_s=rng.uniform(0.5, 3),
                        attempts=1, driver="asyncssh", started=at, finished=at, steps=steps)


def fill(url: str, n: int, old_runs: int) -> float:
    """The older runs, then the big run through the store's API; seconds the big run's
    records took to store."""
    store = ResultsStore(url)
    rng = random.Random(28)  # noqa: S311 (made-up data, the same each time)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    for k in range(old_runs):
        began = start + timedelta(hours=k)
        small = RunResult(run_id=f"{k:012x}", job=["facts", "ntp", "backup"][k % 3],
                          started=began.isoformat(timespec="milliseconds"), finished=None,
                          devices=[])
        store.start_run(small, ["r1", "r2"])
        small.devices = [record("r1", 1, rng, began), record("r2", 2, rng, began)]
        store.record_devices(small.run_id, small.devices, {"r1": 0, "r2": 1})
        small.finished = (began + timedelta(seconds=20)).isoformat(timespec="milliseconds")
        store.finish_run(small)
    hosts = [host_of(i) for i in range(n)]
    positions = {h: i for i, h in enumerate(hosts)}
    began = start + timedelta(days=40)
    run = RunResult(run_id=RUN_ID, job="show", started=began.isoformat(
        timespec="milliseconds"), finished=None, devices=[], job_file="jobs/show.yml")
    store.start_run(run, hosts)
    took = time.monotonic()
    for at in range(0, n, BATCH):
        batch = [record(h, at + j, rng, began) for j, h in enumerate(hosts[at:at + BATCH])]
        store.record_devices(RUN_ID, batch, positions)
        for device in batch:
            device.slim()  # what the run keeps, as RecordWriter does
        run.devices.extend(batch)
    took = time.monotonic() - took
    run.finished = (began + timedelta(minutes=5)).isoformat(timespec="milliseconds")
    store.finish_run(run)
    store.engine.dispose()
    return took


def db_bytes(url: str, path: Path | None) -> int:
    if path is not None:
        return path.stat().st_size
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    with engine.connect() as conn:
        size = conn.execute(sqlalchemy.text(
            "select pg_database_size(current_database())")).scalar_one()
    engine.dispose()
    return int(size)


def inventory(directory: Path, n: int) -> Path:
    where = directory / "inventory"
    where.mkdir(parents=True, exist_ok=True)
    (where / "hosts.yaml").write_text(yaml.safe_dump({
        host_of(i): {"hostname": f"10.{i // 65536}.{i // 256 % 256}.{i % 256}",
                     "groups": [f"site{i % 10}"]} for i in range(n)}), encoding="utf-8")
    (where / "groups.yaml").write_text(yaml.safe_dump({
        f"site{i}": {"data": {"site": f"site{i}"}} for i in range(10)}), encoding="utf-8")
    (where / "defaults.yaml").write_text(yaml.safe_dump({
        "platform": "cisco_ios", "username": "admin", "password": "bench-secret"}),
        encoding="utf-8")
    jobs = directory / "jobs"
    jobs.mkdir(exist_ok=True)
    (jobs / "show.yml").write_text(yaml.safe_dump({
        "name": "show", "targets": {"groups": [f"site{i}" for i in range(10)]},
        "steps": [{"command": "show version"}]}), encoding="utf-8")
    return where


def cases(n: int) -> list[tuple[str, str, str]]:
    """(what, who asks: the browser session or an API token, path)."""
    last = max(1, (n + 499) // 500)  # the run page lists 500 devices a page
    mid = n // 2
    ok_page = max(1, last // 2)
    return [
        ("run page (first page, counts)", "page", f"/runs/{RUN_ID}"),
        ("run page, failed devices", "page", f"/runs/{RUN_ID}?status=failed"),
        (f"run page, ok devices, page {ok_page}", "page",
         f"/runs/{RUN_ID}?status=ok&page={ok_page}"),
        (f"run page, last page ({last})", "page", f"/runs/{RUN_ID}?page={last}"),
        ("a device of the run", "page", f"/runs/{RUN_ID}/devices/{host_of(mid)}"),
        ("runs page", "page", "/runs"),
        ("device search (name holds 'edge0500')", "page", "/devices?q=edge0500"),
        ("device search, one site, failed", "page", "/devices?group=site3&status=failed"),
        ("device search, one site, ok", "page", "/devices?group=site3&status=ok"),
        ("device search, failed (whole fleet)", "page", "/devices?status=failed"),
        ("a device's page", "page", f"/devices/{host_of(mid)}"),
        ("API run (first page of devices)", "api", f"/api/runs/{RUN_ID}"),
        ("API run, devices offset 50,000", "api", f"/api/runs/{RUN_ID}?offset={mid}"),
        ("API run's devices, offset 50,000", "api", f"/api/runs/{RUN_ID}/devices?offset={mid}"),
        ("API run progress", "api", f"/api/runs/{RUN_ID}/progress"),
        ("API run live (the run page's poll)", "api", f"/api/runs/{RUN_ID}/live"),
        ("API one device", "api", f"/api/runs/{RUN_ID}/devices/{host_of(mid)}"),
        ("API devices search", "api", "/api/devices?search=edge0500"),
        ("API runs", "api", "/api/runs"),
    ]


def cli(runner: list[str], env: dict[str, str], n: int) -> None:
    """The wall time of `runner history` and `runner show` as a user types them."""
    for what, argv in (("runner history", ["history"]), ("runner show RUN", ["show", RUN_ID]),
                       ("runner show RUN --failed", ["show", RUN_ID, "--failed"]),
                       ("runner show RUN --host H", ["show", RUN_ID, "--host", host_of(n // 2)]),
                       ("runner show RUN --json (first 64 KiB)", ["show", RUN_ID, "--json"])):
        walls = []
        lines = 0
        for _ in range(3):
            began = time.monotonic()
            proc = subprocess.Popen([*runner, *argv], stdout=subprocess.PIPE, env=env)
            assert proc.stdout is not None
            if "--json" in argv:
                head = proc.stdout.read(65536)
                walls.append(time.monotonic() - began)
                proc.kill()
                proc.wait()
                lines = head.count(b"\n")
                continue
            out = proc.stdout.read()
            proc.wait()
            walls.append(time.monotonic() - began)
            assert proc.returncode == 0, (argv, proc.returncode)
            lines = out.count(b"\n")
        print(f"{what:44} {statistics.median(walls) * 1000:8.0f} ms wall "
              f"(Python start-up included), {lines} lines")


def measure(url: str, directory: Path, n: int, repeat: int) -> list[str]:
    """Server time of each case against a real `runner web`; the CLI's wall time."""
    env = {**os.environ, "RUNNER_HOME": str(directory / "home")}
    runner = [sys.executable, "-m", "runner", "--db", url]
    cli(runner, env, n)
    token = json.loads(subprocess.run([*runner, "token", "create", "--role", "viewer",
                                       "--json"], capture_output=True, text=True, env=env,
                                      check=True).stdout)["token"]
    port = free_port()
    server = subprocess.Popen([*runner, "web", "--port", str(port), "--jobs",
                               str(directory / "jobs"), "-i", str(directory / "inventory")],
                              env=env, stderr=subprocess.DEVNULL, start_new_session=True)
    slow = []
    try:
        base = f"http://127.0.0.1:{port}"
        api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"},
                           timeout=600)
        deadline = time.monotonic() + 120
        while True:
            try:
                api.get("/api/whoami")
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        page = httpx.Client(base_url=base, timeout=600)
        form = page.get("/login").text
        csrf = form.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        page.post("/login", data={"token": token, "csrf": csrf})
        began = time.monotonic()
        page.get("/devices")  # the inventory is read once, at the first page that needs it
        print(f"the inventory of {n:,} devices read by `runner web`: "
              f"{time.monotonic() - began:.1f} s (once)")
        print(f"\n{'what':44} {'server ms':>10} {'max':>7} {'wall ms':>9} {'bytes':>11}")
        for what, who, path in cases(n):
            client = api if who == "api" else page
            server_ms, wall_ms, size = [], [], 0
            for _ in range(repeat):
                began = time.perf_counter()
                answer = client.get(path)
                wall_ms.append((time.perf_counter() - began) * 1000)
                assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
                server_ms.append(float(answer.headers["server-timing"].split("dur=")[1]))
                size = len(answer.content)
            med = statistics.median(server_ms)
            mark = "" if med <= TARGET_MS else f"  > {TARGET_MS:.0f} ms"
            if mark:
                slow.append(what)
            print(f"{what:44} {med:10.1f} {max(server_ms):7.1f} "
                  f"{statistics.median(wall_ms):9.1f} {size:11,}{mark}")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
    print(f"median of {repeat}; over {TARGET_MS:.0f} ms: {', '.join(slow) or 'none'}")
    return slow


def one(kind: str, args: argparse.Namespace) -> None:
    directory = args.dir / kind
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    pg: Any = None
    path: Path | None = None
    if kind == "sqlite":
        path = directory / "runner.db"
        url = f"sqlite:///{path}"
    else:
        from tests.support.pg import PgServer, bindir

        binaries = bindir()
        if binaries is None:
            print("postgresql: no server binaries here (Debian package postgresql)")
            return
        pg = PgServer(binaries)
        url = pg.new_database()
    try:
        ResultsStore(url).engine.dispose()  # the schema at head: the empty database's size
        empty = db_bytes(url, path)
        began = time.monotonic()
        took = fill(url, args.devices, args.old_runs)
        size = db_bytes(url, path) - empty
        records = args.devices + 2 * args.old_runs
        print(f"\n## {kind}: {args.devices:,} device records in one run (+ {args.old_runs:,} "
              f"runs of 2)\nfilled in {time.monotonic() - began:.0f} s; the big run's "
              f"records stored at {args.devices / took:,.0f} per second; database "
              f"{size / 2**20:,.0f} MiB over the empty schema: {size / records / 1024:.1f} "
              f"KiB per device record")
        inventory(directory, args.devices)
        measure(url, directory, args.devices, args.repeat)
    finally:
        if pg is not None:
            pg.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=100_000)
    ap.add_argument("--old-runs", type=int, default=2000)
    ap.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/bench-store"))
    args = ap.parse_args()
    for kind in (["sqlite", "postgresql"] if args.db == "both" else [args.db]):
        one(kind, args)


if __name__ == "__main__":
    main()
