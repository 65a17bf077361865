"""Models rank by validation accuracy alone, the newer of two equals first: test accuracy no longer
breaks their ties (it would select on the test set). Those without a validation split rank after, by
test accuracy: one expression, indexed (models.RANK_SCORE).

Revision ID: 0010_rank_without_test
Revises: 0009_worker_standby
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_rank_without_test"
down_revision: str | Sequence[str] | None = "0009_worker_standby"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD = "ix_models_validation_accuracy_test_accuracy_job_id"
NEW = "ix_models_rank_score_job_id"


def upgrade() -> None:
    op.drop_index(OLD, table_name="models")
    # the text of models.RANK_SCORE, which the planner must find again in each query
    op.create_index(NEW, "models", [sa.text("coalesce(validation_accuracy, test_accuracy - 2.0)"), "job_id"])


def downgrade() -> None:
    op.drop_index(NEW, table_name="models")
    op.create_index(OLD, "models", ["validation_accuracy", "test_accuracy", "job_id"])
