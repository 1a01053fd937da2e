"""runner's vocabularies, each one StrEnum: what a device, step, run, engine, driver or
schedule policy can be. A StrEnum is its own string, so JSON, the database and the CLI
carry the plain words while mypy catches a misspelt member."""

from __future__ import annotations

from enum import StrEnum


class DeviceStatus(StrEnum):
    """What happened to one device in one run."""

    OK = "ok"
    CHANGED = "changed"
    FAILED = "failed"  # the device refused input, a check failed, or the session was lost
    UNREACHABLE = "unreachable"  # nothing answered: nothing was sent
    AUTH_FAILED = "auth_failed"
    TIMED_OUT = "timed_out"
    SKIPPED = "skipped"  # never contacted: rollout stopped, run interrupted, device busy
    # changed, then put back as it was after a later step failed: a failure, config intact
    ROLLED_BACK = "rolled_back"
    # a compliance step found the config differs from the intended one (drift): the run
    # worked (not a failure: no stop rule, no `failed` notification); exit code 3
    NON_COMPLIANT = "non_compliant"

    @property
    def success(self) -> bool:
        return self in (DeviceStatus.OK, DeviceStatus.CHANGED)

    @property
    def worked(self) -> bool:
        """The device did what the job asked; a drift found is a finding, not a failure."""
        return self.success or self is DeviceStatus.NON_COMPLIANT


SUCCESS = frozenset({DeviceStatus.OK, DeviceStatus.CHANGED})


class StepKind(StrEnum):
    COMMAND = "command"
    CONFIG = "config"
    BACKUP = "backup"
    ROLLBACK = "rollback"  # runner restoring the config it kept (or, dry run, would send)
    COMPLIANCE = "compliance"  # intended vs actual config, per feature


class ActualSource(StrEnum):
    """What a compliance step compares the intended config with."""

    RUNNING = "running"  # the device's running config, read in its session
    BACKUP = "backup"  # its latest backup (a backup repository's last commit): no session


class ComplianceState(StrEnum):
    """A device's state for one compliance feature (`runner compliance`, the web matrix)."""

    COMPLIANT = "compliant"
    NON_COMPLIANT = "non_compliant"


class ComplianceEvent(StrEnum):
    """A change in a device's compliance with a feature, kept as its history."""

    FIRST = "first"  # the first check of this device and feature
    DRIFTED = "drifted"  # it was compliant (or never checked) and is not any more
    FIXED = "fixed"  # it was not compliant and is now (by a remediation run, or by hand)


class RunStatus(StrEnum):
    RUNNING = "running"
    OK = "ok"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # cancelled, Ctrl-C, or its process died
    AWAITING_APPROVAL = "awaiting_approval"  # a previewed change waiting for an operator
    APPROVED = "approved"  # an operator said yes: a run of its own carries the change out
    REJECTED = "rejected"  # an operator said no to the previewed change
    EXPIRED = "expired"  # nobody approved it within the approval window
    # rehearsed on a twin first (`--rehearse`), which did not end well: production was
    # never contacted; the run's `rehearsal` says, per device, what happened on the twin
    REHEARSAL_FAILED = "rehearsal_failed"


class ImportOutcome(StrEnum):
    """What `runner db import` did with a kept run."""

    STORED = "stored"  # the database did not have it
    COMPLETED = "completed"  # it had the run unfinished: the file's records finish it
    UNCHANGED = "unchanged"  # it had the run as the file has it
    REPLACED = "replaced"  # --replace: another stored run of that id was overwritten


class Engine(StrEnum):
    """Where a run's devices are worked on (the executor registry's keys)."""

    LOCAL = "local"  # one asyncio loop in this process
    PROCESSES = "processes"  # one engine process per core on this machine
    CELERY = "celery"  # shards on `runner worker` machines


class EngineChoice(StrEnum):
    """What a user may ask for: an engine, or `auto` (processes for large runs)."""

    AUTO = "auto"
    LOCAL = "local"
    PROCESSES = "processes"
    CELERY = "celery"


class OnStop(StrEnum):
    """What a rollout does when its stop rule fires."""

    SKIP = "skip"  # the remaining devices are skipped
    ROLLBACK = "rollback"  # ... and devices changed in earlier batches are put back


class Driver(StrEnum):
    NETMIKO = "netmiko"
    SCRAPLI = "scrapli"
    ASYNCSSH = "asyncssh"


class SecretSource(StrEnum):
    """Where a secret reference (`{env: NAME}`, `{file: PATH}`) takes its value from."""

    ENV = "env"  # an environment variable of the process that opens the session
    FILE = "file"  # a file on the machine that opens the session


class Overlap(StrEnum):
    """A scheduled run still going when the next occurrence is due."""

    SKIP = "skip"
    QUEUE = "queue"


class NotifyEvent(StrEnum):
    """What a run may notify about (a notification target's `on:` list)."""

    FAILED = "failed"  # a device ended other than ok/changed
    CHANGED = "changed"  # a device's config changed
    BACKUP_CHANGED = "backup_changed"  # a backup commit holds a changed config
    ROLLED_BACK = "rolled_back"  # a device was put back after a failed change
    AWAITING_APPROVAL = "awaiting_approval"  # a previewed change waits for an operator
    # a device newly out of compliance with a feature (drift that was there at the last
    # check is not news: no notification every night for the same drift)
    DRIFT = "drift"
    ALWAYS = "always"  # every finished run


