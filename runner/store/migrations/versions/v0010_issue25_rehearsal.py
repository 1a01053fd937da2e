"""Rehearsals (issue 25): a run rehearsed on a twin first keeps what happened there
(`runs.rehearsal`: the twin, its run, passed or not, per device its status, error class,
failed check and diff, whether the twin was reset); the run status `rehearsal_failed`
needs no schema change (statuses are plain text).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    bind = op.get_bind()
    if "rehearsal" not in {c["name"] for c in sa.inspect(bind).get_columns("runs")}:
        op.add_column("runs", sa.Column("rehearsal", sa.JSON))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("rehearsal")
