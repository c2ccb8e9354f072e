"""Section 2: the production ingest path (discover, make_batches, transform_batch, commit) with 1 and 2 workers."""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import MB, MIB, RssSampler, Sheet, cpu_seconds, self_maxrss_bytes, spawn_pool
from bench.data import Dataset
from trailhouse import settings
from trailhouse.config import Mav
from trailhouse.db import appdb
from trailhouse.ingest.discover import discover, make_batches
from trailhouse.ingest.source import LocalSource, ObjectInfo
from trailhouse.ingest.transform import LOADED, BatchResult, transform_batch
from trailhouse.warehouse.table import Warehouse

MAV_NAME = "bench"


@dataclass
class IngestRun:
    workers: int
    warehouse: str
    events: int = 0  # rows transformed (duplicates included, as every record is parsed)
    inserted: int = 0
    duplicates: int = 0
    batches: int = 0
    files: int = 0
    discover_s: float = 0.0
    transform_s: float = 0.0
    commit_s: float = 0.0
    ledger_s: float = 0.0
    wall_s: float = 0.0
    cpu_s: float = 0.0  # CPU seconds of the workers' tasks plus the parent's run (discover, commit, ledger)
    worker_peak_rss: int = 0  # bytes, VmHWM of the biggest worker process
    worker_peak_rss_sampled: int = 0
    parent_peak_rss: int = 0  # bytes, sampled during the run
    list_calls: int = 0
    batch_seconds: list[float] = field(default_factory=list)


def mav_for(root: Path) -> Mav:
    return Mav(name=MAV_NAME, path=str(root), lookback_hours=1)


def window(ds: Dataset) -> tuple[datetime.datetime, datetime.datetime]:
    """An interval covering every delivery of the data set (the re-delivery is dated the day after `end`)."""
    first = ds.spec.day_list()[0]
    start = datetime.datetime(first.year, first.month, first.day, tzinfo=datetime.UTC)
    last = ds.spec.end + datetime.timedelta(days=2)
    end = datetime.datetime(last.year, last.month, last.day, tzinfo=datetime.UTC)
    return start, end


def _warm(delay: float) -> int:
    import os

    import trailhouse.ingest.transform  # noqa: F401  (a worker imports its code once, before its first task)

    time.sleep(delay)
    return os.getpid()


def transform_task(
    root: str, objects: list[tuple[str, str, int]], staging_dir: str, threads: int
) -> tuple[dict[str, Any], int, float, float]:
    """What one Airflow transform task does with a LocalSource.

    Returns (BatchResult dict, this process's peak RSS, seconds, CPU seconds).
    """
    t0, c0 = time.perf_counter(), cpu_seconds()
    result = transform_batch(
        LocalSource(root),
        [ObjectInfo(k, e, s) for k, e, s in objects],
        mav=MAV_NAME,
        staging_dir=staging_dir,
        threads=threads,
    )
    return result.to_dict(), self_maxrss_bytes(), time.perf_counter() - t0, cpu_seconds() - c0


