"""The backup repositories a jobs directory writes: each `backup:` step's dir (and any named
besides it), the jobs that write it and the devices those jobs target in an inventory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runner.errors import InputError, NotFound
from runner.inventory.fleet import FleetInventory
from runner.inventory.targets import Targets
from runner.job.load import job_files, load_job
from runner.job.spec import BackupStep


@dataclass(frozen=True)
class Repo:
    name: str  # as URLs and documents name it: the directory as the job writes it
    path: Path
    jobs: tuple[str, ...]  # the jobs whose backup step writes it
    targets: tuple[Targets, ...] = ()  # those jobs' targets, in the same order

    def targeted(self, fleet: FleetInventory | None) -> tuple[list[str], list[str]]:
        """(the devices this repository's jobs target in `fleet`, in inventory order; why
        a job's targets could not be resolved there: its devices are then missing)."""
        if fleet is None:
            return [], []
        chosen: set[str] = set()
        problems = []
        for job, targets in zip(self.jobs, self.targets, strict=False):
            try:
                chosen.update(fleet.select(targets))
            except InputError as exc:  # a run of the job says the same and stops
                problems.append(f"{job}: {exc}")
        return [host for host in fleet.hosts if host in chosen], problems


def repositories(jobs_dir: Path, extra: tuple[Path, ...] = ()) -> list[Repo]:
    """Every repository the valid jobs of `jobs_dir` back up into, and `extra`, by name."""
    jobs: dict[str, list[str]] = {}
    targets: dict[str, list[Targets]] = {}
    for path in job_files(jobs_dir):
        try:
            spec = load_job(path).spec
        except InputError:
            continue
        for step in spec.steps:
            if isinstance(step, BackupStep):
                jobs.setdefault(step.backup.dir, []).append(spec.name)
                targets.setdefault(step.backup.dir, []).append(spec.targets)
    for path in extra:
        jobs.setdefault(str(path), [])
    out = []
    for name, names in sorted(jobs.items()):
        pairs = sorted(zip(names, targets.get(name, [None] * len(names)), strict=True),
                       key=lambda pair: pair[0])
        out.append(Repo(name, Path(name), tuple(n for n, _ in pairs),
                        tuple(t for _, t in pairs if t is not None)))
    return out


def repository(repos: list[Repo], name: str | None) -> Repo:
    """A repository by name; the only one when no name is given and there is one."""
    if name is None and len(repos) == 1:
        return repos[0]
    for repo in repos:
        if repo.name == name:
            return repo
    known = ", ".join(r.name for r in repos) or "none"
    raise NotFound(f"no backup repository {name!r} (known: {known})", field="repo")
