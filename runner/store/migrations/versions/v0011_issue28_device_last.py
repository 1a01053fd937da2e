"""Device search by last status at 100,000 devices (issue 28): `device_last` keeps each
device's newest record (the highest id) and its status as records are written, so the
devices whose last run ended in one status are read along (status, host) instead of
finding each device's newest record per search. Filled here from the records.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE, INDEX = "device_last", "ix_device_last_status_host"


def upgrade() -> None:
    bind = op.get_bind()
    if TABLE not in sa.inspect(bind).get_table_names():
        op.create_table(
            TABLE,
            sa.Column("host", sa.String(255), primary_key=True),
            sa.Column("record_id", sa.Integer, nullable=False),
            sa.Column("status", sa.String(20), nullable=False))
    op.create_index(INDEX, TABLE, ["status", "host"], if_not_exists=True)
    # each host's newest record, along ix_devices_host_id (a copy of the code's
    # runner.store.results.rebuild_last as it is at this revision)
    op.execute("DELETE FROM device_last")
    op.execute("INSERT INTO device_last (host, record_id, status) "
               "SELECT host, id, status FROM devices WHERE id IN "
               "(SELECT max(id) FROM devices GROUP BY host)")


def downgrade() -> None:
    op.drop_index(INDEX, table_name=TABLE)
    op.drop_table(TABLE)
