"""Compliance over time: each device's latest state per feature (the web's matrix, `runner
compliance`, the metrics) and the history of its changes (when it drifted, when it was
fixed, by which run); written as a run that checked compliance ends."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    func,
    insert,
    select,
    update,
)

from runner.records import DeviceResult, RunResult, now_iso
from runner.store.results import ResultsStore
from runner.vocab import ComplianceEvent, ComplianceState, DeviceStatus, StepKind

metadata = MetaData()
# The latest check of each device and feature, and since when it has been in its state.
compliance_state = Table(
    "compliance_state", metadata,
    Column("host", String(255), primary_key=True),
    Column("feature", String(200), primary_key=True),
    Column("job", String(200), nullable=False),
    Column("status", String(20), nullable=False, index=True),  # a ComplianceState
    Column("since", String(40), nullable=False),  # when it entered this status
    Column("since_run", String(32), nullable=False),  # ... found by this run
    Column("checked", String(40), nullable=False),  # the latest check
    Column("run_id", String(32), nullable=False),  # ... by this run
    Column("missing", JSON),  # the lines, with their sections' headers
    Column("extra", JSON),
    Column("missing_count", Integer),  # the lines themselves, headers aside
    Column("extra_count", Integer),
    Column("remediation", JSON),
    Column("source", String(40)),  # running, or backup <commit>
)
# Every change of state: first check, drifted, fixed (by a remediation run, or by hand).
compliance_events = Table(
    "compliance_events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("host", String(255), nullable=False),
    Column("feature", String(200), nullable=False),
    Column("event", String(20), nullable=False),  # a ComplianceEvent
    Column("status", String(20), nullable=False),  # the ComplianceState it led to
    Column("at", String(40), nullable=False),
    Column("run_id", String(32), nullable=False),  # the run that saw it
    Column("job", String(200), nullable=False),
    Column("remediates", String(32)),  # that run remediated this compliance run's drift
)
Index("ix_compliance_events_host_feature_at", compliance_events.c.host,
      compliance_events.c.feature, compliance_events.c.at)
Index("ix_compliance_events_at", compliance_events.c.at)


@dataclass(frozen=True)
class Change:
    """A device's compliance with a feature changed in this run."""

    host: str
    feature: str
    event: ComplianceEvent
    status: ComplianceState


def observed(device: DeviceResult) -> tuple[dict[str, Any], str] | None:
    """The device's compliance as the run leaves it (features, source): after a
    remediation that held, its last check; when a change was put back (or none was made),
    its first; none when the run cannot say (the rollback failed, no check was made)."""
    checks = [s for s in device.steps if s.kind is StepKind.COMPLIANCE
              and isinstance(s.parsed, dict) and s.parsed.get("source") != "preview"]
    if not checks or device.error_class == "RollbackFailed":
        return None
    first = checks[0].parsed
    assert isinstance(first, dict)
    features = dict(first.get("features") or {})
    source = str(first.get("source") or "")
    if device.status is DeviceStatus.CHANGED and len(checks) > 1:  # checked again after
        last = checks[-1].parsed
        assert isinstance(last, dict)
        features.update(last.get("features") or {})
        source = str(last.get("source") or source)
    return features, source


def record_run(store: ResultsStore, run: RunResult) -> list[Change]:
    """Store the compliance each device of `run` was found in; what changed (first checks,
    new drift, fixes), in the run's device order."""
    changes: list[Change] = []
    at = run.finished or now_iso()
    with store.engine.begin() as conn:
        for device in run.devices:
            found = observed(device)
            if found is None:
                continue
            features, source = found
            for feature, result in features.items():
                status = ComplianceState.COMPLIANT if result.get("compliant") \
                    else ComplianceState.NON_COMPLIANT
                row = conn.execute(select(compliance_state.c.status).where(
                    compliance_state.c.host == device.host,
                    compliance_state.c.feature == feature)).first()
                values = {"job": run.job, "status": status, "checked": at,
                          "run_id": run.run_id, "missing": result.get("missing") or [],
                          "extra": result.get("extra") or [],
                          "missing_count": int(result.get("missing_count") or 0),
                          "extra_count": int(result.get("extra_count") or 0),
                          "remediation": result.get("remediation") or [], "source": source}
                event = None
                if row is None:
                    event = ComplianceEvent.FIRST
                    conn.execute(insert(compliance_state).values(
                        host=device.host, feature=feature, since=at, since_run=run.run_id,
                        **values))
                else:
                    if row[0] != status:
                        event = ComplianceEvent.FIXED if status is ComplianceState.COMPLIANT \
                            else ComplianceEvent.DRIFTED
                        values |= {"since": at, "since_run": run.run_id}
                    conn.execute(update(compliance_state).where(
                        compliance_state.c.host == device.host,
                        compliance_state.c.feature == feature).values(**values))
                if event is not None:
                    conn.execute(insert(compliance_events).values(
                        host=device.host, feature=feature, event=event, status=status, at=at,
                        run_id=run.run_id, job=run.job, remediates=run.remediates))
                    changes.append(Change(device.host, feature, event, status))
    return changes


@dataclass(frozen=True)
class StateFilter:
    """Which latest states to list."""

    feature: str | None = None
    status: ComplianceState | None = None
    host: str | None = None

    def where(self) -> list[Any]:
        out: list[Any] = []
        if self.feature:
            out.append(compliance_state.c.feature == self.feature)
        if self.status:
            out.append(compliance_state.c.status == self.status)
        if self.host:
            out.append(compliance_state.c.host == self.host)
        return out


def latest(store: ResultsStore, where: StateFilter | None = None) -> list[dict[str, Any]]:
    """Each device's latest state per feature (`runner compliance --json`, the API), by
    device and feature."""
    query = select(compliance_state).where(*(where or StateFilter()).where()).order_by(
        compliance_state.c.host, compliance_state.c.feature)
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def compliance_document(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The latest states as `runner compliance --json` prints and GET /api/compliance
    serves them: a summary per feature, and a row per device and feature."""
    summary: dict[str, dict[str, int]] = {}
    for row in rows:
        tally = summary.setdefault(row["feature"], dict.fromkeys(ComplianceState, 0))
        tally[row["status"]] += 1
    return {"summary": summary, "devices": len({r["host"] for r in rows}), "latest": rows}


def features(store: ResultsStore) -> list[str]:
    with store.engine.connect() as conn:
        return [str(r[0]) for r in conn.execute(
            select(compliance_state.c.feature).distinct().order_by(compliance_state.c.feature))]


def counts(store: ResultsStore) -> dict[tuple[str, str], int]:
    """Devices per (feature, status): the metric runner_compliance_devices."""
    query = select(compliance_state.c.feature, compliance_state.c.status, func.count()) \
        .group_by(compliance_state.c.feature, compliance_state.c.status)
    with store.engine.connect() as conn:
        return {(str(f), str(s)): int(n) for f, s, n in conn.execute(query)}


def history(store: ResultsStore, host: str | None = None, feature: str | None = None,
            limit: int = 200) -> list[dict[str, Any]]:
    """Changes of state, newest first: when a device drifted, when it was fixed, by which
    run (and, for a remediation, which compliance run it remediated)."""
    query = select(compliance_events).order_by(compliance_events.c.at.desc(),
                                               compliance_events.c.id.desc()).limit(limit)
    if host:
        query = query.where(compliance_events.c.host == host)
    if feature:
        query = query.where(compliance_events.c.feature == feature)
    with store.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(query)]
    for row in rows:
        row.pop("id", None)
    return rows
