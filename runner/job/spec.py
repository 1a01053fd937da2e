"""The job file model: what to run, on which devices, how; its JSON Schema is published."""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from runner.inventory.secretref import SecretRefSpec
from runner.inventory.targets import PlatformName, Targets
from runner.job import ttpguard
from runner.job.blackouts import BlackoutWindow, first_duplicate
from runner.job.events import TriggerSpec, check_freshness, freshness_seconds
from runner.job.notify import NotifyTarget
from runner.job.schedule import ScheduleSpec
from runner.job.workflow import After, Parent, parents
from runner.source.validation import located
from runner.vocab import ActualSource, Approval, Driver, OnStop

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class _Model(BaseModel):
    # defer_build: a model's validator is built when it is first used, not as its class is
    # made. Validating a job builds JobSpec's, with every model it holds inside it, once;
    # built at import, each of the ~30 models of a job file would also have its own (and
    # pay for them in every command that loads this module: tests/unit/test_startup.py).
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class Timeouts(_Model):
    connect: float = Field(10, gt=0, le=600, description="Seconds to open a session.")
    command: float = Field(30, gt=0, le=3600, description="Seconds per command.")
    device: float = Field(300, gt=0, le=86400,
                          description="Seconds for everything on one device.")
    rollback: float = Field(120, gt=0, le=3600,
                            description="Seconds for putting a device back after a failed "
                                        "change (a budget of its own, after the device's).")


class Limits(_Model):
    """Bounds on what one device's steps may produce: past them the device fails with a
    clear error instead of filling memory and the database."""

    output: int = Field(16 * 1024 * 1024, ge=1024, le=1024 ** 3, description=(
        "Characters one command's answer (or a config transcript) may hold."))
    rendered: int = Field(1024 * 1024, ge=1024, le=256 * 1024 * 1024, description=(
        "Characters a rendered config template may hold."))
    template_value: int = Field(1024 * 1024, ge=1024, le=256 * 1024 * 1024, description=(
        "Bytes (about) one value a template builds may hold: a string, a list, a number. "
        "Checked before operations that could build more at once (padding, repetition, "
        "format widths, joins)."))
    template_memory: int = Field(64 * 1024 * 1024, ge=64 * 1024, le=4 * 1024 ** 3,
                                 description=(
        "Bytes (about) everything one render of a template builds may hold together."))


class Retries(_Model):
    """Retries of connection failures (unreachable, connect timeout); never of auth."""

    count: int = Field(0, ge=0, le=10)
    backoff: float = Field(1.0, ge=0, le=300, description="First wait, doubled each retry.")
    max_backoff: float = Field(30.0, ge=0, le=3600)


class Rollout(_Model):
    """Roll out in batches; stop (remaining devices skipped) when failures pass the bound."""

    batch_size: Annotated[int, Field(ge=1)] | Annotated[str, Field(pattern=r"^\d{1,3}%$")]
    max_fail_percentage: float = Field(100, ge=0, le=100)
    on_stop: OnStop = Field(OnStop.SKIP, description=(
        "When the stop rule fires: skip the remaining devices, or also roll back every "
        "device the earlier batches changed (needs rollback: true)."))


def is_inline_ttp(template: str) -> bool:
    """Inline TTP has match variables; anything else names a file in templates/."""
    return "{{" in template


def _template_file(name: str) -> str:
    path = PurePosixPath(name)
    if not name.strip() or path.is_absolute() or ".." in path.parts or "\0" in name:
        raise ValueError(f"expected a file in the templates directory: a relative path "
                         f"without '..' (got {name[:60]!r})")
    return name


