"""Who did it: each run records who started it (`user@host` on the command line, the
token's name over HTTP, the scheduler) and, when it ran a change that needed approval
without one, the override (who, when, why).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-10
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    present = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("runs")}
    if "started_by" not in present:
        op.add_column("runs", sa.Column("started_by", sa.String(200)))
    if "override" not in present:
        op.add_column("runs", sa.Column("override", sa.JSON))


def downgrade() -> None:
    op.drop_column("runs", "override")
    op.drop_column("runs", "started_by")
