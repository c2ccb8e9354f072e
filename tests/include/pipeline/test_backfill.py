"""Backfill: day by day in worker processes, resumable, and never doubling what hourly runs load."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

from trailhouse import settings
from trailhouse.config import Mav, save_mav
from trailhouse.deployment import Deployment
from trailhouse.dev.synth.files import write_to_dir
from trailhouse.dev.synth.world import SynthSpec
from trailhouse.pipeline import backfill, runs
from trailhouse.warehouse.table import Warehouse

SPEC = SynthSpec(seed=5, accounts=2, days=3, end=date(2026, 11, 20), files_per_region_day=2,
                       events_per_file=10, regions=("us-east-1",))


def _count() -> tuple[int, int]:
    con = Warehouse(settings.load().warehouse_uri).duckdb()
    return con.execute("SELECT count(*), count(DISTINCT event_id) FROM cloudtrail_events").fetchone()


def test_backfill_resumes_and_overlaps_hourly_runs_without_duplicates(th_home: Path, airflow_db: None,
                                                                      tmp_path: Path) -> None:
    written = write_to_dir(SPEC, tmp_path / "bucket")
    mav = Mav(name="hist", path=str(tmp_path / "bucket"), lookback_hours=24)
    save_mav(settings.load().mav_dir, mav)

    # An hourly run first (it loads the last day and the one before through its look-back).
    hourly = runs.run_mav(Deployment(), "hist", at=datetime(2026, 11, 20, 12, 30, tzinfo=UTC))
    assert hourly["failed_tasks"] == [] and hourly["events_loaded"] > 0

    # A backfill stopped after its first day, then resumed over the whole range.
    said: list[str] = []
    part = backfill.backfill(Deployment(), mav, date(2026, 11, 18), date(2026, 11, 18), workers=2, say=said.append)
    assert part.days_done == 1 and part.events_loaded > 0
    full = backfill.backfill(Deployment(), mav, date(2026, 11, 18), date(2026, 11, 21), workers=2, say=said.append)
    assert full.days_skipped == 1 and full.days_done == 3
    assert any("done earlier, skipped" in line for line in said)
    assert any("ETA" in line for line in said)

    total, distinct = _count()
    assert total == distinct == written.unique_events

    # Hourly runs after the backfill find nothing new.
    after = runs.run_mav(Deployment(), "hist", at=datetime(2026, 11, 20, 23, 30, tzinfo=UTC))
    assert after["events_loaded"] == 0 and after["objects_loaded"] == 0
    assert _count() == (written.unique_events, written.unique_events)

    # Alerts of backfilled days are recorded but not meant to notify (the MAV's default).
    from trailhouse.alerting import alerts
    from trailhouse.db import appdb

    eng = appdb.engine(settings.load().app_db_url)
    backfilled = [a for a in alerts.query(eng, mav="hist", limit=10_000) if a["run_id"].startswith("backfill__")]
    assert backfilled and not any(a["notify"] for a in backfilled)
