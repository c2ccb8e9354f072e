"""What every command group needs: the acting user and common argument types (the deployment
itself, `args.dep`, is built once by `trailhouse.cli.main`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from trailhouse.deployment import Deployment


def actor(dep: Deployment, name: str) -> Any:
    from trailhouse.alerting import roles

    return roles.actor(dep.engine, name)


def accounts_arg(text: str | None) -> list[str]:
    return [a.strip() for a in (text or "").split(",") if a.strip()]


def utc_time(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
