"""What a job given back to the queue leaves: when it went back (`jobs.requeued_at`, which its wait
counts from) and the seconds of the epochs it trains again (`rewound_epochs`, so that the epochs
trained never go down).

Revision ID: 0011_requeue_facts
Revises: 0010_rank_without_test
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_requeue_facts"
down_revision: str | Sequence[str] | None = "0010_rank_without_test"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("requeued_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "rewound_epochs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("seconds", sa.Float, nullable=False),
    )
    op.create_index("ix_rewound_epochs_job_id", "rewound_epochs", ["job_id"])


def downgrade() -> None:
    op.drop_index("ix_rewound_epochs_job_id", table_name="rewound_epochs")
    op.drop_table("rewound_epochs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("requeued_at")
