"""Studies: adaptive searches whose trials are jobs (jobs.study_id, jobs.trial_number), and the status pruned.

A (study_id, trial_number) pair is unique, so a trial can never be queued twice. The jobs' status
CHECK is rebuilt with `pruned` (SQLite: batch mode recreates the table). The statuses are frozen
here, as they were when this ran: JobStatus may grow after it.

Revision ID: 0006_studies
Revises: 0002_model_selection
Create Date: 2025-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from alembic.operations import BatchOperations

revision: str = "0006_studies"
down_revision: str | Sequence[str] | None = "0002_model_selection"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BEFORE = ("queued", "running", "succeeded", "failed", "cancelled")
AFTER = (*BEFORE, "pruned")
STUDY_STATUSES = ("running", "finished", "cancelled")


def _job_status_check(table: BatchOperations, statuses: tuple[str, ...]) -> None:
    table.drop_constraint(op.f("ck_jobs_status"), type_="check")
    table.create_check_constraint(op.f("ck_jobs_status"), f"status IN {statuses!r}")


def upgrade() -> None:
    op.create_table(
        "studies",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("trials", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_studies"),
        sa.CheckConstraint(f"status IN {STUDY_STATUSES!r}", name=op.f("ck_studies_status")),
    )
    with op.batch_alter_table("jobs") as table:
        table.add_column(sa.Column("study_id", sa.Integer, nullable=True))
        table.add_column(sa.Column("trial_number", sa.Integer, nullable=True))
        table.create_foreign_key(op.f("fk_jobs_study_id_studies"), "studies", ["study_id"], ["id"])
        table.create_unique_constraint(op.f("uq_jobs_study_id_trial_number"), ["study_id", "trial_number"])
        table.create_index(op.f("ix_jobs_study_id"), ["study_id"])
        _job_status_check(table, AFTER)


def downgrade() -> None:
    op.execute(sa.text("UPDATE jobs SET status = 'cancelled' WHERE status = 'pruned'"))
    with op.batch_alter_table("jobs") as table:
        _job_status_check(table, BEFORE)
        table.drop_index(op.f("ix_jobs_study_id"))
        table.drop_constraint(op.f("uq_jobs_study_id_trial_number"), type_="unique")
        table.drop_constraint(op.f("fk_jobs_study_id_studies"), type_="foreignkey")
        table.drop_column("trial_number")
        table.drop_column("study_id")
    op.drop_table("studies")
