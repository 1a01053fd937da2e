"""runner web: API tokens (web_tokens), and the indexes its listings need.

`web_tokens` holds each token's SHA-256, never the token. The indexes make a page of one
job's or one status's runs (newest first) and a page of a run's devices (in target order, or
of one status) index scans on 100,000 runs and runs of 10,000 devices (bench/web.py).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = (
    ("ix_runs_job_started", "runs", ["job", "started"]),
    ("ix_runs_status_started", "runs", ["status", "started"]),
    ("ix_devices_run_position", "devices", ["run_id", "position"]),
    ("ix_devices_run_status", "devices", ["run_id", "status"]),
)


def upgrade() -> None:
    bind = op.get_bind()
    if "web_tokens" not in sa.inspect(bind).get_table_names():  # a web before migrations
        op.create_table(
            "web_tokens",
            sa.Column("id", sa.String(16), primary_key=True),
            sa.Column("name", sa.String(100), nullable=False, unique=True),
            sa.Column("role", sa.String(20), nullable=False),
            sa.Column("hash", sa.String(64), nullable=False),
            sa.Column("created", sa.String(40), nullable=False),
            sa.Column("last_used", sa.String(40)),
            sa.Column("revoked", sa.String(40)),
        )
    for name, table, columns in INDEXES:
        present = {i["name"] for i in sa.inspect(bind).get_indexes(table)}
        if name not in present:
            op.create_index(name, table, columns)


def downgrade() -> None:
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
    op.drop_table("web_tokens")
