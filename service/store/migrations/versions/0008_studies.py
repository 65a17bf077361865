"""Studies: adaptive searches whose trials are jobs (jobs.study_id, jobs.trial_number), and the status pruned.

A (study_id, trial_number) pair is unique, so a trial can never be queued twice. The jobs' status
CHECK gains `pruned`; the statuses are frozen here, as they were when this ran.

SQLite cannot alter a CHECK in place, and rebuilding `jobs` (batch mode) drops the old table, which
with foreign keys on cascades to every model, loss and epoch row. So on SQLite the columns are added
in place and the CHECK's text is widened in the schema itself, as SQLite documents for changes that
leave every stored row valid ("Making Other Kinds Of Table Schema Changes": writable_schema and a new
schema_version, in the migration's transaction).

Revision ID: 0008_studies
Revises: 0007_workers (it needs only the jobs table, so it may follow any revision after 0001)
Create Date: 2025-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_studies"
down_revision: str | Sequence[str] | None = "0007_workers"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BEFORE = ("queued", "running", "succeeded", "failed", "cancelled")
AFTER = (*BEFORE, "pruned")
STUDY_STATUSES = ("running", "finished", "cancelled")


def _check(statuses: tuple[str, ...]) -> str:
    return f"status IN {statuses!r}"


def _sqlite_widen_check(old: str, new: str) -> None:
    """Replace the jobs table's CHECK text `old` by `new` in SQLite's schema (every row satisfies both)."""
    bind = op.get_bind()
    version = bind.exec_driver_sql("PRAGMA schema_version").scalar() or 0
    bind.exec_driver_sql("PRAGMA writable_schema = ON")
    changed = bind.exec_driver_sql(
        "UPDATE sqlite_master SET sql = replace(sql, ?, ?) WHERE type = 'table' AND name = 'jobs' AND instr(sql, ?)",
        (old, new, old),
    ).rowcount
    bind.exec_driver_sql(f"PRAGMA schema_version = {int(version) + 1}")
    bind.exec_driver_sql("PRAGMA writable_schema = OFF")
    if changed != 1:
        raise RuntimeError(f"0008_studies: the jobs table's CHECK ({old}) was not found")


def _status_check(old: tuple[str, ...], new: tuple[str, ...]) -> None:
    if op.get_bind().dialect.name == "sqlite":
        _sqlite_widen_check(_check(old), _check(new))
    else:
        op.drop_constraint(op.f("ck_jobs_status"), "jobs", type_="check")
        op.create_check_constraint(op.f("ck_jobs_status"), "jobs", _check(new))


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
        sa.CheckConstraint(_check(STUDY_STATUSES), name=op.f("ck_studies_status")),
    )
    if op.get_bind().dialect.name == "sqlite":  # a REFERENCES clause is all ALTER TABLE can add there
        op.execute(sa.text("ALTER TABLE jobs ADD COLUMN study_id INTEGER REFERENCES studies (id)"))
    else:
        op.add_column("jobs", sa.Column("study_id", sa.Integer, nullable=True))
        op.create_foreign_key(op.f("fk_jobs_study_id_studies"), "jobs", "studies", ["study_id"], ["id"])
    op.add_column("jobs", sa.Column("trial_number", sa.Integer, nullable=True))
    op.create_index(op.f("ix_jobs_study_id"), "jobs", ["study_id"])
    op.create_index(op.f("ix_jobs_study_id_trial_number"), "jobs", ["study_id", "trial_number"], unique=True)
    _status_check(BEFORE, AFTER)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":  # dropping study_id means rebuilding jobs (see above)
        raise NotImplementedError("0008_studies is not reversible on SQLite: restore the database's backup")
    op.execute(sa.text("UPDATE jobs SET status = 'cancelled' WHERE status = 'pruned'"))
    _status_check(AFTER, BEFORE)
    op.drop_index(op.f("ix_jobs_study_id_trial_number"), table_name="jobs")
    op.drop_index(op.f("ix_jobs_study_id"), table_name="jobs")
    op.drop_constraint(op.f("fk_jobs_study_id_studies"), "jobs", type_="foreignkey")
    op.drop_column("jobs", "trial_number")
    op.drop_column("jobs", "study_id")
    op.drop_table("studies")
