"""Ledger: the SHA-256 of each loaded log file's uncompressed content, for digest verification.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: rows ledgered before this revision (and digest/Insights rows) have no hash.
    op.add_column("ledger_objects", sa.Column("sha256", sa.String(64), nullable=True))


def downgrade() -> None:
    # SQLite drops a column only by rebuilding the table: batch mode does that there.
    with op.batch_alter_table("ledger_objects") as batch:
        batch.drop_column("sha256")
