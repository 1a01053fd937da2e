"""A finished run's counts per device status, kept with it (issue 28): the run page, the
progress API and the live poll of a run of 100,000 devices read them instead of counting
the run's records per request (an index walk of 100,000 entries). Written as a run ends
(or is interrupted), cleared by any later write of its records; filled here for the runs
already finished (one pass over the records; a running run is counted as it goes).

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
    runs = sa.table("runs", sa.column("run_id", sa.String), sa.column("status", sa.String),
                    sa.column("counts", sa.JSON))
    devices = sa.table("devices", sa.column("run_id", sa.String),
                       sa.column("status", sa.String))
    counted: dict[str, dict[str, int]] = {}
    for run_id, status, count in bind.execute(
            sa.select(devices.c.run_id, devices.c.status, sa.func.count())
            .group_by(devices.c.run_id, devices.c.status)):
        counted.setdefault(run_id, {})[status] = int(count)
    finished = [r[0] for r in bind.execute(sa.select(runs.c.run_id).where(
        runs.c.status != "running"))]  # RunStatus.RUNNING as it is at this revision
    for run_id in finished:
        bind.execute(sa.update(runs).where(runs.c.run_id == run_id).values(
            counts=counted.get(run_id, {})))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("counts")
