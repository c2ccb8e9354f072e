"""What every command group needs: the app database, the acting user, common argument types."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from trailhouse import settings


def engine() -> Any:
    from trailhouse.db import appdb

    return appdb.engine(settings.load().app_db_url)


def actor(name: str) -> Any:
    from trailhouse.alerting import roles

    return roles.actor(engine(), name)


def accounts_arg(text: str | None) -> list[str]:
    return [a.strip() for a in (text or "").split(",") if a.strip()]


def utc_time(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
