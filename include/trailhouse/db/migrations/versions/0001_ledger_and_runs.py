"""Ledger of processed keys and per-run figures.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ledger_objects",
        sa.Column("mav", sa.String(128), primary_key=True),
        sa.Column("key", sa.String(1024), primary_key=True),
        sa.Column("etag", sa.String(128), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("events", sa.Integer, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_ledger_status", "ledger_objects", ["mav", "status"])
    op.create_table(
        "runs",
        sa.Column("mav", sa.String(128), primary_key=True),
        sa.Column("run_id", sa.String(250), primary_key=True),
        sa.Column("interval_start", sa.DateTime(timezone=True)),
        sa.Column("interval_end", sa.DateTime(timezone=True)),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("objects_found", sa.Integer, nullable=False, server_default="0"),
        sa.Column("objects_skipped", sa.Integer, nullable=False, server_default="0"),
        sa.Column("objects_loaded", sa.Integer, nullable=False, server_default="0"),
        sa.Column("objects_quarantined", sa.Integer, nullable=False, server_default="0"),
        sa.Column("objects_recorded", sa.Integer, nullable=False, server_default="0"),
        sa.Column("events_loaded", sa.Integer, nullable=False, server_default="0"),
        sa.Column("duplicates_dropped", sa.Integer, nullable=False, server_default="0"),
        sa.Column("list_calls", sa.Integer, nullable=False, server_default="0"),
        sa.Column("get_calls", sa.Integer, nullable=False, server_default="0"),
        sa.Column("bytes", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("partitions", sa.Text, nullable=False, server_default=""),
        sa.Column("message", sa.Text, nullable=False, server_default=""),
    )


def downgrade() -> None:
    op.drop_table("runs")
    op.drop_index("ix_ledger_status", table_name="ledger_objects")
    op.drop_table("ledger_objects")
