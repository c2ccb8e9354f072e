"""Section 4: LIST calls and seconds to find one hour's new files, as the bucket's history grows 7 -> 30 -> 90 days."""

from __future__ import annotations

import datetime
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.common import Sheet, median
from bench.data import END, REGIONS
from trailhouse.config import Mav
from trailhouse.db import appdb
from trailhouse.dev.synth.files import generate, write_to_dir
from trailhouse.dev.synth.world import SynthSpec
from trailhouse.ingest.discover import account_folders, discover
from trailhouse.ingest.layout import KIND_LOG, day_prefix, parse_key
from trailhouse.ingest.source import LocalSource, S3Source, Source

HISTORIES = (7, 30, 90)
ACCOUNTS = 20
FILES_PER_REGION_DAY = 3
# The hourly run of 12:00-13:00 UTC on the last day, with the production look-back of 24 h.
HOUR_START = datetime.datetime(END.year, END.month, END.day, 12, tzinfo=datetime.UTC)
HOUR_END = HOUR_START + datetime.timedelta(hours=1)
REPEATS = 7


def spec_for(days: int) -> SynthSpec:
    # Day D of account i depends only on (seed, i, D): the 30-day bucket is the 7-day one
    # plus 23 older days, so one bucket can grow its history in place.
    return SynthSpec(seed=11, accounts=ACCOUNTS, regions=REGIONS, days=days, end=END, events_per_file=2,
                           files_per_region_day=FILES_PER_REGION_DAY, digests=False, insights=False, duplicates=0,
                           bucket="trailhouse-bench-discovery")


def grow(days: int, have: set[str], put: Callable[[str, bytes], None], threads: int = 1) -> int:
    """Add the objects of a `days`-day history that are not there yet; returns how many."""
    todo = [(k, b) for k, b in generate(spec_for(days)) if k not in have]
    if threads > 1:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(lambda kb: put(*kb), todo))
    else:
        for k, b in todo:
            put(k, b)
    have.update(k for k, _ in todo)
    return len(todo)


def ledger_history(eng: Any, source: Source, mav: Mav) -> int:
    """Ledger every log file delivered before the hour, as earlier hourly runs would have."""
    rows = []
    for obj in source.list_objects(f"{mav.prefix}AWSLogs/"):
        p = parse_key(obj.key)
        if p is None or p.kind != KIND_LOG or p.delivered_at is None or p.delivered_at >= HOUR_START:
            continue
        rows.append({"key": obj.key, "etag": obj.etag, "size": obj.size, "kind": KIND_LOG, "status": "loaded",
                     "events": 2, "reason": ""})
    appdb.record_objects(eng, mav.name, "history", rows)
    return len(rows)


def _one_list_s(source: Source, mav: Mav) -> float:
    """The cost of one LIST of one day folder, alone: separates "more calls" from "slower calls"."""
    folders = account_folders(source, mav)
    prefix = day_prefix(folders[min(folders)], KIND_LOG, REGIONS[0], END)
    one = []
    for _ in range(20):
        t0 = time.perf_counter()
        source.list_objects(prefix)
        one.append(time.perf_counter() - t0)
    return median(one)


def _discover_once(source: Source, eng: Any, mav: Mav) -> tuple[float, Any]:
    t0 = time.perf_counter()
    found = discover(source, eng, mav, HOUR_START, HOUR_END)
    return time.perf_counter() - t0, found


def measure(make_source: Callable[[], Source], eng: Any, mav: Mav) -> dict[str, Any]:
    secs, last = [], None
    for _ in range(REPEATS):
        s, last = _discover_once(make_source(), eng, mav)
        secs.append(s)
    assert last is not None
    return {"seconds": median(secs), "list_calls": last.list_calls, "new": len(last.new), "skipped": last.skipped,
            "routed": len(last.routed), "one_list_s": _one_list_s(make_source(), mav)}


