"""A worker beyond its host's cores stands by and says so (`workers.standing_by`).

Revision ID: 0009_worker_standby
Revises: 0008_studies
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_worker_standby"
down_revision: str | Sequence[str] | None = "0008_studies"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.add_column(sa.Column("standing_by", sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.drop_column("standing_by")
