"""Baselines of new_term rules: per MAV, baseline and combination of field values, the first
and last sighting (alerting.baselines).

Revision ID: 0011
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "baselines",
        sa.Column("baseline", sa.String(160), primary_key=True),
        sa.Column("mav", sa.String(128), primary_key=True),
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first_event_id", sa.String(128), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_baselines_first_seen", "baselines", ["baseline", "mav", "first_seen"])


def downgrade() -> None:
    op.drop_index("ix_baselines_first_seen", table_name="baselines")
    op.drop_table("baselines")
