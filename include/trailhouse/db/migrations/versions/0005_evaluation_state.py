"""Evaluation and notification as state, not as a run's memory: survives any crash or re-run.

The event dates and evaluation time of each ledgered key, and when each alert was planned
for notification: the next evaluation or notify task, of whatever run, takes what is left.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ledger_objects") as batch:
        batch.add_column(sa.Column("event_dates", sa.Text, nullable=True))
        batch.add_column(sa.Column("evaluated_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_ledger_unevaluated", "ledger_objects", ["mav", "status", "evaluated_at"])
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("planned_at", sa.DateTime(timezone=True), nullable=True))
    # What existed before this revision was evaluated and notified by the runs that made it.
    op.execute("UPDATE ledger_objects SET evaluated_at = processed_at WHERE status = 'loaded'")
    op.execute("UPDATE alerts SET planned_at = created_at")


def downgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("planned_at")
    op.drop_index("ix_ledger_unevaluated", table_name="ledger_objects")
    with op.batch_alter_table("ledger_objects") as batch:
        batch.drop_column("evaluated_at")
        batch.drop_column("event_dates")
