"""Daily housekeeping of a MAV: compaction of small files, retention with a consistent ledger, vacuum."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from trailhouse.common import chunks
from trailhouse.config import Mav
from trailhouse.db import appdb
from trailhouse.deployment import Deployment
from trailhouse.ingest.layout import parse_key


def prune_ledger(eng: sa.Engine, mav: str, cutoff: date) -> int:
    """Forget keys of delivery days before `cutoff`: their events are gone, and no run lists those days again."""
    led = appdb.ledger
    with eng.connect() as conn:
        keys = [k for (k,) in conn.execute(sa.select(led.c.key).where(led.c.mav == mav))]
    old = [k for k in keys if (p := parse_key(k)) is not None and p.day < cutoff]
    with eng.begin() as conn:
        for part in chunks(old):
            conn.execute(led.delete().where(led.c.mav == mav, led.c.key.in_(part)))
    return len(old)


def maintain(dep: Deployment, mav: Mav, *, today: date | None = None, compact_days: int = 3, vacuum_hours: int = 168,
             verify: bool = True) -> dict[str, Any]:
    """Verify yesterday against the digests, compact the recent partitions, apply retention, vacuum."""
    wh = dep.warehouse
    today = today or datetime.now(UTC).date()
    out: dict[str, Any] = {"mav": mav.name}
    if verify:
        from trailhouse.pipeline import steps as pipeline

        start = datetime.combine(today - timedelta(days=1), datetime.min.time(), tzinfo=UTC)
        checked = pipeline.integrity_step(dep, mav, start, start + timedelta(days=1))
        report = checked["report"]
        out["integrity"] = {"digests": report.digests, "findings": len(report.findings),
                            "new_alerts": len(checked["new_alerts"]), "signatures_verified": report.signatures_verified}
    recent = [(today - timedelta(days=i)).isoformat() for i in range(compact_days + 1)]
    out["compaction"] = wh.compact(recent)
    if mav.retention_days:
        cutoff = today - timedelta(days=mav.retention_days)
        # The lookback guard: a ledger key is only pruned once no run can list its day.
        cutoff = min(cutoff, today - timedelta(hours=mav.lookback_hours, days=1))
        out["retention"] = {
            "cutoff": cutoff.isoformat(),
            "events_deleted": wh.delete_before(mav.name, cutoff),
            "ledger_keys_pruned": prune_ledger(dep.engine, mav.name, cutoff),
        }
    out["files_vacuumed"] = wh.vacuum(vacuum_hours)
    return out
