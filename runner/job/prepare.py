"""Checking a job before it runs: its files (templates, parsers, backup directory), its
targets against the inventory and where its secrets may be read from; all that `runner
validate` needs, without the engines, the store or the broker a run loads."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from runner.errors import InputError, InventoryError, SecretUnavailable
from runner.inventory.secretref import (
    SecretRef,
    SecretResolver,
    confined,
    outside_message,
    roots,
)
from runner.inventory.targets import Targets
from runner.job.load import JobFile, load_job
from runner.job.parsing import check_parser
from runner.job.spec import BackupStep, CommandStep, ComplianceStep, ConfigStep
from runner.vocab import ActualSource, SecretSource

# The inventory (Nornir) and Jinja2 load when a check needs them: `runner validate JOB`
# without -i loads neither.
if TYPE_CHECKING:
    from runner.inventory.fleet import FleetInventory
    from runner.job.render import Templates


@dataclass
class Prepared:
    job: JobFile
    inventory: FleetInventory
    hosts: list[str]
    templates_dir: Path


def check_job(job: JobFile, templates_dir: Path) -> None:
    """Checks that need files besides the job (its own rules are JobSpec's): templates
    exist and parse, parsers load, the backup directory can be one."""
    templates = cache(lambda: _templates(templates_dir))  # made for the first that renders
    for index, step in enumerate(job.spec.steps):
        if isinstance(step, ConfigStep):
            _check_config(job, templates(), index, step)
        elif isinstance(step, CommandStep) and step.parse is not None:
            found = check_parser(step.parse, templates_dir)
            if found:
                raise job.error(found[1], ("steps", index, "command", "parse", found[0]))
        elif isinstance(step, ComplianceStep):
            _check_compliance(job, templates(), index, step)
        elif isinstance(step, BackupStep):
            target = Path(step.backup.dir)
            if target.exists() and not target.is_dir():
                raise job.error(f"{target} exists and is not a directory (expected the "
                                "backup git repository, or a path to create it at)",
                                ("steps", index, "backup", "backup", "dir"))


def _templates(root: Path) -> Templates:
    from runner.job.render import Templates  # Jinja2: a job that renders nothing never loads it

    return Templates(root)


def _check_config(job: JobFile, templates: Templates, index: int, step: ConfigStep) -> None:
    """A config step's template exists and parses; `{{ ... }}` in its lines (rendered as a
    template is, never sent as written) parses and names only what a render is given."""
    from runner.job.render import has_template

    if step.config.template is not None:
        problem = templates.check(step.config.template)
        if problem:
            raise job.error(problem, ("steps", index, "config", "config", "template"))
        return
    variables = {*job.spec.vars, *job.spec.secret_vars}
    for number, line in enumerate(step.config.lines or []):
        problem = templates.line_problem(line, variables) if has_template(line) else None
        if problem:
            raise job.error(problem, ("steps", index, "config", "config", "lines", number))


def _check_compliance(job: JobFile, templates: Templates, index: int,
                      step: ComplianceStep) -> None:
    """Its intended config's template exists and parses; a backup repository to compare
    with is one."""
    where = ("steps", index, "compliance", "compliance")
    if step.compliance.actual is ActualSource.BACKUP:
        repo = Path(step.compliance.backups)
        if not (repo / ".git").is_dir():
            raise job.error(f"{repo} is not a backup repository (expected the `dir` of a "
                            "backup step that has run: actual: backup compares with its "
                            "last commit)", (*where, "backups"))
    problem = templates.check(step.compliance.intended)
    if problem:
        raise job.error(problem, (*where, "intended"))


def prepare(job_path: Path, inventory_path: Path, templates_dir: Path,
            limit: str | None = None, only: list[str] | None = None,
            kept: Path | None = None) -> Prepared:
    """Everything that can be wrong with the input, found before a session is opened."""
    return prepare_job(load_job(job_path), inventory_path, templates_dir, limit, only, kept)


def prepare_job(job: JobFile, inventory_path: Path, templates_dir: Path,
                limit: str | None = None, only: list[str] | None = None,
                kept: Path | None = None) -> Prepared:
    """prepare() for a job already loaded (the scheduler runs the version it validated,
    even if the file has since been edited into something invalid). `only`: these hosts
    instead of the job's targets (a rerun of another run's failed devices). `kept`: where
    a large hosts file's loaded form is kept (runner.inventory.kept)."""
    check_job(job, templates_dir)
    from runner.inventory.loading import load_inventory

    inventory = load_inventory(inventory_path, kept).with_platform(job.spec.platform)
    targets = job.spec.targets if only is None else Targets(hosts=only)
    try:
        hosts = inventory.select(targets, limit)
    except InputError as exc:
        if isinstance(exc, InventoryError):
            raise  # a problem in the inventory itself (a host's platform): it names its file
        loc: tuple[int | str, ...] = ("targets",)
        for name, index in re.findall(r"(\w+)|\[(\d+)\]", exc.field or ""):
            loc += (name,) if name else (int(index),)
        raise job.error(exc.message, loc) from None
    if not hosts:
        raise job.error(f"no host in {inventory_path} matches the targets"
                        + (f" and --limit {limit!r}" if limit else ""), ("targets",))
    return Prepared(job, inventory, hosts, templates_dir)


