"""Hostile delivery files and a failing batch through a real MAV run (Airflow's dag.test, S3 on moto).

Issue 15: one valid-looking file used to fail the transform task and with it the whole run,
every hour; a failed batch kept the run's other batches from being committed at all.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from trailhouse import settings
from trailhouse.airflow_env import store_connection
from trailhouse.config import Mav, save_mav
from trailhouse.db import appdb
from trailhouse.deployment import Deployment
from trailhouse.dev.faultproxy import FaultProxy
from trailhouse.dev.hostile import envelope, hostile_files, odd_records
from trailhouse.dev.synth.files import late_file, write_to_s3
from trailhouse.dev.synth.world import SynthSpec
from trailhouse.pipeline import runs
from trailhouse.warehouse.table import Warehouse

BUCKET = "hostile-trail-bucket"
END_DAY = date(2026, 11, 20)
AT = datetime(2026, 11, 21, 6, 30, tzinfo=UTC)  # the hour 05:00-06:00; 48 h of look-back reach END_DAY


def _events() -> dict[str, int]:
    con = Warehouse(settings.load().warehouse_uri).duckdb()
    return dict(con.execute("SELECT source_key, count(*) FROM cloudtrail_events GROUP BY source_key").fetchall())


def test_hostile_files_are_quarantined_and_a_failed_batch_does_not_hold_back_the_others(
        th_home: Path, airflow_db: None, s3_endpoint: str, s3_admin, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    import gzip

    spec = SynthSpec(seed=29, accounts=1, days=1, end=END_DAY, files_per_region_day=3, events_per_file=10,
                     regions=("us-east-1",), duplicates=0, bucket=BUCKET)
    s3_admin.create_bucket(Bucket=BUCKET)
    written = write_to_s3(spec, s3_admin, BUCKET)
    blocked, blocked_body = late_file(spec, datetime(2026, 11, 20, 1, 5, tzinfo=UTC), n_events=5)
    s3_admin.put_object(Bucket=BUCKET, Key=blocked, Body=blocked_body)
    folder, name = blocked.rsplit("/", 1)
    account = name.split("_", 1)[0]

    def key(suffix: str) -> str:
        return f"{folder}/{account}_CloudTrail_us-east-1_20261120T0110Z_{suffix}.json.gz"

    hostile = {}
    for suffix, h in hostile_files().items():
        s3_admin.put_object(Bucket=BUCKET, Key=key(suffix), Body=h.body)
        hostile[key(suffix)] = h.reason
    odd = odd_records()  # times no timestamp holds, a number beyond int64: loaded
    s3_admin.put_object(Bucket=BUCKET, Key=key("oddbutloadable1"), Body=gzip.compress(envelope(*odd)))

    with FaultProxy(s3_endpoint) as proxy:
        store_connection("trailhouse_hostile", "testing", "testing", {"region_name": "us-east-1"})
        save_mav(settings.load().mav_dir, Mav(name="hostile", bucket=BUCKET, endpoint_url=proxy.url, lookback_hours=48))
        monkeypatch.setenv("TRAILHOUSE_BATCH_BYTES", "1")  # one object per batch, one transform task each
        # S3 refuses one object: its batch's transform fails; every other batch goes on.
        proxy.always(403, "AccessDenied", op="get", key=blocked)
        first = runs.run_mav(Deployment(), "hostile", at=AT)

        assert first["failed_tasks"] == ["transform"]
        quarantined = {q["key"]: q["reason"] for q in first["quarantined"]}
        assert set(quarantined) == set(hostile)
        for k, needle in hostile.items():
            assert needle in quarantined[k], (k, quarantined[k])
        loaded = _events()
        assert sum(loaded.values()) == written.unique_events + len(odd)
        assert blocked not in loaded and not set(hostile) & set(loaded)
        assert first["status"] == "failed" and "their 1 objects stay pending" in first["message"]
        assert "AccessDenied" in first["message"], "the message keeps the failed batch's own error"

        eng = appdb.engine(settings.load().app_db_url)
        led = appdb.ledger.c
        with eng.connect() as conn:
            status = dict(conn.execute(sa.select(led.key, led.status).where(led.mav == "hostile")).all())
            unevaluated = conn.execute(sa.select(sa.func.count()).where(
                led.mav == "hostile", led.status == "loaded", led.evaluated_at.is_(None))).scalar()
        assert status[blocked] == "pending"
        assert unevaluated == 0  # the committed batches went on to rule evaluation and notification
        assert {t: first["task_states"][t] for t in ("commit", "evaluate_rules", "notify")} == dict.fromkeys(
            ("commit", "evaluate_rules", "notify"), ["success"])
        # ...and Airflow still calls the DAG run failed (its alerting and UI rely on that).
        assert first["dag_run_state"] == "failed" and first["task_states"]["run_verdict"] == ["failed"]

        # S3 serves the object again; by the next run its day folder is out of the look-back,
        # and the ledger still brings it back. Nothing else is loaded twice.
        proxy.clear()
        later = runs.run_mav(Deployment(), "hostile", at=AT + timedelta(days=5))
    assert later["failed_tasks"] == [] and later["status"] == "success"
    assert later["dag_run_state"] == "success" and later["task_states"]["run_verdict"] == ["skipped"]
    assert later["objects_loaded"] == 1 and later["events_loaded"] == 5
    assert _events() == {**loaded, blocked: 5}
    con = Warehouse(settings.load().warehouse_uri).duckdb()
    assert con.execute("SELECT count(*) = count(DISTINCT event_id) FROM cloudtrail_events").fetchone()[0]
    with eng.connect() as conn:
        assert conn.execute(sa.select(led.status).where(led.mav == "hostile", led.key == blocked)).scalar() == "loaded"
