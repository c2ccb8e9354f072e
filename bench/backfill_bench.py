"""Backfill cost: seconds, LIST and GET calls per delivery day of history, through `trailhouse backfill`."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from bench.common import Sheet
from bench.data import Dataset


def run(ds: Dataset, work: Path, sheet: Sheet, workers: int = 2) -> dict[str, Any]:
    """Backfill every delivery day of the synthetic bucket into a fresh warehouse."""
    from trailhouse import settings
    from trailhouse.config import Mav, save_mav
    from trailhouse.db import appdb
    from trailhouse.deployment import Deployment
    from trailhouse.pipeline import backfill

    home = work / "backfill"
    env = {"TRAILHOUSE_HOME": str(home), "TRAILHOUSE_MAV_DIR": str(home / "mavs"),
           "TRAILHOUSE_WAREHOUSE": str(home / "warehouse"), "TRAILHOUSE_DB_URL": f"sqlite:///{home / 'app.db'}"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        mav = Mav(name="bench", path=str(ds.root))
        save_mav(settings.load().mav_dir, mav)
        first = ds.spec.end - __import__("datetime").timedelta(days=ds.spec.days - 1)
        t0 = time.perf_counter()
        result = backfill.backfill(Deployment(), mav, first, ds.spec.end, workers=workers, say=lambda _m: None)
        seconds = time.perf_counter() - t0
        eng = appdb.engine(settings.load().app_db_url)
        runs = [r for r in appdb.latest_runs(eng, "bench", 1000) if r["run_id"].startswith("backfill__")]
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    days = max(1, result.days_done)
    list_calls = sum(r["list_calls"] for r in runs)
    get_calls = sum(r["get_calls"] for r in runs)
    s = "backfill"
    sheet.add(s, "days of history", result.days_done, "days", note=f"{workers} worker processes, `trailhouse backfill`")
    sheet.add(s, "seconds per day", seconds / days, "s/day", note=f"{result.events_loaded:,} events in {seconds:.1f} s")
    sheet.add(s, "events per second", result.events_loaded / seconds, "events/s")
    sheet.add(s, "LIST calls per day", list_calls / days, "calls/day", note="the day's folders of every account, kind, region")
    sheet.add(s, "GET calls per day", get_calls / days, "calls/day", note="one per new log file")
    return {"days": result.days_done, "seconds": seconds, "events": result.events_loaded,
            "list_calls": list_calls, "get_calls": get_calls}
