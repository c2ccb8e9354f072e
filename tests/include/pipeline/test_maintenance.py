"""Housekeeping: compaction bounds files per partition; retention deletes events and prunes the ledger together."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

from trailhouse import settings
from trailhouse.config import Mav, save_mav
from trailhouse.db import appdb
from trailhouse.deployment import Deployment
from trailhouse.dev.synth.files import write_to_dir
from trailhouse.dev.synth.world import SynthSpec
from trailhouse.ingest.discover import discover
from trailhouse.ingest.source import LocalSource
from trailhouse.pipeline import maintenance, runs
from trailhouse.warehouse.table import Warehouse


def test_compaction_and_retention_keep_everything_consistent(th_home: Path, airflow_db: None, tmp_path: Path) -> None:
    spec = SynthSpec(seed=9, accounts=2, days=4, end=date(2026, 11, 20), files_per_region_day=4,
                           events_per_file=8, regions=("us-east-1",), digests=False, insights=False)
    write_to_dir(spec, tmp_path / "b")
    mav = Mav(name="keep", path=str(tmp_path / "b"), lookback_hours=24, retention_days=2)
    save_mav(settings.load().mav_dir, mav)
    # Hourly runs through the day leave several small files per partition.
    for hour in (6, 12, 18, 23):
        assert runs.run_mav(Deployment(), "keep", at=datetime(2026, 11, 20, hour, 30, tzinfo=UTC))["failed_tasks"] == []
    from trailhouse.pipeline import backfill

    backfill.backfill(Deployment(), mav, date(2026, 11, 17), date(2026, 11, 19), workers=1, say=lambda _m: None)
    wh = Warehouse(settings.load().warehouse_uri)
    con = wh.duckdb()
    ids_before = {r[0] for r in con.execute("SELECT event_id FROM cloudtrail_events").fetchall()}
    files_before = wh.files_per_partition()
    assert max(files_before.values()) > 1

    out = maintenance.maintain(Deployment(), mav, today=date(2026, 11, 21), compact_days=10, vacuum_hours=0)
    after = wh.files_per_partition()
    assert max(after.values()) == 1 and out["compaction"]["files_after"] < out["compaction"]["files_before"]

    cutoff = date.fromisoformat(out["retention"]["cutoff"])
    con = wh.duckdb()
    kept = {r[0] for r in con.execute("SELECT event_id FROM cloudtrail_events").fetchall()}
    assert kept < ids_before
    assert con.execute(f"SELECT count(*) FROM cloudtrail_events WHERE event_date < '{cutoff}'").fetchone() == (0,)
    assert out["retention"]["events_deleted"] == len(ids_before) - len(kept)
    # Nothing is reloaded: the days still inside a run's window are still in the ledger.
    eng = appdb.engine(settings.load().app_db_url)
    again = discover(LocalSource(tmp_path / "b"), eng, mav, datetime(2026, 11, 20, 23, tzinfo=UTC),
                     datetime(2026, 11, 21, tzinfo=UTC))
    assert again.new == []
