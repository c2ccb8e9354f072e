"""The baselines of new_term rules in the app database: per MAV, the first and last sighting
of each combination of a rule's field values (alerting.rules.NewTerm).

Each run's evaluation looks up only the combinations its own events hold and records them
after its alerts are stored (first sighting: the earlier of the stored and the new one; last:
the later), so the cost grows with the run, not with the history, and a late file that
brings an older sighting moves the first sighting back. Recording is idempotent: a re-run
records the same sightings again and changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from trailhouse.common import chunks
from trailhouse.db import appdb
from trailhouse.db.appdb import baselines as table


class Store:
    """The baselines of one MAV (alerting.rules.Baselines)."""

    def __init__(self, eng: sa.Engine, mav: str) -> None:
        self.eng, self.mav = eng, mav

    def known(self, baseline: str, keys: list[str]) -> tuple[dict[str, tuple[datetime, str]], datetime | None]:
        t = table
        held: dict[str, tuple[datetime, str]] = {}
        with self.eng.connect() as conn:
            for part in chunks(keys, 500):
                for key, first, event_id in conn.execute(
                        sa.select(t.c.key, t.c.first_seen, t.c.first_event_id).where(
                            t.c.baseline == baseline, t.c.mav == self.mav, t.c.key.in_(part))):
                    held[key] = (appdb.utc(first), event_id)  # type: ignore[assignment]
            start = conn.execute(sa.select(sa.func.min(t.c.first_seen)).where(
                t.c.baseline == baseline, t.c.mav == self.mav)).scalar()
        return held, appdb.utc(start)

    def record(self, sightings: dict[str, Any]) -> int:
        """Merge each baseline's sightings (Arrow: _key, first_seen, first_event_id, last_seen) in one transaction."""
        n = 0
        with self.eng.begin() as conn:
            for baseline, seen in sightings.items():
                rows = [{"baseline": baseline, "mav": self.mav, "key": r["_key"], "first_seen": r["first_seen"],
                         "first_event_id": r["first_event_id"], "last_seen": r["last_seen"]}
                        for r in seen.to_pylist()]
                for part in chunks(rows, 500):
                    conn.execute(_merge(conn), part)
                n += len(rows)
        return n

    def summary(self, baselines: Iterable[str]) -> dict[str, dict[str, Any]]:
        """{baseline: combinations held, first and last sighting} of the MAV."""
        t = table
        wanted = list(baselines)
        with self.eng.connect() as conn:
            rows = conn.execute(sa.select(t.c.baseline, sa.func.count(), sa.func.min(t.c.first_seen),
                                          sa.func.max(t.c.last_seen))
                                .where(t.c.mav == self.mav, t.c.baseline.in_(wanted)).group_by(t.c.baseline)).all()
        return {b: {"combinations": c, "since": appdb.utc(lo), "latest": appdb.utc(hi)} for b, c, lo, hi in rows}


def _merge(conn: Any) -> Any:
    """INSERT ... ON CONFLICT that keeps the earlier first sighting and the later last one."""
    from sqlalchemy.dialects import postgresql, sqlite
    dialect: Any = postgresql if conn.dialect.name == "postgresql" else sqlite
    ins = dialect.insert(table)
    new, old = ins.excluded, table.c
    earlier = new.first_seen < old.first_seen
    return ins.on_conflict_do_update(index_elements=["baseline", "mav", "key"], set_={
        "first_seen": sa.case((earlier, new.first_seen), else_=old.first_seen),
        "first_event_id": sa.case((earlier, new.first_event_id), else_=old.first_event_id),
        "last_seen": sa.case((new.last_seen > old.last_seen, new.last_seen), else_=old.last_seen),
    })
