"""Serving: aliases and their history; each job's provenance, and what a reproduction reproduces.

Revision ID: 0004_serving
Revises: 0001
Create Date: 2025-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_serving"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACTIONS = ("move", "promote", "rollback", "delete")


def _model_fk(name: str, nullable: bool) -> sa.Column:
    return sa.Column(name, sa.Integer, sa.ForeignKey("models.job_id"), nullable=nullable)


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("provenance", sa.JSON, nullable=True))
        batch.add_column(sa.Column("reproduces", sa.Integer, nullable=True))
        batch.add_column(sa.Column("reproduction", sa.JSON, nullable=True))
        batch.create_foreign_key("fk_jobs_reproduces_jobs", "jobs", ["reproduces"], ["id"])

    op.create_table(
        "alias_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("alias", sa.String(63), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        _model_fk("from_model_id", nullable=True),
        _model_fk("to_model_id", nullable=True),
        sa.Column("rollback_to_id", sa.Integer, sa.ForeignKey("alias_events.id"), nullable=True),
        sa.Column("detail", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_alias_events"),
        sa.CheckConstraint(f"action IN {ACTIONS!r}", name=op.f("ck_alias_events_action")),
    )
    op.create_index("ix_alias_events_alias_id", "alias_events", ["alias", "id"])
    op.create_table(
        "aliases",
        sa.Column("name", sa.String(63), nullable=False),
        _model_fk("model_id", nullable=False),
        sa.Column("event_id", sa.Integer, sa.ForeignKey("alias_events.id"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_aliases"),
    )


def downgrade() -> None:
    op.drop_table("aliases")
    op.drop_index("ix_alias_events_alias_id", table_name="alias_events")
    op.drop_table("alias_events")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_constraint("fk_jobs_reproduces_jobs", type_="foreignkey")
        batch.drop_column("reproduction")
        batch.drop_column("reproduces")
        batch.drop_column("provenance")