class ParserSpec(_Model):
    textfsm: str | None = Field(None, description="TextFSM template file (in templates/).")
    ttp: str | None = Field(None, description=(
        "TTP template: inline text (with {{ match variables }}) or a file in templates/. "
        "Only <group> tags and functions with plain arguments: TTP runs the rest as Python."))

    @field_validator("textfsm")
    @classmethod
    def _textfsm_file(cls, value: str | None) -> str | None:
        return None if value is None else _template_file(value)

    @field_validator("ttp")
    @classmethod
    def _ttp(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not is_inline_ttp(value):
            return _template_file(value)
        why = ttpguard.problem(value)
        if why:
            raise ValueError(why)
        return value

    @model_validator(mode="after")
    def _one(self) -> ParserSpec:
        if (self.textfsm is None) == (self.ttp is None):
            raise ValueError("give exactly one of textfsm or ttp")
        return self


def _condition(source: str) -> str:
    from runner.job.checks import problem  # Jinja2 loads for a job with checks, not for all

    why = problem(source)
    if why:
        raise ValueError(why)
    return source


Condition = Annotated[str, AfterValidator(_condition)]


class CommandStep(_Model):
    name: str | None = None
    command: str | list[str] = Field(description="One or more show commands.")
    parse: Literal["textfsm", "json"] | ParserSpec | None = Field(
        None, description="textfsm (ntc-templates by platform+command), json, or "
                          "{textfsm: file} / {ttp: template}.")
    expect: list[Condition] = Field(default_factory=list, description=(
        "Checks: Jinja2 expressions on `output`, `parsed`, `host` and `vars`; a false one "
        "fails the device (CheckFailed). Before a config step: pre-checks, after: "
        "post-checks (with rollback, a failing post-check puts the device back)."))
    wait: float = Field(0, ge=0, le=3600, description=(
        "Seconds to wait before running the command (let a change settle)."))
    expect_within: float = Field(0, ge=0, le=3600, description=(
        "Run the command again (every 2 s) until its checks hold or this many seconds have "
        "passed (a network converging); 0: one try."))


    @field_validator("command")
    @classmethod
    def _commands(cls, value: str | list[str]) -> str | list[str]:
        commands = [value] if isinstance(value, str) else value
        if not commands or any(not c.strip() or "\n" in c for c in commands):
            raise ValueError("commands are non-empty single lines")
        return value

    @property
    def commands(self) -> list[str]:
        return [self.command] if isinstance(self.command, str) else list(self.command)


class ConfigSpec(_Model):
    lines: list[str] | None = Field(None, description="Config lines, sent in order.")
    template: str | None = Field(None, description="Jinja2 template in templates/.")
    save: bool = Field(False, description="Write memory after the change.")
    rollback: bool | None = Field(None, description=(
        "Put the device back as it was before this step if it or a later step fails "
        "(default: the job's rollback)."))

    @model_validator(mode="after")
    def _one(self) -> ConfigSpec:
        if (self.lines is None) == (self.template is None):
            raise ValueError("give exactly one of lines or template")
        if self.lines is not None and not self.lines:
            raise ValueError("lines is empty")
        return self


class ConfigStep(_Model):
    name: str | None = None
    config: ConfigSpec


class BackupSpec(_Model):
    dir: str = Field("backups", description="Git repository for the backups.")
    volatile: list[str] = Field(
        default_factory=list,
        description="Extra regexes (per line) masked before comparing and committing.")

    @field_validator("volatile")
    @classmethod
    def _regexes(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{pattern!r} is not a valid regex: {exc}") from None
        return value


class BackupStep(_Model):
    name: str | None = None
    backup: BackupSpec = Field(default_factory=BackupSpec.model_construct)


def _regexes(value: list[str]) -> list[str]:
    for pattern in value:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"{pattern!r} is not a valid regex: {exc}") from None
    return value


Regexes = Annotated[list[str], AfterValidator(_regexes)]


class Feature(_Model):
    """A part of the config judged on its own (Golden Config's compliance rule)."""

    name: str = Field(pattern=NAME_PATTERN, description="The feature's name (ntp, bgp...).")
    match: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1, description=(
        "Top-level config lines (or section headers) that are one of these, or one of "
        "them followed by more words, belong to the feature, with their whole section: "
        "`ntp server`, `router bgp`, `interface eth1` (not eth10)."))
    ordered: bool = Field(False, description=(
        "The lines' order matters (an ACL, a prefix list): the same lines in another order "
        "are not compliant, and the remediation rewrites the feature in the intended "
        "order."))
    ignore: Regexes = Field(default_factory=list, description=(
        "Regexes: lines (at any depth) that legitimately differ from the intended config "
        "(a timestamp, a per-device key) are left out of this feature's comparison; a "
        "section header ignored takes its section with it."))