def _session_refs(prep: Prepared) -> list[SecretRef]:
    """Each secret reference the run's sessions read, once, in host order (100,000 hosts
    that share their defaults' password name it once)."""
    return prep.inventory.session_refs(prep.hosts, prep.job.spec.driver)


def check_secret_files(prep: Prepared, secrets_dirs: tuple[Path, ...] = (),
                       refs: list[SecretRef] | None = None) -> None:
    """Every `{file: ...}` reference the run would read points inside where secrets may be
    read from (RUNNER_SECRETS_DIR, the directory of the file that writes it): else an input
    error naming file, line and field, before anything is read or any device touched.
    `refs`: the sessions' references when the caller has them (_session_refs)."""
    inventory_roots = roots(secrets_dirs, prep.inventory.directory)
    for ref in _session_refs(prep) if refs is None else refs:
        if ref.source is SecretSource.FILE and not confined(ref.name, inventory_roots):
            raise InventoryError(outside_message(ref.name, inventory_roots),
                                 path=ref.path, line=ref.line, field=ref.field)
    job_roots = roots(secrets_dirs, prep.job.path.parent)
    for name, spec in prep.job.spec.secret_vars.items():
        if spec.file is not None and not confined(spec.file, job_roots):
            raise prep.job.error(outside_message(spec.file, job_roots),
                                 ("secret_vars", name, "file"))


def session_secrets(prep: Prepared, secrets_dirs: tuple[Path, ...] = (), *, read: bool
                    ) -> SecretResolver | None:
    """The secrets of sessions opened on this machine checked and read (read_secrets), or,
    for sessions other machines open (Celery workers read their own), only checked for
    where they point (check_secret_files): None."""
    if read:
        return read_secrets(prep, secrets_dirs)
    check_secret_files(prep, secrets_dirs)
    return None


def read_secrets(prep: Prepared, secrets_dirs: tuple[Path, ...] = ()) -> SecretResolver:
    """Read every secret reference the run's sessions and templates use, here: for engines
    that open sessions on this machine. A variable that is not set or a file that cannot be
    read is an input error naming the field and the variable or file (exit 2), before any
    device is touched. (Celery workers read them themselves; the dispatcher never does.)"""
    refs = _session_refs(prep)
    check_secret_files(prep, secrets_dirs, refs)
    resolver = SecretResolver(roots(secrets_dirs, prep.inventory.directory),
                              roots(secrets_dirs, prep.job.path.parent))
    for ref in refs:
        try:
            resolver.value(ref)
        except SecretUnavailable as exc:
            raise InventoryError(str(exc).removeprefix(ref.where), path=ref.path,
                                 line=ref.line, field=ref.field) from None
    for name, spec in prep.job.spec.secret_vars.items():
        try:
            resolver.value(spec.ref(), resolver.job_roots)
        except SecretUnavailable as exc:
            raise prep.job.error(str(exc), ("secret_vars", name)) from None
    return resolver
