"""`trailhouse run` (dag.test()): the transforms of one run spread over worker processes, every event loaded once."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from trailhouse import settings
from trailhouse.config import Mav, save_mav
from trailhouse.deployment import Deployment
from trailhouse.dev.synth.files import write_to_dir
from trailhouse.dev.synth.world import SynthSpec
from trailhouse.pipeline import runs, workers
from trailhouse.warehouse.table import Warehouse

# 4 accounts x 2 regions x 30 files of ~200 events: ~10 MB of gzip, one batch big enough to split.
SPEC = SynthSpec(seed=3, accounts=4, days=1, end=date(2026, 11, 20), files_per_region_day=30,
                       events_per_file=200, regions=("us-east-1", "eu-west-1"))


def _transform_parts(dag_id: str, run_id: str) -> list[dict[str, Any]]:
    """Where the parts of the run's transform tasks ran, as the tasks returned it (their XCom)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.scalars(XComModel.get_many(run_id=run_id, dag_ids=dag_id, task_ids="transform",
                                                  key="return_value")).all()
        return [part for row in rows for part in XComModel.deserialize_value(row)["parts"]]


def test_the_transforms_of_one_run_run_in_parallel_processes(th_home: Path, airflow_db: None, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAILHOUSE_TRANSFORM_PROCESSES", "2")
    written = write_to_dir(SPEC, tmp_path / "bucket")
    sizes = [p.stat().st_size for p in (tmp_path / "bucket").rglob("*_CloudTrail_*.json.gz")]
    assert sum(sizes) >= 2 * workers.MIN_PART_BYTES, "the data set is too small to be split"
    save_mav(settings.load().mav_dir, Mav(name="par", path=str(tmp_path / "bucket"), lookback_hours=48))

    result = runs.run_mav(Deployment(), "par", quiet=True, at=datetime(2026, 11, 21, 1, 30, tzinfo=UTC))

    assert result["failed_tasks"] == []
    assert result["objects_loaded"] == written.log_files
    assert result["events_loaded"] == written.unique_events
    parts = _transform_parts("trailhouse_mav_par", result["run_id"])
    assert sum(p["files"] for p in parts) == written.log_files
    # Two worker processes, neither the run's own, each transforming while the other did.
    pids = {p["pid"] for p in parts}
    assert len(pids) == 2 and os.getpid() not in pids
    first, second = sorted(parts, key=lambda p: p["started"])[:2]
    assert first["pid"] != second["pid"] and second["started"] < first["finished"]
    con = Warehouse(settings.load().warehouse_uri).duckdb()
    assert con.execute("SELECT count(*), count(DISTINCT event_id) FROM cloudtrail_events").fetchone() == (
        written.unique_events, written.unique_events)


def test_a_failed_part_fails_its_batch_and_leaves_no_staged_file(th_home: Path, airflow_db: None, tmp_path: Path) -> None:
    from trailhouse.ingest.transform import DownloadError
    from trailhouse.pipeline import steps

    write_to_dir(SPEC, tmp_path / "bucket")
    mav = Mav(name="par", path=str(tmp_path / "bucket"), lookback_hours=48)
    run_id = "manual__broken-part"
    dep = Deployment()
    [batch] = steps.discover_step(dep, mav, run_id, datetime(2026, 11, 20, tzinfo=UTC), datetime(2026, 11, 21, tzinfo=UTC))
    (tmp_path / "bucket" / batch["objects"][0][0]).unlink()  # gone between the listing and the GET

    with workers.transform_pool(2), pytest.raises(DownloadError, match="1 of"):
        steps.transform_step(dep, mav, run_id, batch)

    # The part that succeeded had staged its files: they are gone with the failed batch.
    assert not list(Path(settings.load().warehouse_uri).rglob("*.parquet"))


def _workers_of(warehouse: str) -> list[Any]:
    """Live processes (other than this one) started with this test's warehouse in their environment."""
    import psutil

    found = []
    for proc in psutil.process_iter():
        try:
            if proc.pid != os.getpid() and proc.environ().get("TRAILHOUSE_WAREHOUSE") == warehouse:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def test_a_fault_in_a_worker_kills_the_run_and_its_workers_and_the_retry_loads_once(
        th_home: Path, airflow_db: None, tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    written = write_to_dir(SPEC, tmp_path / "bucket")
    save_mav(settings.load().mav_dir, Mav(name="par", path=str(tmp_path / "bucket"), lookback_hours=48))
    env = {**os.environ, "TRAILHOUSE_TRANSFORM_PROCESSES": "2"}
    command = [sys.executable, "-m", "trailhouse.cli", "run", "par", "--json", "--at", "2026-11-21T01:30"]

    killed = subprocess.run(command, env={**env, "TRAILHOUSE_FAULT": "transform.after_download"},
                            capture_output=True, timeout=600)
    assert killed.returncode == -9, killed.stderr[-2000:]  # like a power loss: the run's own process died
    deadline = time.monotonic() + 30
    while _workers_of(env["TRAILHOUSE_WAREHOUSE"]) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _workers_of(env["TRAILHOUSE_WAREHOUSE"]) == [], "worker processes outlived their run"

    retry = subprocess.run(command, env=env, capture_output=True, timeout=600)
    assert retry.returncode == 0, retry.stderr[-2000:]
    con = Warehouse(settings.load().warehouse_uri).duckdb()
    assert con.execute("SELECT count(*), count(DISTINCT event_id) FROM cloudtrail_events").fetchone() == (
        written.unique_events, written.unique_events)
