"""Human output: live progress while a run goes, and the per-device result table."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any, TextIO

from runner.records import DeviceResult, RunResult
from runner.vocab import SUCCESS, DeviceStatus, StepKind


def table(rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


# Past this many devices the run table lists only the devices that did not end ok or
# changed, and counts the rest (`--all` lists every device).
FULL_TABLE_UP_TO = 50
BAR_WIDTH = 24


class Progress:
    """Devices done by status: on a terminal one live bar (counts per status, a rate),
    redrawn in place; otherwise a line per device as it finishes (log-friendly)."""

    def __init__(self, total: int, stream: TextIO = sys.stderr) -> None:
        self.total = total
        self.stream = stream
        self.status: dict[str, DeviceStatus] = {}  # per device: a later record replaces
        # kept as records come: counting the statuses anew per record is quadratic (at
        # 10,000 devices, seconds of CPU on the run's one process)
        self.counts: Counter[DeviceStatus] = Counter()
        self.failed = 0  # devices whose status is not `worked`, kept the same way
        self.tty = stream.isatty()
        self.began = time.monotonic()
        self._lock = threading.Lock()

    def __call__(self, device: DeviceResult) -> None:
        with self._lock:
            status = device.status
            before = self.status.get(device.host)
            if before is not None:
                self.counts[before] -= 1
                self.failed -= not before.worked
            self.status[device.host] = status
            self.counts[status] += 1
            self.failed += not status.worked
            done = len(self.status)
            if self.tty:
                self.stream.write("\r" + self._fit(self.bar()) + "\033[K")
                if done == self.total:
                    self.stream.write("\n")
            else:
                error = f"  {device.error}" if device.error else ""
                self.stream.write(f"[{done}/{self.total}] done {done}  failed {self.failed}  "
                                  f"remaining {self.total - done}  {device.host}: "
                                  f"{status.value}{error}\n")
            self.stream.flush()

    def bar(self) -> str:
        """`[=====>     ] 120/400  ok 100  changed 10  failed 10  40.0/s`."""
        done = len(self.status)
        filled = BAR_WIDTH * done // self.total if self.total else BAR_WIDTH
        head = ">" if 0 < filled < BAR_WIDTH else ""
        bar = ("=" * filled + head).ljust(BAR_WIDTH)[:BAR_WIDTH]
        counts = self.counts
        by_status = "  ".join(f"{s} {counts[s]}" for s in DeviceStatus if counts[s])
        elapsed = time.monotonic() - self.began
        rate = f"  {done / elapsed:.1f}/s" if elapsed > 0 else ""
        return f"[{bar}] {done}/{self.total}  {by_status}{rate}"

    def _fit(self, line: str) -> str:
        """Cut to the terminal's width: a wrapped line could not be redrawn in place."""
        try:
            width = os.get_terminal_size(self.stream.fileno()).columns
        except (OSError, ValueError):
            return line
        return line[:width - 1] if width > 1 else line  # 0: the terminal did not say


def run_table(run: RunResult, show_all: bool = False,
              counts: dict[str, int] | None = None) -> str:
    """The per-device table; past FULL_TABLE_UP_TO devices only the ones that did not end
    ok or changed are listed (every one of them), the rest counted per status. `counts`:
    the whole run's per status, when run.devices holds only what is listed (a stored run
    is not read whole to print it)."""
    devices = run.devices
    hidden: Counter[DeviceStatus] = Counter()
    total = sum(counts.values()) if counts is not None else len(devices)
    if total > FULL_TABLE_UP_TO and not show_all:
        hidden = Counter({DeviceStatus(s): n for s, n in counts.items()
                          if n and s in SUCCESS}) if counts is not None else \
            Counter(d.status for d in devices if d.status in SUCCESS)
        devices = [d for d in devices if d.status not in SUCCESS]
    rows = [("DEVICE", "STATUS", "CHANGED", "DURATION", "ERROR")]
    for d in devices:
        error = f"{d.error_class}: {d.error}" if d.error else ""
        rows.append((d.host, d.status, "yes" if d.changed else "no", f"{d.duration_s:.1f}s",
                     error[:120]))
    summary = "  ".join(f"{k} {v}" for k, v in (counts or run.summary).items() if v)
    mode = " (dry run: nothing was sent)" if run.dry_run else ""
    head = f"run {run.run_id}  job {run.job}{mode}"
    body = table(rows) if len(rows) > 1 else "every device ended ok or changed"
    if hidden:
        counted = ", ".join(f"{n} {s}" for s, n in sorted(hidden.items()))
        body += f"\n... and {sum(hidden.values())} more not listed ({counted}; --all lists " \
                "every device)"
    tail = f"\n{summary}"
    if run.backup_commit:
        tail += f"\nbackups: commit {run.backup_commit[:12]}"
    return f"{head}\n{body}{tail}"