def run_local(work: Path) -> list[dict[str, Any]]:
    """Three buckets (the shorter histories hard-linked from the 90-day one), measured round-robin.

    Round-robin, so that load from other processes on the machine hits every history alike.
    """
    full = work / f"discovery-bucket-{HISTORIES[-1]}"
    write_to_dir(spec_for(HISTORIES[-1]), full)
    setups = {}
    for days in HISTORIES:
        root = work / f"discovery-bucket-{days}"
        if root != full:
            first = END - datetime.timedelta(days=days - 1)
            for dirpath, _dirs, files in os.walk(full):
                for name in files:
                    src = Path(dirpath) / name
                    rel = src.relative_to(full)
                    p = parse_key(rel.as_posix())
                    if p is not None and p.day >= first:
                        (root / rel).parent.mkdir(parents=True, exist_ok=True)
                        os.link(src, root / rel)
        eng = appdb.engine(f"sqlite:///{work / f'app-discovery-{days}.db'}")
        mav = Mav(name="discovery", path=str(root))
        objects = sum(len(f) for _d, _s, f in os.walk(root))
        setups[days] = (root, eng, mav, ledger_history(eng, LocalSource(root), mav), objects)
    secs: dict[int, list[float]] = {d: [] for d in HISTORIES}
    last: dict[int, Any] = {}
    for _ in range(REPEATS):
        for days, (root, eng, mav, _l, _o) in setups.items():
            s, last[days] = _discover_once(LocalSource(root), eng, mav)
            secs[days].append(s)
    out = []
    for days, (root, _eng, mav, ledgered, objects) in setups.items():
        f = last[days]
        out.append({"store": "local", "days": days, "objects": objects, "ledgered": ledgered,
                    "seconds": median(secs[days]), "runs": secs[days], "list_calls": f.list_calls, "new": len(f.new),
                    "skipped": f.skipped, "routed": len(f.routed), "one_list_s": _one_list_s(LocalSource(root), mav)})
    return out


def run_moto(work: Path) -> list[dict[str, Any]]:
    import boto3
    from botocore.config import Config

    from trailhouse.dev.servers import moto_server

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    out = []
    with moto_server() as endpoint:
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                              config=Config(max_pool_connections=32, retries={"max_attempts": 8}))
        bucket = "trailhouse-bench-discovery"
        client.create_bucket(Bucket=bucket)
        eng = appdb.engine(f"sqlite:///{work / 'app-discovery-moto.db'}")
        mav = Mav(name="discovery", bucket=bucket)
        have: set[str] = set()
        for days in HISTORIES:
            t0 = time.perf_counter()
            grow(days, have, lambda k, b: client.put_object(Bucket=bucket, Key=k, Body=b), threads=16)
            upload_s = time.perf_counter() - t0
            with eng.begin() as conn:
                conn.execute(appdb.ledger.delete().where(appdb.ledger.c.mav == mav.name))
            ledgered = ledger_history(eng, S3Source(client, bucket), mav)
            m = measure(lambda: S3Source(client, bucket), eng, mav)
            out.append({"store": "moto S3", "days": days, "objects": len(have), "ledgered": ledgered,
                        "upload_s": upload_s, **m})
    return out


def report(results: list[dict[str, Any]], sheet: Sheet) -> None:
    s = "discovery"
    by_store: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by_store.setdefault(r["store"], []).append(r)
    for store, rows in by_store.items():
        first = rows[0]
        for r in rows:
            sheet.add(s, f"{store}, {r['days']:>2} days history: LIST calls", r["list_calls"], "calls",
                      ratio=f"{r['list_calls'] / first['list_calls']:.2f}x {first['days']} days",
                      note=f"{r['objects']:,} objects, {r['ledgered']:,} ledgered; found {r['new']} new, "
                           f"{r['skipped']} already loaded")
            sheet.add(s, f"{store}, {r['days']:>2} days history: seconds", r["seconds"], "s",
                      ratio=f"{r['seconds'] / first['seconds']:.2f}x {first['days']} days",
                      note=f"median of {REPEATS}" + (f"; upload took {r['upload_s']:.0f} s" if "upload_s" in r else ""))
            sheet.add(s, f"{store}, {r['days']:>2} days history: one day-folder LIST", r["one_list_s"] * 1000, "ms",
                      ratio=f"{r['one_list_s'] / first['one_list_s']:.2f}x {first['days']} days",
                      note="median of 20 calls of list_objects on one day folder")
    sheet.details["discovery"] = results
