"""The client address that queued each job and study (`jobs.client`, `studies.client`): one client holds
at most MLPLAB_MAX_QUEUED_PER_CLIENT of the queue, so that its burst cannot lock every other client out.

Revision ID: 0013_queue_shares
Revises: 0012_epoch_sampled
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_queue_shares"
down_revision: str | Sequence[str] | None = "0012_epoch_sampled"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("jobs", "studies"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("client", sa.String(64), nullable=True))
    op.create_index("ix_jobs_status_client", "jobs", ["status", "client"])


def downgrade() -> None:
    op.drop_index("ix_jobs_status_client", table_name="jobs")
    for table in ("jobs", "studies"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("client")