class Approval(StrEnum):
    """Whether a scheduled change waits for an operator."""

    NONE = "none"  # it runs at its time
    REQUIRED = "required"  # at its time a dry run previews it; `runner approve` runs it


class OccurrenceStatus(StrEnum):
    """What became of one scheduled occurrence (or event, or workflow step)."""

    PENDING = "pending"  # an event waiting to start: debounce, its parents, a window's end
    RUNNING = "running"
    DONE = "done"
    AWAITING_APPROVAL = "awaiting_approval"  # previewed; the change waits for an operator
    # then, as its preview is decided (runner.schedule.listing: read from the runs):
    APPROVED = "approved"  # approved; the run carrying it out is going
    REJECTED = "rejected"  # an operator said no
    EXPIRED = "expired"  # nobody decided within the approval window
    # ... and once the approved change was carried out: done, failed or interrupted
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    # rehearsed on a twin (`schedule.rehearse`), which failed: production not contacted
    REHEARSAL_FAILED = "rehearsal_failed"
    MISSED = "missed"  # misfired (too late) or coalesced into a later one
    SKIPPED = "skipped"  # the previous run was still going (overlap: skip), a blackout
    DEFERRED = "deferred"  # due in a blackout window: a run at the window's end instead


class OnBlackout(StrEnum):
    """What becomes of an occurrence due inside a blackout window."""

    SKIP = "skip"  # recorded as skipped: blackout NAME
    DEFER = "defer"  # run once the window (and any window joining it) has ended


class When(StrEnum):
    """Which outcomes of a parent start a workflow child (`after: {job, when}`)."""

    SUCCESS = "success"  # the parent's run ended ok
    FAILURE = "failure"  # the parent's run failed or was interrupted
    ALWAYS = "always"  # the parent's run ended, whatever its outcome


class Join(StrEnum):
    """How a workflow child with several parents waits for them."""

    ALL = "all"  # every parent ended as its `when` says
    ANY = "any"  # the first parent that ended as its `when` says


class EventSource(StrEnum):
    """What started a run that no schedule's time did."""

    WEBHOOK = "webhook"  # POST /hooks/JOB on `runner serve --listen`
    SYSLOG = "syslog"  # a message matching the job's rule on `runner serve --syslog`
    WORKFLOW = "workflow"  # its parents in a workflow ended (`after:`)
    DEFERRED = "deferred"  # an occurrence due in a blackout, run at the window's end
    FRESHNESS = "freshness"  # devices whose newest good backup is getting old


class WorkflowStatus(StrEnum):
    """Where one workflow run (an occurrence of a job with children) stands."""

    RUNNING = "running"  # a step is running or waiting
    OK = "ok"  # every step that ran ended ok (steps whose `when` did not hold: not run)
    FAILED = "failed"  # a step failed, was interrupted, rejected or blacked out


class Role(StrEnum):
    """What a `runner web` token may do."""

    VIEWER = "viewer"  # read runs, schedules, backups, labs and metrics
    OPERATOR = "operator"  # ... and run, cancel, approve and reject
    ADMIN = "admin"  # ... and run a change that needs approval without one (recorded)

    def allows(self, needed: Role) -> bool:
        order = (Role.VIEWER, Role.OPERATOR, Role.ADMIN)
        return order.index(self) >= order.index(needed)


class SchemaState(StrEnum):
    """Where a database stands in runner's migration history (`runner db current`)."""

    CURRENT = "current"  # at this runner's head revision
    BEHIND = "behind"  # an older revision: an upgrade brings it to head
    UNVERSIONED = "unversioned"  # runner's tables without a version: a runner before Alembic
    EMPTY = "empty"  # none of runner's tables yet
    AHEAD = "ahead"  # a revision this runner does not know: a newer runner migrated it


class LinkState(StrEnum):
    """A lab link interface's administrative state (`runner lab link`)."""

    UP = "up"
    DOWN = "down"


class NetemMethod(StrEnum):
    """How `runner lab netem` impaired a link on this kernel."""

    NETEM = "netem"  # one tc netem qdisc, as containerlab does
    TBF_NFT = "tbf+nftables"  # no sch_netem in the kernel: tbf for rate, nftables for loss


class GoalKind(StrEnum):
    """What an exercise goal tests (`runner lab exercise check`)."""

    REACHES = "reaches"  # NODE reaches ADDRESS: a ping from the node gets answers
    BGP = "bgp"  # NODE has BGP STATE with PEER
    OSPF = "ospf"  # NODE has OSPF STATE with NEIGHBOUR (a node or a router id)


class GraphFormat(StrEnum):
    """What `runner lab graph` writes."""

    DOT = "dot"  # Graphviz source
    MERMAID = "mermaid"  # a mermaid flowchart (renders in GitHub, GitLab, Notion...)
    SVG = "svg"  # through Graphviz
    PNG = "png"
