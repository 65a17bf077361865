"""Model selection: validation figures per epoch, job and model; the best and last epochs; stored predictions.

Rows written before have no validation split (their specs read as validation_size 0, see
TrainSpec.from_stored): their validation columns stay NULL, and a model's best and stopped epochs are
its job's last epoch, the weights it kept.

Revision ID: 0002_model_selection
Revises: 0001
Create Date: 2025-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_model_selection"
down_revision: str | Sequence[str] | None = "0005_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("validation_accuracy", sa.Float, nullable=True))
    with op.batch_alter_table("epoch_metrics") as table:
        table.add_column(sa.Column("validation_loss", sa.Float, nullable=True))
        table.add_column(sa.Column("validation_accuracy", sa.Float, nullable=True))
    with op.batch_alter_table("models") as table:
        table.add_column(sa.Column("validation_accuracy", sa.Float, nullable=True))
        table.add_column(sa.Column("best_epoch", sa.Integer, nullable=True))
        table.add_column(sa.Column("stopped_epoch", sa.Integer, nullable=True))
        table.add_column(sa.Column("predictions_train", sa.LargeBinary, nullable=True))
        table.add_column(sa.Column("predictions_test", sa.LargeBinary, nullable=True))
    last_epoch = "(SELECT jobs.epoch FROM jobs WHERE jobs.id = models.job_id)"
    op.execute(sa.text(f"UPDATE models SET best_epoch = {last_epoch}, stopped_epoch = {last_epoch}"))
    with op.batch_alter_table("models") as table:
        table.alter_column("best_epoch", existing_type=sa.Integer, nullable=False)
        table.alter_column("stopped_epoch", existing_type=sa.Integer, nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("models") as table:
        for column in ("predictions_test", "predictions_train", "stopped_epoch", "best_epoch"):
            table.drop_column(column)
        table.drop_column("validation_accuracy")
    with op.batch_alter_table("epoch_metrics") as table:
        table.drop_column("validation_accuracy")
        table.drop_column("validation_loss")
    op.drop_column("jobs", "validation_accuracy")
