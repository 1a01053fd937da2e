"""Device views (issue 27): a device's records across runs, newest first, read by host
(`runner device NAME`, /devices/NAME) without scanning every record of every run.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    indexes = {i["name"] for i in sa.inspect(op.get_bind()).get_indexes("devices")}
    if "ix_devices_host_id" not in indexes:
        op.create_index("ix_devices_host_id", "devices", ["host", "id"])


def downgrade() -> None:
    op.drop_index("ix_devices_host_id", table_name="devices")
