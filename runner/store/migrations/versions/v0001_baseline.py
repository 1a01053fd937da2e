"""Baseline: runner's schema as it was before migrations (results and schedule stores).

A database an earlier runner made with `create_all` (and its hand-written `ALTER TABLE ADD
COLUMN`s) has these tables but no version: this revision adopts it in place. A table it
lacks is created; a column or index added to the schema since it was made is added; nothing
is dropped or rewritten, so every run in it stays. On an empty database it creates all.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def tables() -> sa.MetaData:
    """The schema at this revision (a copy: later revisions change it, not this)."""
    meta = sa.MetaData()
    sa.Table(
        "runs", meta,
        sa.Column("run_id", sa.String(32), primary_key=True),
        sa.Column("job", sa.String(200), nullable=False, index=True),
        sa.Column("job_file", sa.Text),
        sa.Column("started", sa.String(40), nullable=False, index=True),
        sa.Column("finished", sa.String(40)),
        sa.Column("status", sa.String(20), nullable=False, index=True),
        sa.Column("dry_run", sa.Boolean, nullable=False),
        sa.Column("engine", sa.String(20), nullable=False),
        sa.Column("occurrence", sa.String(100), index=True),
        sa.Column("summary", sa.JSON),
        sa.Column("backup_commit", sa.String(64)),
        sa.Column("rerun_of", sa.String(32)),
        sa.Column("approval_deadline", sa.String(40)),
        sa.Column("job_spec", sa.JSON),
        sa.Column("inputs", sa.JSON),
        sa.Column("approves", sa.String(32), index=True),
        sa.Column("decision", sa.JSON),
        sa.Column("notifications", sa.JSON),
        sa.Column("owner", sa.String(200)),
        sa.Column("heartbeat", sa.String(40)),
        sa.Column("hosts", sa.JSON),
        sa.Column("error", sa.Text),
    )
    sa.Table(
        "devices", meta,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.run_id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("changed", sa.Boolean, nullable=False),
        sa.Column("duration_s", sa.Float),
        sa.Column("error", sa.Text),
        sa.Column("error_class", sa.String(100)),
        sa.Column("attempts", sa.Integer),
        sa.Column("driver", sa.String(20)),
        sa.Column("worker", sa.String(200)),
        sa.Column("started", sa.String(40)),
        sa.Column("finished", sa.String(40)),
        sa.Column("steps", sa.JSON),
        sa.Column("position", sa.Integer),
        sa.UniqueConstraint("run_id", "host", name="one_record_per_device"),
    )
    sa.Table(
        "schedule_state", meta,
        sa.Column("job", sa.String(200), primary_key=True),
        sa.Column("trigger", sa.Text, nullable=False),
        sa.Column("next_fire", sa.String(40)),
    )
    sa.Table(
        "schedule_occurrences", meta,
        sa.Column("job", sa.String(200), primary_key=True),
        sa.Column("occurrence", sa.String(40), primary_key=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("run_id", sa.String(32)),
        sa.Column("server", sa.String(200)),
        sa.Column("updated", sa.String(40)),
    )
    sa.Table(
        "schedule_lease", meta,
        sa.Column("name", sa.String(50), primary_key=True),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("expires", sa.Float, nullable=False),
    )
    return meta


def upgrade() -> None:
    bind = op.get_bind()
    present = set(sa.inspect(bind).get_table_names())
    for table in tables().sorted_tables:
        if table.name not in present:
            table.create(bind)
            continue
        # Made by an earlier runner: every column it lacks was added after the first
        # release, and all of those may be NULL (its rows predate them).
        inspector = sa.inspect(bind)
        columns = {c["name"] for c in inspector.get_columns(table.name)}
        missing = [c for c in table.columns if c.name not in columns]
        for column in missing:
            assert column.nullable, f"{table.name}.{column.name} cannot be added to old rows"
            op.add_column(table.name, sa.Column(column.name, column.type, nullable=True))
        indexes = {i["name"] for i in inspector.get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in indexes:
                op.create_index(str(index.name), table.name, [c.name for c in index.columns])


def downgrade() -> None:
    for table in reversed(tables().sorted_tables):
        op.drop_table(table.name)
