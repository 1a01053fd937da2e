"""A finished run's counts per device status, kept with it (issue 28): the run page, the
progress API and the live poll of a run of 100,000 devices read them instead of counting
the run's records per request (an index walk of 100,000 entries). Written as a run ends
(or is interrupted), cleared by any later write of its records; runs finished before this
revision have none and are counted as before.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    bind = op.get_bind()
    if "counts" not in {c["name"] for c in sa.inspect(bind).get_columns("runs")}:
        op.add_column("runs", sa.Column("counts", sa.JSON))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("counts")
