"""Bench: two `runner web` servers answering the same store_scale.py cases side by side, one
request to each in turn, so that a busy machine slows both alike (issue 28).

    .venv/bin/python bench/store_ab.py --before-src DIR --before-db URL --after-db URL \
        --dir DIR [--devices 100000] [--repeat 7]

`--before-src`: a tree of the other revision (`git archive REV | tar -x -C DIR`), run from
that directory with this venv; `--before-db`/`--after-db`: databases store_scale.py filled
(the same data: a copy of one, the other migrated by this revision); `--dir`: the directory
store_scale.py made for them (its inventory and jobs). Prints each case's median server
time (Server-Timing) for both and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.sim_scale import free_port  # noqa: E402
from bench.store_scale import cases  # noqa: E402


class Server:
    """`runner web` of one revision on one database, logged in as a viewer."""

    def __init__(self, src: Path, url: str, directory: Path) -> None:
        env = {**os.environ, "RUNNER_HOME": str(directory / f"home-{src.name}")}
        runner = [sys.executable, "-m", "runner", "--db", url]
        token = json.loads(subprocess.run(
            [*runner, "token", "create", "--role", "viewer", "--json"], capture_output=True,
            text=True, env=env, check=True, cwd=src).stdout)["token"]
        port = free_port()
        self.proc = subprocess.Popen(
            [*runner, "web", "--port", str(port), "--jobs", str(directory / "jobs"), "-i",
             str(directory / "inventory")], env=env, cwd=src, stderr=subprocess.DEVNULL,
            start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        self.api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"},
                                timeout=600)
        deadline = time.monotonic() + 180
        while True:
            try:
                self.api.get("/api/whoami")
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        self.page = httpx.Client(base_url=base, timeout=600)
        form = self.page.get("/login").text
        csrf = form.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        self.page.post("/login", data={"token": token, "csrf": csrf})
        self.page.get("/devices")  # the inventory is read once, at the first page

    def server_ms(self, who: str, path: str) -> float:
        answer = (self.api if who == "api" else self.page).get(path)
        assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
        return float(answer.headers["server-timing"].split("dur=")[1])

    def close(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before-src", type=Path, required=True)
    ap.add_argument("--before-db", required=True)
    ap.add_argument("--after-db", required=True)
    ap.add_argument("--dir", type=Path, required=True)
    ap.add_argument("--devices", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    before = Server(args.before_src, args.before_db, args.dir)
    try:
        after = Server(ROOT, args.after_db, args.dir)
        try:
            print(f"{'what':44} {'before ms':>10} {'after ms':>9} {'after/before':>13}")
            for what, who, path in cases(args.devices):
                taken: dict[str, list[float]] = {"before": [], "after": []}
                for _ in range(args.repeat):
                    taken["before"].append(before.server_ms(who, path))
                    taken["after"].append(after.server_ms(who, path))
                old, new = (statistics.median(taken[k]) for k in ("before", "after"))
                print(f"{what:44} {old:10.1f} {new:9.1f} {new / old:13.2f}")
        finally:
            after.close()
    finally:
        before.close()
    print(f"median of {args.repeat}, requests to the two servers in turn")


if __name__ == "__main__":
    main()
