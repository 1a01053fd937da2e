"""Runs the database could not take: kept whole as JSON files (RUNNER_HOME/unsaved), named in
the run's error, and put back into a database by `runner db import`."""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from runner.errors import InputError, RecordsNotStored
from runner.records import DeviceResult, RunResult
from runner.vocab import Engine, RunStatus

log = logging.getLogger(__name__)
FORMAT = "runner-unsaved-run/1"


def keep(run: RunResult, status: RunStatus, run_error: str | None, hosts: list[str],
         directory: Path, reason: str) -> Path | None:
    """Write the whole run (its status and error, every device's record) to
    DIRECTORY/run-<id>.json, readable by its owner only; its path. When even that fails,
    the JSON goes to stderr instead."""
    document = {"format": FORMAT, "status": status, "error": run_error, "hosts": hosts,
                "not_stored_because": reason, "run": run.to_json()}
    text = json.dumps(document, indent=2)
    path = directory / f"run-{run.run_id}.json"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text + "\n")
    except OSError as exc:
        log.error("run %s: its records could not be written to %s either (%s): here they "
                  "are", run.run_id, path, exc)
        sys.stderr.write(text + "\n")
        sys.stderr.flush()
        return None
    return path.resolve()


def not_stored(run: RunResult, status: RunStatus, run_error: str | None, hosts: list[str],
               unsaved: set[str], directory: Path, error: str) -> RecordsNotStored:
    """Keep the run and say so: the error to raise (loudly: the caller exits non-zero)."""
    path = keep(run, status, run_error, hosts, directory, error)
    where = f"kept in {path} (`runner db import {path}` stores them when the database is " \
            "back)" if path else "printed above on stderr"
    what = f"{len(unsaved)} device record(s) of run {run.run_id}" if unsaved else \
        f"the end of run {run.run_id}"
    return RecordsNotStored(f"{what} could not be written to the database: {error}; the "
                            f"run's records are {where}", unsaved=len(unsaved), path=path,
                            run=run)


MAX_BYTES = 256 * 1024 * 1024  # a kept run's file (`runner db import --max-size`)
MAX_DEPTH = 64  # JSON nesting: a run's records nest a few levels, parsed output a few more
ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
HOST = re.compile(r"^[^\x00-\x1f\x7f]{1,255}$")


def _read(path: Path, max_bytes: int) -> Any:
    """The file's JSON: a regular file within `max_bytes`, nested at most MAX_DEPTH."""
    info = path.stat()  # /dev/zero, a FIFO: refused before they are opened
    if not stat.S_ISREG(info.st_mode):
        raise ValueError("not a regular file")
    with path.open("rb") as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValueError(f"larger than {max_bytes:,} bytes (--max-size)")
    try:
        document = json.loads(data.decode("utf-8"))
    except RecursionError:
        raise ValueError(f"JSON nested more than {MAX_DEPTH} levels deep") from None
    if _depth(document) > MAX_DEPTH:
        raise ValueError(f"JSON nested more than {MAX_DEPTH} levels deep")
    return document


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_DEPTH:
            break
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


def _check(run: RunResult, hosts: list[str]) -> None:
    """Ids and names as runner writes them; each record's host among the run's."""
    for name, value in (("run_id", run.run_id), ("occurrence", run.occurrence),
                        ("rerun_of", run.rerun_of), ("approves", run.approves)):
        if value is not None and not (isinstance(value, str) and ID.match(value)):
            raise ValueError(f"run.{name} {str(value)[:80]!r} is not a run id (letters, "
                             "digits, . _ : -; at most 64)")
    if not isinstance(run.job, str) or not HOST.match(run.job):
        raise ValueError(f"run.job {str(run.job)[:80]!r} is not a job name")
    for when in (run.started, run.finished):
        if when is not None:
            datetime.fromisoformat(str(when))
    for host in hosts:
        if not HOST.match(host):
            raise ValueError(f"hosts: {host[:80]!r} is not a host name")
    known = set(hosts)
    for device in run.devices:
        if not isinstance(device.host, str) or (known and device.host not in known):
            raise ValueError(f"run.devices: host {str(device.host)[:80]!r} is not one of the "
                             "run's hosts")


def load(path: Path, max_bytes: int = MAX_BYTES
         ) -> tuple[RunResult, RunStatus, str | None, list[str]]:
    """A kept run: (the run, its status, its error as a whole, its targets); InputError
    naming the file for anything else (too large, too deep, not runner's, bad ids)."""
    try:
        document: Any = _read(path, max_bytes)
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise ValueError(f"not a run kept by runner (format {FORMAT})")
        data = document["run"]
        run = RunResult(
            run_id=data["run_id"], job=data["job"], started=data["started"],
            finished=data.get("finished"), dry_run=bool(data.get("dry_run")),
            devices=[DeviceResult.from_json(d) for d in data["devices"]],
            job_file=data.get("job_file"), engine=Engine(data.get("engine", "local")),
            occurrence=data.get("occurrence"), backup_commit=data.get("backup_commit"),
            rerun_of=data.get("rerun_of"), approves=data.get("approves"),
            started_by=data.get("started_by"), override=data.get("override"),
            workflow=data.get("workflow"), blackout_override=data.get("blackout_override"))
        error = document.get("error")
        hosts = document.get("hosts") or []
        if not isinstance(hosts, list) or not all(isinstance(h, str) for h in hosts):
            raise ValueError("hosts: expected a list of host names")
        _check(run, hosts)
        return run, RunStatus(document["status"]), None if error is None else str(error), \
            hosts
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"cannot read a kept run: {exc}", path=path) from None