def diffs(run: RunResult) -> str:
    """The config diffs of a run, device by device (for --diff and dry runs)."""
    out = []
    for d in run.devices:
        for s in d.steps:
            if s.diff:
                out.append(f"--- {d.host}: {s.name}\n{s.diff.rstrip()}")
            elif run.dry_run and s.kind is StepKind.ROLLBACK and s.output:
                out.append(f"--- {d.host}: {s.name}: would send\n{s.output.rstrip()}")
    return "\n".join(out)


def account_lines(row: dict[str, Any], links: dict[str, Any]) -> list[str]:
    """Who did what to a run, for `runner show`: who started it, the override it ran under,
    the decision on a preview and the run that carried it out, the approval a run carried
    out, who asked to cancel it."""
    out = []
    if row.get("started_by"):
        out.append(f"started by {row['started_by']}")
    if row.get("remediates"):
        out.append(f"remediates the drift compliance run {row['remediates']} found")
    override = row.get("override")
    if override:
        why = f": {override['reason']}" if override.get("reason") else ""
        out.append(f"approval overridden by {override.get('by')} at {override.get('at')}"
                   f"{why}")
    held = row.get("blackout_override")
    if held:
        out.append(f"blackout {', '.join(held.get('windows') or [])} overridden by "
                   f"{held.get('by')} at {held.get('at')}: {held.get('reason')}")
    if row.get("workflow"):
        out.append(f"part of workflow {row['workflow']} (runner workflow show "
                   f"{row['workflow']})")
    approval = links.get("approval")
    if approval:
        out.append(f"carries out preview {approval['preview']}, approved by "
                   f"{approval.get('by')} at {approval.get('at')}")
    decision = row.get("decision")
    if decision and decision.get("by"):
        why = f": {decision['reason']}" if decision.get("reason") else ""
        out.append(f"{row['status']} by {decision['by']} at {decision.get('at')}{why}")
    elif row.get("status") == "awaiting_approval":
        out.append(f"awaiting approval until {row.get('approval_deadline')}: runner approve "
                   f"{row['run_id']} (or runner reject {row['run_id']})")
    if links.get("carried_out_by"):
        out.append(f"carried out by run {links['carried_out_by']}")
    if row.get("cancel_requested"):
        out.append(f"cancel requested by {row.get('cancel_requested_by')} at "
                   f"{row['cancel_requested']}")
    return out


def rehearsal_text(rehearsal: dict[str, Any], *, with_diffs: bool = True,
                   show_all: bool = False, dry_run: bool = False) -> str:
    """A run's rehearsal on a twin, for the engineer who signs the change off: passed or
    not and what that meant for production, per device what happened on the twin (past
    FULL_TABLE_UP_TO devices only the ones that did not pass), the twin's diffs, and what
    became of the twin afterwards."""
    devices = rehearsal.get("devices") or []
    passed = bool(rehearsal.get("passed"))
    verdict = ("PASSED: production was previewed after it (nothing sent)" if dry_run else
               "PASSED: production was run after it") if passed else \
        "FAILED: production was NOT contacted"
    if rehearsal.get("error"):  # the twin could not be used at all
        verdict += f" ({rehearsal['error']})"
    lines = [f"rehearsal on twin {rehearsal.get('twin')}: {verdict}",
             f"  twin run {rehearsal.get('run_id') or '(none)'} ({rehearsal.get('status')}), "
             f"{rehearsal.get('started')} .. {rehearsal.get('finished')}; its records: "
             f"runner --db {rehearsal.get('records')} show {rehearsal.get('run_id')}"]
    summary = "  ".join(f"{k} {v}" for k, v in (rehearsal.get("summary") or {}).items() if v)
    listed = devices if show_all or len(devices) <= FULL_TABLE_UP_TO else \
        [d for d in devices if d["status"] not in SUCCESS]
    rows = [("ON THE TWIN", "STATUS", "CHANGED", "FAILED STEP", "ERROR")]
    for d in listed:
        error = f"{d['error_class']}: {d['error']}" if d.get("error") else ""
        rows.append((d["host"], d["status"], "yes" if d.get("changed") else "no",
                     d.get("failed_check") or "", error[:120]))
    if len(rows) > 1:
        lines += ["  " + line for line in table(rows).split("\n")]
    if len(listed) < len(devices):
        lines.append(f"  ... and {len(devices) - len(listed)} more ended ok or changed "
                     "(--all lists every device)")
    lines.append(f"  {summary}" if summary else "  no device was rehearsed")
    reset = rehearsal.get("reset")
    lines.append(f"  twin afterwards: {reset}" if reset else
                 "  twin afterwards: reset once the run ends (unless --keep)")
    if with_diffs:
        for d in devices:
            if d.get("diff") and (show_all or not passed or len(devices) <= FULL_TABLE_UP_TO):
                lines.append(f"--- {d['host']} on the twin\n{d['diff'].rstrip()}")
    return "\n".join(lines)
