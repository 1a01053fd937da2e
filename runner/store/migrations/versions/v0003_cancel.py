"""Cancel requests: any runner process (`runner cancel`, `runner web`) asks the process
running a run to stop it; that process sees the request within seconds and ends the run as
interrupted, one record per device.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (("cancel_requested", 40), ("cancel_requested_by", 100))


def upgrade() -> None:
    present = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("runs")}
    for name, size in COLUMNS:
        if name not in present:
            op.add_column("runs", sa.Column(name, sa.String(size)))


def downgrade() -> None:
    for name, _ in reversed(COLUMNS):
        op.drop_column("runs", name)