class ComplianceSpec(_Model):
    intended: str = Field(description=(
        "The intended config: a Jinja2 template in templates/ (`<platform>/<name>` or "
        "`<name>`), rendered per device as config steps' templates are."))
    actual: ActualSource = Field(ActualSource.RUNNING, description=(
        "What it is compared with: the running config (read in the device's session), or "
        "the device's latest backup (the last commit of `backups`; no session)."))
    backups: str = Field("backups", description=(
        "With actual: backup, the backup git repository (a backup step's `dir`)."))
    features: list[Feature] = Field(min_length=1)
    ignore: Regexes = Field(default_factory=list, description=(
        "Regexes: lines left out of every feature's comparison."))
    remediate: bool = Field(False, description=(
        "Push each non-compliant feature's remediation (hier_config's commands) through "
        "the config pipeline (diff, approval, rollback), then check again: still not "
        "compliant fails the device (NotCompliant) and puts it back. `runner remediate "
        "RUN_ID` runs a compliance job this way."))

    @field_validator("intended")
    @classmethod
    def _intended(cls, value: str) -> str:
        return _template_file(value)

    @model_validator(mode="after")
    def _rules(self) -> ComplianceSpec:
        names = [f.name for f in self.features]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"feature names are unique: {', '.join(twice)} twice")
        if self.remediate and self.actual is not ActualSource.RUNNING:
            raise ValueError("remediate: true needs actual: running (a remediation is "
                             "computed from the config the device has now)")
        return self


class ComplianceStep(_Model):
    name: str | None = None
    compliance: ComplianceSpec


_KINDS = ((CommandStep, "command"), (ConfigStep, "config"), (BackupStep, "backup"),
          (ComplianceStep, "compliance"))


def _step_kind(value: Any) -> str | None:
    for model, tag in _KINDS:
        if isinstance(value, model):
            return tag
    if isinstance(value, dict):
        kinds = [k for _, k in _KINDS if k in value]
        return kinds[0] if len(kinds) == 1 else None
    return None


Step = Annotated[
    Annotated[CommandStep, Tag("command")]
    | Annotated[ConfigStep, Tag("config")]
    | Annotated[BackupStep, Tag("backup")]
    | Annotated[ComplianceStep, Tag("compliance")],
    Discriminator(_step_kind, custom_error_type="step_kind",
                  custom_error_message="a step has exactly one of command, config, backup, "
                                       "compliance",
                  custom_error_context={}),
]


