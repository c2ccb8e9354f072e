"""A MAV's health figures shared by `trailhouse status` and the web UI's MAV page."""

from __future__ import annotations

import statistics
from datetime import UTC

import sqlalchemy as sa

from trailhouse.common import LOADED
from trailhouse.db import appdb
from trailhouse.ingest.layout import parse_key


def delivery_lags(eng: sa.Engine, mav: str, run_ids: list[str], *, limit: int = 50_000) -> dict[str, dict[str, float]]:
    """Per run: median and max seconds between CloudTrail's delivery (from the key) and the load."""
    if not run_ids:
        return {}
    led = appdb.ledger
    with eng.connect() as conn:
        rows = conn.execute(sa.select(led.c.run_id, led.c.key, led.c.processed_at).where(
            led.c.mav == mav, led.c.run_id.in_(run_ids), led.c.status == LOADED).limit(limit)).all()
    per_run: dict[str, list[float]] = {}
    for run_id, key, processed in rows:
        parsed = parse_key(key)
        if parsed and parsed.delivered_at:
            when = processed if processed.tzinfo else processed.replace(tzinfo=UTC)
            per_run.setdefault(run_id, []).append((when - parsed.delivered_at).total_seconds())
    return {r: {"median_seconds": statistics.median(v), "max_seconds": max(v)} for r, v in per_run.items()}
