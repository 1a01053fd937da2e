"""Change-management scheduling (issue 26): events that start runs (webhooks, syslog
messages, workflow steps, occurrences deferred past a blackout, freshness backups), each
claimed once by its key; syslog messages seen (one run per message however many servers
hear it); workflow runs with their graph; each device's newest good backup per freshness
job. Runs record their workflow and a blackout override (who, when, why, which windows).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def tables() -> sa.MetaData:
    """The tables this revision adds (a copy: later revisions change them, not this)."""
    meta = sa.MetaData()
    sa.Table(
        "schedule_events", meta,
        sa.Column("job", sa.String(200), primary_key=True),
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("received", sa.String(40), nullable=False),
        sa.Column("due", sa.String(40), nullable=False),
        sa.Column("hosts", sa.JSON),
        sa.Column("vars", sa.JSON),
        sa.Column("by", sa.String(200)),
        sa.Column("detail", sa.JSON),
        sa.Column("workflow", sa.String(32), index=True),
        sa.Column("run_id", sa.String(32)),
        sa.Column("server", sa.String(200)),
        sa.Column("reason", sa.Text),
        sa.Column("updated", sa.String(40)),
        sa.Index("ix_schedule_events_status_due", "status", "due"),
    )
    sa.Table(
        "syslog_seen", meta,
        sa.Column("job", sa.String(200), primary_key=True),
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("received", sa.String(40), nullable=False, index=True),
    )
    sa.Table(
        "workflows", meta,
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("origin", sa.String(300), nullable=False, unique=True),
        sa.Column("root", sa.String(200), nullable=False, index=True),
        sa.Column("root_key", sa.String(200), nullable=False),
        sa.Column("root_run", sa.String(32)),
        sa.Column("graph", sa.JSON, nullable=False),
        sa.Column("status", sa.String(20), nullable=False, index=True),
        sa.Column("started", sa.String(40), nullable=False, index=True),
        sa.Column("finished", sa.String(40)),
    )
    sa.Table(
        "backup_ages", meta,
        sa.Column("job", sa.String(200), primary_key=True),
        sa.Column("host", sa.String(255), primary_key=True),
        sa.Column("last_good", sa.String(40)),
        sa.Column("last_attempt", sa.String(40)),
        sa.Column("last_status", sa.String(20)),
        sa.Column("last_run", sa.String(32)),
    )
    sa.Table(
        "freshness_state", meta,
        sa.Column("job", sa.String(200), primary_key=True),
        sa.Column("freshness", sa.Float, nullable=False),
        sa.Column("folded_until", sa.String(40)),
        sa.Column("rate", sa.Float),
        sa.Column("devices", sa.Integer),
        sa.Column("warning", sa.Text),
        sa.Column("planned", sa.String(40)),
    )
    return meta


RUN_COLUMNS = (("workflow", sa.String(32)), ("blackout_override", sa.JSON))


def upgrade() -> None:
    bind = op.get_bind()
    present = set(sa.inspect(bind).get_table_names())
    for table in tables().sorted_tables:
        if table.name not in present:
            table.create(bind)
    columns = {c["name"] for c in sa.inspect(bind).get_columns("runs")}
    for name, kind in RUN_COLUMNS:
        if name not in columns:
            op.add_column("runs", sa.Column(name, kind))
    indexes = {i["name"] for i in sa.inspect(bind).get_indexes("runs")}
    if "ix_runs_workflow" not in indexes:
        op.create_index("ix_runs_workflow", "runs", ["workflow"])


def downgrade() -> None:
    op.drop_index("ix_runs_workflow", table_name="runs")
    for name, _ in reversed(RUN_COLUMNS):
        op.drop_column("runs", name)
    for table in reversed(tables().sorted_tables):
        op.drop_table(table.name)
