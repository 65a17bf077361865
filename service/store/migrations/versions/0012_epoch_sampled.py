"""Whether an epoch's train and test accuracies are on samples (`epoch_metrics.sampled`), as the worker
measured them: the API could only guess it for the last epoch of a job early stopping ended while it ran.

Revision ID: 0012_epoch_sampled
Revises: 0011_requeue_facts
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_epoch_sampled"
down_revision: str | Sequence[str] | None = "0011_requeue_facts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("epoch_metrics") as batch:
        batch.add_column(sa.Column("sampled", sa.Boolean, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("epoch_metrics") as batch:
        batch.drop_column("sampled")
