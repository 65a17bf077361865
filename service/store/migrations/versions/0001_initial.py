"""Initial schema: jobs, losses, epoch_metrics, models, checkpoints.

Revision ID: 0001
Revises:
Create Date: 2025-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")


def _job_fk() -> sa.Column:
    return sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False)


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("backend", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("worker_id", sa.String, nullable=True),
        sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("epoch", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("step", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("steps", sa.Integer, nullable=True),
        sa.Column("loss", sa.Float, nullable=True),
        sa.Column("sweep_id", sa.String, nullable=True),
        sa.Column("train_accuracy", sa.Float, nullable=True),
        sa.Column("test_accuracy", sa.Float, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
        sa.CheckConstraint(f"status IN {STATUSES!r}", name=op.f("ck_jobs_status")),
    )
    op.create_index("ix_jobs_status_id", "jobs", ["status", "id"])
    op.create_index("ix_jobs_sweep_id", "jobs", ["sweep_id"])

    op.create_table(
        "losses",
        _job_fk(),
        sa.Column("epoch", sa.Integer, nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("loss", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("job_id", "step", name="pk_losses"),
    )
    op.create_table(
        "epoch_metrics",
        _job_fk(),
        sa.Column("epoch", sa.Integer, nullable=False),
        sa.Column("loss", sa.Float, nullable=False),
        sa.Column("train_accuracy", sa.Float, nullable=False),
        sa.Column("test_accuracy", sa.Float, nullable=False),
        sa.Column("seconds", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("job_id", "epoch", name="pk_epoch_metrics"),
    )
    op.create_table(
        "models",
        _job_fk(),
        sa.Column("weights", sa.LargeBinary, nullable=False),
        sa.Column("train_accuracy", sa.Float, nullable=False),
        sa.Column("test_accuracy", sa.Float, nullable=False),
        sa.Column("confusion_train", sa.JSON, nullable=False),
        sa.Column("confusion_test", sa.JSON, nullable=False),
        sa.Column("seconds", sa.Float, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("job_id", name="pk_models"),
    )
    op.create_table(
        "checkpoints",
        _job_fk(),
        sa.Column("epoch", sa.Integer, nullable=False),
        sa.Column("state", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("job_id", name="pk_checkpoints"),
    )


def downgrade() -> None:
    for table in ("checkpoints", "models", "epoch_metrics", "losses"):
        op.drop_table(table)
    op.drop_index("ix_jobs_sweep_id", table_name="jobs")
    op.drop_index("ix_jobs_status_id", table_name="jobs")
    op.drop_table("jobs")
