"""`runner web` at scale: a results database of 100,000 runs (two devices each) and one run of
10,000 devices, an inventory of those 10,000 devices and a backup repository of their
configs (two commits; the devices that failed the big run never backed up), then the
server time of the pages and API calls people use (runs, a run, the device listing and a
device's page, the backups table of 10,000 devices), measured against a real `runner web`
on loopback (the Server-Timing each answer carries is the
server's own time; the wall time through HTTP is printed beside it). Target: under 300 ms.

    .venv/bin/python bench/web.py [--runs 100000] [--devices 10000] [--dir /tmp/bench-web]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import yaml
from sqlalchemy import insert, update

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner.job.backups import BackupRepo  # noqa: E402
from runner.store.results import ResultsStore, devices, rebuild_last, runs  # noqa: E402
from runner.vocab import DeviceStatus, RunStatus  # noqa: E402

TARGET_MS = 300.0
JOBS = ["backup", "facts", "ntp", "bgp-descriptions", "ospf-area", "audit"]


def fill(url: str, n_runs: int, n_devices: int) -> str:
    """Runs over the last year (a tenth failed), then the big run; its id."""
    store = ResultsStore(url)
    rng = random.Random(1)  # noqa: S311 (made-up data, the same each time)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    step = timedelta(days=330) / n_runs
    batch_runs: list[dict[str, object]] = []
    batch_devices: list[dict[str, object]] = []

    def flush() -> None:
        with store.engine.begin() as conn:
            if batch_runs:
                conn.execute(insert(runs), batch_runs)
            if batch_devices:
                conn.execute(insert(devices), batch_devices)
        batch_runs.clear()
        batch_devices.clear()

    for i in range(n_runs):
        began = start + step * i
        failed = rng.random() < 0.1
        run_id = f"{i:012x}"
        summary = dict.fromkeys(DeviceStatus, 0)
        summary["ok"], summary["failed" if failed else "changed"] = 1, 1
        batch_runs.append({
            "run_id": run_id, "job": JOBS[i % len(JOBS)], "job_file": "jobs/x.yml",
            "started": began.isoformat(timespec="milliseconds"),
            "finished": (began + timedelta(seconds=rng.uniform(2, 90)))
            .isoformat(timespec="milliseconds"),
            "status": RunStatus.FAILED if failed else RunStatus.OK, "dry_run": False,
            "engine": "local", "summary": summary, "hosts": ["r1", "r2"]})
        for pos, (host, status) in enumerate((("r1", "ok"),
                                              ("r2", "failed" if failed else "changed"))):
            batch_devices.append({
                "run_id": run_id, "host": host, "status": status, "changed": status ==
                "changed", "duration_s": rng.uniform(0.5, 30), "position": pos,
                "error": "% Invalid input detected" if status == "failed" else None,
                "error_class": "CommandRejected" if status == "failed" else None,
                "attempts": 1, "steps": [{"name": "show version", "kind": "command",
                                          "output": "x" * 200, "parsed": None,
                                          "diff": None, "changed": False,
                                          "failed": False, "error": None,
                                          "digest": None}]})
        if len(batch_runs) >= 5000:
            flush()
    flush()
    big = "b1g000000000"
    began = start + timedelta(days=331)
    hosts = [f"edge{i:05d}" for i in range(n_devices)]
    with store.engine.begin() as conn:
        conn.execute(insert(runs), [{
            "run_id": big, "job": "backup", "job_file": "jobs/backup.yml",
            "started": began.isoformat(timespec="milliseconds"),
            "finished": (began + timedelta(minutes=9)).isoformat(timespec="milliseconds"),
            "status": RunStatus.FAILED, "dry_run": False, "engine": "processes",
            "summary": {}, "hosts": hosts}])
    statuses = ["ok"] * 90 + ["changed"] * 6 + ["failed", "unreachable", "timed_out",
                                                "auth_failed"]
    rows = []
    for pos, host in enumerate(hosts):
        status = rng.choice(statuses)
        rows.append({
            "run_id": big, "host": host, "status": status, "changed": status == "changed",
            "duration_s": rng.uniform(0.5, 30), "position": pos, "attempts": 1,
            "error": None if status in ("ok", "changed") else f"{status} on {host}",
            "error_class": None if status in ("ok", "changed") else "ConnectFailed",
            "steps": [{"name": "config", "kind": "config", "output": "ntp server 192.0.2.1\n",
                       "parsed": None, "changed": status == "changed", "failed": False,
                       "error": None, "digest": None,
                       "diff": "- ntp server 192.0.2.9\n+ ntp server 192.0.2.1\n"
                       if status == "changed" else None},
                      {"name": "show running", "kind": "command", "output": "!\n" * 400,
                       "parsed": None, "diff": None, "changed": False, "failed": False,
                       "error": None, "digest": None}]})
    for i in range(0, len(rows), 2000):
        with store.engine.begin() as conn:
            conn.execute(insert(devices), rows[i:i + 2000])
    with store.engine.begin() as conn:
        rebuild_last(conn)  # written past the store's API: each device's newest record
    return big


def fleet_files(directory: Path, url: str, big: str, n_devices: int) -> None:
    """The big run's devices as an inventory (ten sites), a backup job over all of them,
    and their configs in its repository: a first commit of every device that ended well,
    a second that changes a tenth of them; the big run made the second."""
    hosts = [f"edge{i:05d}" for i in range(n_devices)]
    inventory = directory / "inventory"
    inventory.mkdir(parents=True, exist_ok=True)
    (inventory / "hosts.yaml").write_text(yaml.safe_dump({
        h: {"hostname": f"10.{i // 65536}.{i // 256 % 256}.{i % 256}",
            "groups": [f"site{i % 10}"]} for i, h in enumerate(hosts)}), encoding="utf-8")
    (inventory / "groups.yaml").write_text(yaml.safe_dump({
        f"site{i}": {"data": {"site": f"site{i}"}} for i in range(10)}), encoding="utf-8")
    (inventory / "defaults.yaml").write_text(yaml.safe_dump({
        "platform": "cisco_ios", "username": "admin", "password": "bench-secret"}),
        encoding="utf-8")
    jobs = directory / "jobs"
    jobs.mkdir(exist_ok=True)
    repo_dir = directory / "backups"
    (jobs / "backup.yml").write_text(yaml.safe_dump({
        "name": "backup", "targets": {"groups": [f"site{i}" for i in range(10)]},
        "steps": [{"backup": {"dir": str(repo_dir)}}]}), encoding="utf-8")
    store = ResultsStore(url)
    with store.engine.connect() as conn:
        ended = {h: s for h, s in conn.execute(
            devices.select().with_only_columns(devices.c.host, devices.c.status)
            .where(devices.c.run_id == big))}
    good = [h for h in hosts if ended.get(h) in ("ok", "changed")]
    repo = BackupRepo(repo_dir)
    config = "hostname {h}\n" + "".join(f"interface Gi0/{n}\n description uplink {n}\n!\n"
                                        for n in range(40))
    repo.commit({h: config.format(h=h) for h in good}, "runner backup first")
    second, _ = repo.commit({h: config.format(h=h) + "ntp server 192.0.2.1\n"
                             for h in good[::10]}, f"runner backup run {big}")
    with store.engine.begin() as conn:
        conn.execute(update(runs).where(runs.c.run_id == big).values(backup_commit=second))


def _cases(session: httpx.Client, client: httpx.Client,
           big: str) -> list[tuple[str, httpx.Client, str]]:
    """(what, who asks: a logged-in browser session or an API token, path)."""
    return [
        ("runs page, newest", session, "/runs"),
        ("runs page 500 (offset 25,000)", session, "/runs?page=500"),
        ("runs page, job + status filter", session, "/runs?job=ntp&status=failed"),
        ("runs page, one day", session, "/runs?since=2026-06-01&until=2026-06-01"),
        ("run page, 10,000 devices", session, f"/runs/{big}"),
        ("run page, failed devices", session, f"/runs/{big}?status=failed"),
        ("run page, devices page 20", session, f"/runs/{big}?page=20"),
        ("device page", session, f"/runs/{big}/devices/edge05000"),
        ("API runs", client, "/api/runs"),
        ("API runs, filtered, offset 10,000", client,
         "/api/runs?job=facts&limit=50&offset=10000"),
        ("API run progress (10,000 devices)", client, f"/api/runs/{big}/progress"),
        ("API devices page (500)", client, f"/api/runs/{big}/devices?offset=5000"),
        ("API one device", client, f"/api/runs/{big}/devices/edge05000"),
        ("API whole run (10,000 devices, steps)", client, f"/api/runs/{big}"),
        ("metrics", client, "/metrics"),
        ("devices page (10,000 in the inventory)", session, "/devices"),
        ("devices page, one site, last run failed", session,
         "/devices?group=site3&status=failed"),
        ("a device's page (runs, backups, lease)", session, "/devices/edge05000"),
        ("a device's page, 100,000 runs of it (r1)", session, "/devices/r1"),
        ("API devices (500)", client, "/api/devices?offset=5000"),
        ("API one device (runner device --json)", client, "/api/devices/edge05000"),
        ("backups table, 10,000 devices", session, "/backups"),
        ("backups table, never backed up", session, "/backups?state=never"),
        ("a device's backup (versions, config, diff)", session, "/backups/edge00000"),
        ("API a config at its newest version", client, "/api/backups/edge00000/config"),
    ]


def measure(cases: list[tuple[str, httpx.Client, str]], repeat: int) -> None:
    """Each case `repeat` times: the median and worst server time, wall time, size."""
    print(f"\n{'what':42} {'server ms':>10} {'max':>7} {'wall ms':>9} {'bytes':>11}")
    slow = []
    for what, who, path in cases:
        server_ms, wall_ms = [], []
        size = 0
        for _ in range(repeat):
            began = time.perf_counter()
            answer = who.get(path)
            wall_ms.append((time.perf_counter() - began) * 1000)
            assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
            server_ms.append(float(answer.headers["server-timing"].split("dur=")[1]))
            size = len(answer.content)
        med = statistics.median(server_ms)
        mark = "" if med < TARGET_MS else "  > 300 ms"
        if mark and not what.startswith(("API whole run", "metrics")):
            slow.append(what)
        print(f"{what:42} {med:10.1f} {max(server_ms):7.1f} "
              f"{statistics.median(wall_ms):9.1f} {size:11,}{mark}")
    print(f"\nmedian of {repeat}; pages and listings over {TARGET_MS:.0f} ms: "
          f"{', '.join(slow) or 'none'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/bench-web"))
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    db = args.dir / "results.db"
    url = f"sqlite:///{db}"
    env = {**os.environ, "RUNNER_HOME": str(args.dir / "home")}
    if not db.exists():
        began = time.monotonic()
        big = fill(url, args.runs, args.devices)
        print(f"filled {db}: {args.runs:,} runs + 1 run of {args.devices:,} devices in "
              f"{time.monotonic() - began:.0f}s ({db.stat().st_size / 2**20:.0f} MiB)")
    else:
        big = "b1g000000000"
        print(f"reusing {db} ({db.stat().st_size / 2**20:.0f} MiB)")
    if not (args.dir / "backups" / ".git").is_dir():
        began = time.monotonic()
        fleet_files(args.dir, url, big, args.devices)
        print(f"inventory, backup job and repository of {args.devices:,} devices in "
              f"{time.monotonic() - began:.0f}s")
    runner = [sys.executable, "-m", "runner", "--db", url]
    token = json.loads(subprocess.run([*runner, "token", "create", "--role", "viewer",
                                       "--json"], capture_output=True, text=True, env=env,
                                      check=True).stdout)["token"]
    port = 18000 + os.getpid() % 1000
    server = subprocess.Popen([*runner, "web", "--port", str(port), "--jobs",
                               str(args.dir / "jobs"), "-i", str(args.dir / "inventory")],
                              env=env, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"},
                              timeout=120)
        for _ in range(200):
            try:
                client.get("/api/whoami")
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        session = httpx.Client(base_url=base, timeout=120)
        page = session.get("/login").text
        csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        session.post("/login", data={"token": token, "csrf": csrf})
        measure(_cases(session, client, big), args.repeat)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)


if __name__ == "__main__":
    main()
