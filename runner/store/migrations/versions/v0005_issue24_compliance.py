"""Golden config (issue 24): each device's latest compliance per feature
(`compliance_state`), the history of its changes (`compliance_events`: first check, drifted,
fixed, by which run), and the compliance run a remediation run remediates
(`runs.remediates`).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-14
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    if "remediates" not in {c["name"] for c in inspector.get_columns("runs")}:
        op.add_column("runs", sa.Column("remediates", sa.String(32)))
        op.create_index("ix_runs_remediates", "runs", ["remediates"])
    present = set(inspector.get_table_names())
    if "compliance_state" not in present:
        op.create_table(
            "compliance_state",
            sa.Column("host", sa.String(255), primary_key=True),
            sa.Column("feature", sa.String(200), primary_key=True),
            sa.Column("job", sa.String(200), nullable=False),
            sa.Column("status", sa.String(20), nullable=False),
            sa.Column("since", sa.String(40), nullable=False),
            sa.Column("since_run", sa.String(32), nullable=False),
            sa.Column("checked", sa.String(40), nullable=False),
            sa.Column("run_id", sa.String(32), nullable=False),
            sa.Column("missing", sa.JSON),
            sa.Column("extra", sa.JSON),
            sa.Column("missing_count", sa.Integer),
            sa.Column("extra_count", sa.Integer),
            sa.Column("remediation", sa.JSON),
            sa.Column("source", sa.String(40)),
        )
        op.create_index("ix_compliance_state_status", "compliance_state", ["status"])
    if "compliance_events" not in present:
        op.create_table(
            "compliance_events",
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("host", sa.String(255), nullable=False),
            sa.Column("feature", sa.String(200), nullable=False),
            sa.Column("event", sa.String(20), nullable=False),
            sa.Column("status", sa.String(20), nullable=False),
            sa.Column("at", sa.String(40), nullable=False),
            sa.Column("run_id", sa.String(32), nullable=False),
            sa.Column("job", sa.String(200), nullable=False),
            sa.Column("remediates", sa.String(32)),
        )
        op.create_index("ix_compliance_events_host_feature_at", "compliance_events",
                        ["host", "feature", "at"])
        op.create_index("ix_compliance_events_at", "compliance_events", ["at"])


def downgrade() -> None:
    op.drop_table("compliance_events")
    op.drop_table("compliance_state")
    op.drop_index("ix_runs_remediates", "runs")
    op.drop_column("runs", "remediates")
