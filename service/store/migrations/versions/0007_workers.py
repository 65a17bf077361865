"""Workers record themselves (the `workers` table); a job records the interval between its losses.

Revision ID: 0007_workers
Revises: 0006_model_selection
Create Date: 2025-12-10
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_workers"
down_revision: str | Sequence[str] | None = "0006_model_selection"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("id", sa.String, nullable=False),
        sa.Column("host", sa.String, nullable=False),
        sa.Column("host_key", sa.String, nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("job_id", sa.Integer, nullable=True),
        sa.Column("threads", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.PrimaryKeyConstraint("id", name="pk_workers"),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name="fk_workers_job_id_jobs", ondelete="SET NULL"
        ),
    )
    op.create_index("ix_workers_host_key", "workers", ["host_key"])
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("loss_every", sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("loss_every")
    op.drop_index("ix_workers_host_key", table_name="workers")
    op.drop_table("workers")
