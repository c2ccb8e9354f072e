"""Custom rules, built-in rule switches, alerts with their events, and user roles.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "custom_rules",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("title", sa.String(256), nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("condition", sa.Text, nullable=False),
        sa.Column("scope_accounts", sa.Text, nullable=False, server_default=""),
        sa.Column("dedup_fields", sa.Text, nullable=False, server_default=""),
        sa.Column("dedup_period_minutes", sa.Integer, nullable=False, server_default="60"),
        sa.Column("owner", sa.String(256), nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(256), nullable=False),
    )
    op.create_table(
        "rule_switches",
        sa.Column("rule_id", sa.String(128), primary_key=True),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("updated_by", sa.String(256), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("rule_id", sa.String(128), nullable=False),
        sa.Column("dedup_hash", sa.String(64), nullable=False),
        sa.Column("dedup_key", sa.Text, nullable=False),
        sa.Column("title", sa.String(256), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("mav", sa.String(128), nullable=False),
        sa.Column("account_id", sa.String(12)),
        sa.Column("principal", sa.Text),
        sa.Column("source_ip", sa.String(256)),
        sa.Column("event_name", sa.String(256)),
        sa.Column("first_event_id", sa.String(128), nullable=False),
        sa.Column("first_event_time", sa.DateTime(timezone=True)),
        sa.Column("last_event_time", sa.DateTime(timezone=True)),
        sa.Column("period_start", sa.DateTime(timezone=True)),
        sa.Column("count", sa.Integer, nullable=False, server_default="1"),
        sa.Column("status", sa.String(16), nullable=False, server_default="open"),
        sa.Column("status_by", sa.String(256)),
        sa.Column("status_at", sa.DateTime(timezone=True)),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("notify", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("rule_id", "dedup_hash", name="uq_alert_dedup"),
    )
    op.create_index("ix_alerts_status", "alerts", ["status", "severity"])
    op.create_index("ix_alerts_run", "alerts", ["run_id"])
    op.create_table(
        "alert_events",
        sa.Column("alert_id", sa.Integer, sa.ForeignKey("alerts.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("event_id", sa.String(128), primary_key=True),
        sa.Column("event_time", sa.DateTime(timezone=True)),
        sa.Column("event_date", sa.Date),
        sa.Column("account_id", sa.String(12)),
    )
    op.create_table(
        "user_roles",
        sa.Column("username", sa.String(256), primary_key=True),
        sa.Column("is_admin", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("accounts", sa.Text, nullable=False, server_default=""),
        sa.Column("granted_by", sa.String(256), nullable=False),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("user_roles")
    op.drop_table("alert_events")
    op.drop_index("ix_alerts_run", table_name="alerts")
    op.drop_index("ix_alerts_status", table_name="alerts")
    op.drop_table("alerts")
    op.drop_table("rule_switches")
    op.drop_table("custom_rules")
