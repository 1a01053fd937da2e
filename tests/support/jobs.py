"""Job files and `runner run` as a person types it: write a job, run it with `--json`
against an inventory, and read the result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.support.base import ROOT, TEMPLATES


def write_job(directory: Path, name: str, *, text: str | None = None,
              hosts: list[str] | None = None, **fields: Any) -> Path:
    """directory/<name>.yml (the directory made if missing): `text` as written, or
    `name: <name>`, `targets: {hosts: ...}` when hosts are given, then the other fields in
    the order given (driver=, steps=, schedule=, ...)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.yml"
    if text is None:
        targets = {} if hosts is None else {"targets": {"hosts": hosts}}
        text = yaml.safe_dump({"name": name, **targets, **fields}, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return path


def shipped_job(directory: Path, shipped: str, **changes: Any) -> Path:
    """A copy of jobs/<shipped> in directory with these top-level keys replaced."""
    data = yaml.safe_load((ROOT / "jobs" / shipped).read_text(encoding="utf-8"))
    data.update(changes)
    path = directory / shipped
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def sqlite_url(workdir: Path) -> str:
    """The results database `run_runner` uses in workdir."""
    return f"sqlite:///{workdir / 'runner.db'}"


def run_argv(db: str, job: Path, inventory: Path, *args: str) -> list[str]:
    """The command line of `runner --db DB run JOB -i INVENTORY --templates templates/ --json
    ARGS` (a -vv among ARGS goes before `run`)."""
    verbose = [a for a in args if a == "-vv"]
    rest = [a for a in args if a != "-vv"]
    return [sys.executable, "-m", "runner", "--db", db, *verbose, "run", str(job), "-i",
            str(inventory), "--templates", str(TEMPLATES), "--json", *rest]


def run_runner(workdir: Path, job: Path, inventory: Path, *args: str, db: str | None = None,
               env: dict[str, str] | None = None,
               timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """run_argv run in workdir: DB is workdir/runner.db unless given; without `env`, this
    environment with a lock directory of the workdir's own (workdir/locks)."""
    if env is None:
        env = {**os.environ, "RUNNER_LOCK_DIR": str(workdir / "locks")}
    return subprocess.run(run_argv(db or sqlite_url(workdir), job, inventory, *args),
                          capture_output=True, text=True, check=False, cwd=workdir, env=env,
                          timeout=timeout)


def run_job(workdir: Path, job: Path, inventory: Path, *args: str, expect: int | None = None,
            db: str | None = None, env: dict[str, str] | None = None) -> dict[str, Any]:
    """run_runner's JSON result; with `expect`, the exit code checked first."""
    proc = run_runner(workdir, job, inventory, *args, db=db, env=env)
    if expect is not None:
        assert proc.returncode == expect, (proc.stdout[-2000:], proc.stderr[-3000:])
    data: dict[str, Any] = json.loads(proc.stdout)
    return data
