"""Runs the database could not take: kept whole as JSON files (RUNNER_HOME/unsaved), named in
the run's error, and put back into a database by `runner db import`."""

from __future__ import annotations

import json
import logging
import os
import sys
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


def load(path: Path) -> tuple[RunResult, RunStatus, str | None, list[str]]:
    """A kept run: (the run, its status, its error as a whole, its targets)."""
    try:
        document: Any = json.loads(path.read_text(encoding="utf-8"))
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
        return run, RunStatus(document["status"]), None if error is None else str(error), \
            [str(h) for h in document.get("hosts") or []]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"cannot read a kept run: {exc}", path=path) from None
