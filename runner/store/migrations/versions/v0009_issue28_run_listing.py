"""A run of 100,000 devices (issue 28): its devices failed first, then skipped, then those
that ended well, each in target order, read a page at a time along an index of that order
(the run page and GET /api/runs/ID/devices sorted every device of the run per page); those
of one status in target order along (run_id, status, position, id), which replaces
(run_id, status).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = "ix_devices_run_failed_first"
BY_STATUS, REPLACED = "ix_devices_run_status_position", "ix_devices_run_status"
# As runner.store.results.FAILED_FIRST_SQL was written at this revision (a copy: later code
# may change it, with a revision of its own).
FAILED_FIRST = ("CASE WHEN status IN ({success}) THEN 2 WHEN status = 'skipped' THEN 1 "
                "ELSE 0 END")
SUCCESS = ("ok", "changed")


def upgrade() -> None:
    # a database made whole from the code's tables (adopted by 0001) may have it already;
    # SQLite's reflection does not list an index on an expression, hence IF NOT EXISTS
    expression = FAILED_FIRST.format(success=", ".join(f"'{s}'" for s in SUCCESS))
    op.create_index(NAME, "devices", ["run_id", sa.text(f"({expression})"), "position", "id"],
                    if_not_exists=True)
    op.create_index(BY_STATUS, "devices", ["run_id", "status", "position", "id"],
                    if_not_exists=True)
    op.drop_index(REPLACED, table_name="devices", if_exists=True)


def downgrade() -> None:
    op.create_index(REPLACED, "devices", ["run_id", "status"])
    op.drop_index(BY_STATUS, table_name="devices")
    op.drop_index(NAME, table_name="devices")
