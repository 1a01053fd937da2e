"""Operator views (issue 27): a schedule paused (who, when, why) and obeyed by every
`runner serve`; the active scheduler's last heartbeat beside its lease; the job files each
scheduler found invalid and what it does with them (keeps a previous version, or leaves
the file out); runs indexed by the run they rerun (a run's page links its reruns); a
running run's devices at work and when each started (`runs.working`, the live run page).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def tables() -> sa.MetaData:
    """The tables this revision adds (a copy: later revisions change them, not this)."""
    meta = sa.MetaData()
    sa.Table(
        "schedule_pauses", meta,
        sa.Column("job", sa.String(200), primary_key=True),
        sa.Column("paused_by", sa.String(200), nullable=False),
        sa.Column("paused_at", sa.String(40), nullable=False),
        sa.Column("reason", sa.Text),
    )
    sa.Table(
        "schedule_files", meta,
        sa.Column("path", sa.String(500), primary_key=True),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("kept", sa.String(200)),  # the job whose previous version stays in effect
        sa.Column("server", sa.String(200), nullable=False),
        sa.Column("updated", sa.String(40), nullable=False),
    )
    return meta


def upgrade() -> None:
    bind = op.get_bind()
    present = set(sa.inspect(bind).get_table_names())
    for table in tables().sorted_tables:
        if table.name not in present:
            table.create(bind)
    columns = {c["name"] for c in sa.inspect(bind).get_columns("schedule_lease")}
    if "renewed" not in columns:
        op.add_column("schedule_lease", sa.Column("renewed", sa.Float))
    if "working" not in {c["name"] for c in sa.inspect(bind).get_columns("runs")}:
        op.add_column("runs", sa.Column("working", sa.JSON))
    indexes = {i["name"] for i in sa.inspect(bind).get_indexes("runs")}
    if "ix_runs_rerun_of" not in indexes:
        op.create_index("ix_runs_rerun_of", "runs", ["rerun_of"])


def downgrade() -> None:
    op.drop_index("ix_runs_rerun_of", table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("working")
    with op.batch_alter_table("schedule_lease") as batch:
        batch.drop_column("renewed")
    for table in reversed(tables().sorted_tables):
        op.drop_table(table.name)
