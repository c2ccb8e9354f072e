"""Discovery's memory: the account/kind/region folders ("streams") a MAV's last full scan
found, when that scan ran, and the inbox of keys read from a MAV's notification queue.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "discovery_scans",
        sa.Column("mav", sa.String(128), primary_key=True),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("scanned_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "discovery_streams",
        sa.Column("mav", sa.String(128), primary_key=True),
        sa.Column("prefix", sa.String(1024), primary_key=True),
        sa.Column("base", sa.String(1024), nullable=False),
        sa.Column("account", sa.String(12), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("region", sa.String(64), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "discovery_inbox",
        sa.Column("mav", sa.String(128), primary_key=True),
        sa.Column("key", sa.String(1024), primary_key=True),
        sa.Column("etag", sa.String(128)),
        sa.Column("size", sa.BigInteger),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("discovery_inbox")
    op.drop_table("discovery_streams")
    op.drop_table("discovery_scans")
