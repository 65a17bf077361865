"""Indexes for the lists at 10,000 runs: jobs by sweep, accuracy, creation and duration; models by
accuracy and creation (bench/runs.py prints the plans that use them).

Revision ID: 0005_indexes
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005_indexes"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = {
    "ix_jobs_sweep_id_id": ("jobs", ["sweep_id", "id"]),  # a sweep's jobs, and GET /sweeps's newest first
    "ix_jobs_test_accuracy_id": ("jobs", ["test_accuracy", "id"]),
    "ix_jobs_created_at_id": ("jobs", ["created_at", "id"]),
    # covers GET /jobs?sort=duration's sort of ids, which reads both times of every job
    "ix_jobs_started_at_finished_at": ("jobs", ["started_at", "finished_at"]),
    # SQLite reads a models row's columns after its weights only by walking the weights' pages: these
    # also spare GET /models that walk for every model it skips.
    "ix_models_test_accuracy_job_id": ("models", ["test_accuracy", "job_id"]),
    "ix_models_created_at_job_id": ("models", ["created_at", "job_id"]),
}


def upgrade() -> None:
    op.drop_index("ix_jobs_sweep_id", table_name="jobs")
    for name, (table, columns) in INDEXES.items():
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, (table, _) in INDEXES.items():
        op.drop_index(name, table_name=table)
    op.create_index("ix_jobs_sweep_id", "jobs", ["sweep_id"])