# A section left out is its model's defaults, made with model_construct: nothing in them to
# validate, and Timeouts() would build Timeouts' own validator (deferred: see _Model) for it.
class JobSpec(_Model):
    """A runner job file."""

    model_config = ConfigDict(extra="forbid", frozen=True,
                              json_schema_extra={"title": "runner job"})

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    targets: Targets = Field(default_factory=Targets.model_construct)
    driver: Driver = Field(
        Driver.NETMIKO, description="Default session driver (asyncssh: runner's own, the fastest "
                               "for large fleets); inventory data `driver` on a host or group "
                               "overrides it.")
    platform: PlatformName | None = Field(None, description=(
        "Platform of targeted hosts for which the inventory gives none (unset on the host, "
        "its groups and the defaults), e.g. in containerlab's flat inventory."))
    concurrency: int = Field(20, ge=1, le=5000, description="Devices at once.")
    busy_wait: float = Field(
        60, ge=0, le=3600, description="Seconds to wait for a device another run holds "
                                       "(through workers); then it is skipped as busy.")
    timeouts: Timeouts = Field(default_factory=Timeouts.model_construct)
    retries: Retries = Field(default_factory=Retries.model_construct)
    limits: Limits = Field(default_factory=Limits.model_construct)
    rollout: Rollout | None = None
    rollback: bool = Field(False, description=(
        "Keep each device's running config before its first config step and put it back "
        "when a later step fails (rejected line, post-check, lost session, budget)."))
    vars: dict[str, Any] = Field(default_factory=dict, description="Template variables.")
    secret_vars: dict[str, SecretRefSpec] = Field(default_factory=dict, description=(
        "Template variables that are secrets, each {env: NAME} or {file: /absolute/path}: "
        "read on the machine that opens the session (a worker, not the dispatcher), masked "
        "in everything runner writes; only the reference is stored or sent."))
    schedule: ScheduleSpec | None = Field(None, description="When `runner serve` runs it.")
    after: After | None = Field(None, description=(
        "Workflows: start after these jobs' runs under `runner serve` ({job, when: "
        "success|failure|always}, a list of them: all, or {all: [...]} / {any: [...]})."))
    trigger: TriggerSpec | None = Field(None, description=(
        "Events that start it under `runner serve`: a signed webhook, a syslog rule."))
    freshness: str | float | None = Field(None, description=(
        "Backup jobs: `runner serve` backs each device up often enough that its newest good "
        "backup is never older than this ('1h', '30m', seconds)."))
    blackouts: list[BlackoutWindow] = Field(default_factory=list, description=(
        "Blackout windows of this job alone, as in blackouts.yml (without `jobs:`)."))
    # exclude: the URLs may hold credentials, and workers never notify: they stay out of the
    # job as it is sent to workers
    notify: list[NotifyTarget] = Field(
        default_factory=list, exclude=True,
        description="Notification targets (Apprise URLs) and the events that send each. Left "
                    "out: `runner serve --notify` targets apply; `[]`: no notifications.")
    steps: list[Step] = Field(min_length=1)

    @model_validator(mode="after")
    def _rules(self) -> JobSpec:
        """Rules across fields: part of the model, so `runner schema`'s users, the worker's
        model_validate and every loader see them (each names its field)."""
        here = type(self).__name__
        config = self.changes_config
        backups = [i for i, s in enumerate(self.steps) if isinstance(s, BackupStep)]
        if len(backups) > 1:
            raise located(here, "a job has at most one backup step", ("steps", backups[1]))
        checks = [i for i, s in enumerate(self.steps) if isinstance(s, ComplianceStep)]
        if len(checks) > 1:
            raise located(here, "a job has at most one compliance step (list its features "
                          "in one)", ("steps", checks[1]))
        for name in self.secret_vars:
            if name in self.vars:
                raise located(here, f"{name!r} is also in vars: a variable is either plain "
                              "or secret", ("secret_vars", name))
        if self.rollout is not None and self.rollout.on_stop is OnStop.ROLLBACK \
                and not self.rolls_back:
            raise located(here, "on_stop: rollback needs rollback: true (on the job or a "
                          "config step)", ("rollout", "on_stop"))
        if self.schedule is not None and self.schedule.approval is Approval.REQUIRED \
                and not config and not checks:
            raise located(here, "approval: required, but the job has no config step (nor "
                          "a compliance step to remediate): nothing to approve",
                          ("schedule", "approval"))
        if self.schedule is not None and self.schedule.supersede \
                and self.schedule.approval is not Approval.REQUIRED:
            raise located(here, "supersede: true replaces older previews awaiting approval; "
                          "it needs approval: required", ("schedule", "supersede"))
        if self.rollback and not config:
            raise located(here, "rollback: true, but the job has no config step to roll "
                          "back (nor a compliance step with remediate: true)", ("rollback",))
        self._serve_rules(here, backups)
        return self

    def _serve_rules(self, here: str, backups: list[int]) -> None:
        """Rules of the sections `runner serve` reads: workflows, events, freshness and the
        job's own blackout windows."""
        try:
            check_freshness(self.freshness)
        except ValueError as exc:
            raise located(here, str(exc), ("freshness",)) from None
        if self.freshness is not None and not backups:
            raise located(here, "freshness: is for backup jobs, and this job has no backup "
                          "step", ("freshness",))
        names = [p.job for p in parents(self.after)[0]]
        for index, name in enumerate(names):
            if name in names[:index]:
                raise located(here, f"{name!r} is named twice", self._after_loc(index))
        hook = self.trigger.webhook if self.trigger else None
        for name in (hook.vars if hook else {}):
            if name not in self.vars:
                raise located(here, f"{name!r} is not a variable of the job: declare it in "
                              "vars: (with its value when no webhook gives one)",
                              ("trigger", "webhook", "vars", name))
        for index, window in enumerate(self.blackouts):
            if window.jobs:
                raise located(here, "a job's own blackout windows apply to it: leave jobs "
                              "out", ("blackouts", index, "jobs"))
        duplicate = first_duplicate(self.blackouts)
        if duplicate is not None:
            raise located(here, f"a window named {self.blackouts[duplicate].name!r} is "
                          "already given", ("blackouts", duplicate, "name"))

    def _after_loc(self, index: int) -> tuple[int | str, ...]:
        if isinstance(self.after, Parent):
            return ("after", "job")
        if isinstance(self.after, list):
            return ("after", index, "job")
        assert self.after is not None
        return ("after", "all" if self.after.all is not None else "any", index, "job")

    @property
    def freshness_s(self) -> float | None:
        return None if self.freshness is None else freshness_seconds(self.freshness)

    @property
    def served(self) -> bool:
        """Whether `runner serve` starts it by itself: a schedule, an `after:`, a trigger
        or a freshness."""
        return any(x is not None for x in (self.schedule, self.after, self.trigger,
                                           self.freshness))

    @property
    def changes_config(self) -> bool:
        """Whether a real run may change config: a config step, or a compliance step that
        remediates."""
        return bool(self.change_steps)

    @property
    def change_steps(self) -> list[int]:
        """The indexes of the steps that change config (each records one config step)."""
        return [i for i, s in enumerate(self.steps) if isinstance(s, ConfigStep)
                or (isinstance(s, ComplianceStep) and s.compliance.remediate)]

    @property
    def compliance(self) -> ComplianceStep | None:
        return next((s for s in self.steps if isinstance(s, ComplianceStep)), None)

    @property
    def needs_session(self) -> bool:
        """Whether a device's steps need its session: not for a compliance check against
        backups alone."""
        return any(not isinstance(s, ComplianceStep)
                   or s.compliance.actual is ActualSource.RUNNING for s in self.steps)

    @property
    def needs_approval(self) -> bool:
        """Whether a real run must carry out an approved preview (`schedule: {approval:
        required}` on a job that changes config; a compliance job's approval is its
        remediations'): from every entry point, not only the scheduler's."""
        return self.schedule is not None and self.schedule.approval is Approval.REQUIRED \
            and self.changes_config

    def rolls_back_step(self, index: int) -> bool:
        """Whether step `index` (a change) puts devices back when it or a later step fails."""
        step = self.steps[index]
        if isinstance(step, ConfigStep) and step.config.rollback is not None:
            return step.config.rollback
        return self.rollback

    @property
    def rolls_back(self) -> bool:
        """Whether any change step puts devices back when the change fails."""
        return any(self.rolls_back_step(i) for i in self.change_steps)

    def step_name(self, index: int) -> str:
        step = self.steps[index]
        if step.name:
            return step.name
        if isinstance(step, CommandStep):
            return step.commands[0] if len(step.commands) == 1 else f"commands-{index + 1}"
        if isinstance(step, ComplianceStep):
            return "compliance"
        return "config" if isinstance(step, ConfigStep) else "backup"


def json_schema() -> dict[str, Any]:
    schema = JobSpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
