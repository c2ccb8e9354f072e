"""One deployment's settings, app database and warehouse: built once per task, command or web
app, and passed to whatever needs them (nothing below reads the environment by itself)."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from trailhouse import settings as settings_module
from trailhouse.config import Mav, load_mav

if TYPE_CHECKING:
    import sqlalchemy as sa

    from trailhouse.warehouse.table import Warehouse


class Deployment:
    """The settings read once, and the app-database engine and the warehouse they name, opened on first use."""

    def __init__(self, settings: settings_module.Settings | None = None) -> None:
        self.settings = settings if settings is not None else settings_module.load()
        settings_module.owner_only()  # before any file of the deployment is created

    @cached_property
    def engine(self) -> sa.Engine:
        """The app database (ledger, runs, alerts, rules), migrated on first use."""
        from trailhouse.db import appdb

        return appdb.engine(self.settings.app_db_url)

    @cached_property
    def warehouse(self) -> Warehouse:
        """The events table."""
        from trailhouse.warehouse.table import Warehouse

        return Warehouse(self.settings.warehouse_uri)

    def mav(self, name: str) -> Mav:
        """The MAV `name` as its YAML file says now (ConfigError when there is none or it is invalid)."""
        return load_mav(self.settings.mav_dir, name)

    def __repr__(self) -> str:  # never the database URL: it may carry a password
        return f"Deployment(home={self.settings.home})"
