"""Human output: live progress while a run goes, and the per-device result table."""

from __future__ import annotations

import sys
import threading
from collections import Counter
from collections.abc import Sequence
from typing import TextIO

from runner.records import DeviceResult, RunResult
from runner.vocab import SUCCESS, StepKind


def table(rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


class Progress:
    """Devices done / failed / remaining: one updating line on a terminal, else a line per
    device as it finishes (log-friendly)."""

    def __init__(self, total: int, stream: TextIO = sys.stderr) -> None:
        self.total = total
        self.stream = stream
        self.status: dict[str, str] = {}  # per device: a later record (rollback) replaces
        self.tty = stream.isatty()
        self._lock = threading.Lock()

    def __call__(self, device: DeviceResult) -> None:
        with self._lock:
            self.status[device.host] = device.status
            counts = Counter(self.status.values())
            done = len(self.status)
            failed = done - sum(counts[s] for s in SUCCESS)
            line = (f"[{done}/{self.total}] done {done}  failed {failed}  "
                    f"remaining {self.total - done}")
            if self.tty:
                self.stream.write(f"\r{line}  ({device.host}: {device.status})\033[K")
                if done == self.total:
                    self.stream.write("\n")
            else:
                error = f"  {device.error}" if device.error else ""
                self.stream.write(f"{line}  {device.host}: {device.status}{error}\n")
            self.stream.flush()


def run_table(run: RunResult) -> str:
    rows = [("DEVICE", "STATUS", "CHANGED", "DURATION", "ERROR")]
    for d in run.devices:
        error = f"{d.error_class}: {d.error}" if d.error else ""
        rows.append((d.host, d.status, "yes" if d.changed else "no", f"{d.duration_s:.1f}s",
                     error[:120]))
    summary = "  ".join(f"{k} {v}" for k, v in run.summary.items() if v)
    mode = " (dry run: nothing was sent)" if run.dry_run else ""
    head = f"run {run.run_id}  job {run.job}{mode}"
    tail = f"\n{summary}"
    if run.backup_commit:
        tail += f"\nbackups: commit {run.backup_commit[:12]}"
    return f"{head}\n{table(rows)}{tail}"


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
