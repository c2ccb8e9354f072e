"""Alembic environment: runs on the connection trailhouse.db.appdb hands over."""

from __future__ import annotations

from alembic import context

from trailhouse.db.appdb import VERSION_TABLE, metadata

connection = context.config.attributes.get("connection")
if connection is None:  # `alembic` run by hand: connect with the configured URL
    from sqlalchemy import create_engine

    with create_engine(context.config.get_main_option("sqlalchemy.url") or "").begin() as conn:
        context.configure(connection=conn, target_metadata=metadata, version_table=VERSION_TABLE)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=metadata, version_table=VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()
