"""Fixture helpers for the Celery tier: a real redis-server on loopback, real `runner worker`
processes, and `runner run --engine celery` in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import redis

from runner.lab.netns import wait_for
from tests.support.base import ROOT, free_port


class RedisServer:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self.ping, 20, "redis-server to answer")

    def ping(self) -> bool:
        try:
            return bool(redis.Redis.from_url(self.url, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, decode_responses=True)


class Workers:
    """`runner worker` subprocesses, each with its own log."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.env = env
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, inventory: Path, queues: tuple[str, ...] = (),
              concurrency: int = 2, templates: Path = ROOT / "templates") -> None:
        log = self.workdir / f"worker-{name}.log"
        argv = [sys.executable, "-m", "runner", "worker", "-n", name, "-i", str(inventory),
                "--templates", str(templates), "-c", str(concurrency)]
        for queue in queues:
            argv += ["-Q", queue]
        self.procs[name] = subprocess.Popen(argv, stdout=log.open("wb"),
                                            stderr=subprocess.STDOUT, env=self.env,
                                            start_new_session=True)
        wait_for(lambda: " ready." in self.log(name), 60, f"worker {name} to be ready")

    def log(self, name: str) -> str:
        return (self.workdir / f"worker-{name}.log").read_text(errors="replace")

    def alive(self, name: str) -> bool:
        return name in self.procs and self.procs[name].poll() is None

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[name]
        os.killpg(proc.pid, sig)
        proc.wait(30)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


def run_celery(project: Path, env: dict[str, str], job: Path, inventory: Path, *args: str,
               background: bool = False) -> Any:
    argv = [sys.executable, "-m", "runner", "--db", f"sqlite:///{project / 'runner.db'}",
            "run", str(job), "-i", str(inventory), "--templates", str(ROOT / "templates"),
            "--engine", "celery", "--json", *args]
    if background:
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=env, text=True)
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600,
                          check=False)
    return proc.returncode, (json.loads(proc.stdout) if proc.stdout.strip() else None), \
        proc.stderr
