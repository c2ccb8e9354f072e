"""Rule problems: per run, each rule that was stopped at its time budget, failed, had its
stored condition refused, or had its matches cut at the cap (alerting.rules.Problem).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rule_problems",
        sa.Column("mav", sa.String(128), primary_key=True),
        sa.Column("run_id", sa.String(250), primary_key=True),
        sa.Column("rule_id", sa.String(128), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("owner", sa.String(256)),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_rule_problems_rule", "rule_problems", ["rule_id", "recorded_at"])


def downgrade() -> None:
    op.drop_index("ix_rule_problems_rule", table_name="rule_problems")
    op.drop_table("rule_problems")
