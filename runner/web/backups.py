"""Backup repositories for the web: the `backup:` dirs of the jobs directory's jobs (and any
given with --backups), each device's history in them, and the diff between two versions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.errors import InputError, NotFound
from runner.job.backups import BackupRepo
from runner.job.load import load_job
from runner.job.spec import BackupStep
from runner.web.launcher import job_files


@dataclass(frozen=True)
class Repo:
    name: str  # as the URL names it: the directory as written in the job (or --backups)
    path: Path
    jobs: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"repo": self.name, "path": str(self.path), "jobs": list(self.jobs),
                "hosts": BackupRepo(self.path).hosts()}


def repositories(jobs_dir: Path, extra: tuple[Path, ...] = ()) -> list[Repo]:
    found: dict[str, list[str]] = {}
    for path in job_files(jobs_dir):
        try:
            spec = load_job(path).spec
        except InputError:
            continue
        for step in spec.steps:
            if isinstance(step, BackupStep):
                found.setdefault(step.backup.dir, []).append(spec.name)
    for path in extra:
        found.setdefault(str(path), [])
    return [Repo(name, Path(name), tuple(jobs)) for name, jobs in sorted(found.items())]


def repository(jobs_dir: Path, extra: tuple[Path, ...], name: str | None) -> Repo:
    """A repository by name; the only one when no name is given and there is one."""
    repos = repositories(jobs_dir, extra)
    if name is None and len(repos) == 1:
        return repos[0]
    for repo in repos:
        if repo.name == name:
            return repo
    known = ", ".join(r.name for r in repos) or "none"
    raise NotFound(f"no backup repository {name!r} (known: {known})", field="repo")


def device_history(repo: Repo, host: str) -> dict[str, Any]:
    history = BackupRepo(repo.path).history(host)
    if not history:
        raise NotFound(f"no backup of {host!r} in {repo.name}", field="host")
    return {"repo": repo.name, "host": host, "versions": history}


def device_diff(repo: Repo, host: str, old: str, new: str) -> dict[str, Any]:
    backups = BackupRepo(repo.path)
    return {"repo": repo.name, "host": host, "from": old, "to": new,
            "diff": backups.diff(host, old, new)}