def run(ds: Dataset, work: Path, workers: int) -> IngestRun:
    tag = f"{workers}w"
    wh_uri = str(work / f"warehouse-{tag}")
    staging = Warehouse(wh_uri).table_uri  # as in production: the commit adds the files
    db_url = f"sqlite:///{work / f'app-{tag}.db'}"
    cfg = settings.load()
    out = IngestRun(workers=workers, warehouse=wh_uri)
    eng = appdb.engine(db_url)  # created and migrated before the clock starts: it exists in production
    mav = mav_for(ds.root)
    start, end = window(ds)
    with spawn_pool(workers) as pool:
        # Start the worker processes and import trailhouse in each before timing (an Airflow
        # worker is already running when a task arrives).
        list(pool.map(_warm, [0.5] * workers))
        with RssSampler() as sampler:
            t0, c0 = time.perf_counter(), cpu_seconds()
            source = LocalSource(ds.root)
            found = discover(source, eng, mav, start, end, threads=cfg.download_threads)
            batches = make_batches(found.new, cfg.batch_bytes)
            t1 = time.perf_counter()
            futures = [
                pool.submit(transform_task, str(ds.root), [(o.key, o.etag, o.size) for o in b], staging,
                            cfg.download_threads)
                for b in batches
            ]
            results: list[BatchResult] = []
            for f in futures:
                d, rss, secs, cpu = f.result()
                out.cpu_s += cpu
                results.append(BatchResult.from_dict(d))
                out.worker_peak_rss = max(out.worker_peak_rss, rss)
                out.batch_seconds.append(secs)
            t2 = time.perf_counter()
            staged = [f for r in results for f in r.staged]
            committed = Warehouse(wh_uri).commit(staged, run_id=f"bench-{tag}")
            t3 = time.perf_counter()
            outcomes = [o for r in results for o in r.outcomes]
            appdb.record_objects(eng, MAV_NAME, f"bench-{tag}", (
                {"key": o.key, "etag": o.etag, "size": o.size, "kind": "CloudTrail", "status": o.status,
                 "events": o.events, "reason": o.reason} for o in outcomes))
            t4 = time.perf_counter()
            out.cpu_s += cpu_seconds() - c0
    out.events = sum(r.rows for r in results)
    out.inserted = committed.inserted
    out.duplicates = committed.duplicates
    out.batches = len(batches)
    out.files = sum(1 for o in outcomes if o.status == LOADED)
    out.discover_s, out.transform_s, out.commit_s, out.ledger_s = t1 - t0, t2 - t1, t3 - t2, t4 - t3
    out.wall_s = t4 - t0
    out.parent_peak_rss = sampler.parent_peak
    out.worker_peak_rss_sampled = sampler.child_peak
    out.list_calls = found.list_calls
    return out


def report(ds: Dataset, runs: list[IngestRun], sheet: Sheet) -> None:
    s = "ingest"
    base = runs[0]
    for r in runs:
        w = f"{r.workers} worker{'s' if r.workers > 1 else ''}"
        eps = r.events / r.wall_s
        sheet.add(s, f"{w}: end to end events/s", eps, "events/s",
                  ratio="" if r is base else f"{eps / (base.events / base.wall_s):.2f}x 1 worker",
                  note="discover + transform + commit + ledger")
        sheet.add(s, f"{w}: end to end MB/s (uncompressed)", ds.uncompressed_bytes / MB / r.wall_s, "MB/s")
        sheet.add(s, f"{w}: wall time", r.wall_s, "s",
                  note=f"discover {r.discover_s:.1f}, transform {r.transform_s:.1f}, commit {r.commit_s:.1f}, "
                       f"ledger {r.ledger_s:.1f}")
        sheet.add(s, f"{w}: events per CPU-second", r.events / r.cpu_s, "events/CPU-s",
                  note=f"{r.cpu_s:.0f} CPU-s in workers + parent; little affected by other load")
        sheet.add(s, f"{w}: transform-only events/s", r.events / r.transform_s, "events/s",
                  note=f"{r.batches} batches of <= {settings.load().batch_bytes // MIB} MiB gzip")
        sheet.add(s, f"{w}: commit (ids checked, files added to the Delta log) events/s", r.inserted / r.commit_s if r.commit_s else None,
                  "events/s", note=f"{r.inserted:,} inserted, {r.duplicates} duplicates dropped")
        sheet.add(s, f"{w}: peak RSS, biggest worker", r.worker_peak_rss / MIB, "MiB",
                  note=f"VmHWM; sampled {r.worker_peak_rss_sampled / MIB:.0f} MiB")
        sheet.add(s, f"{w}: peak RSS, parent (runs commit)", r.parent_peak_rss / MIB, "MiB", note="sampled every 50 ms")
    sheet.details["ingest"] = [r.__dict__ for r in runs]
