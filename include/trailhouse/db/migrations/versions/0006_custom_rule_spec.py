"""Custom rules keep what built-in rule files hold: ATT&CK mappings, references, tags, a
runbook, examples and where the rule came from (e.g. an imported Sigma rule).

One JSON column: these fields are read and written whole, never queried.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("custom_rules") as batch:
        batch.add_column(sa.Column("spec", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("custom_rules") as batch:
        batch.drop_column("spec")
