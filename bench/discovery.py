"""Section 4: LIST calls and seconds to find one hour's new files, as the bucket's history grows
7 -> 30 -> 90 days, and as the organisation grows 20 -> 200 -> 1,000 accounts x 4 / 17 regions."""

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
from trailhouse.ingest.discover import account_folders, days_between, discover, scan_streams
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


# Organisation sizes: accounts x regions, one log file per stream on the last day. 1,000
# accounts take moto ~15 min (it walks its whole bucket on every LIST): opt in with
# `--discovery-accounts 20,200,1000`.
SCALE_ACCOUNTS = (20, 200)
SCALE_REGIONS = (REGIONS, REGIONS + ("eu-central-1", "eu-west-2", "eu-west-3", "eu-north-1", "eu-south-1",
                                     "us-east-2", "us-west-1", "ca-central-1", "sa-east-1", "ap-south-1",
                                     "ap-northeast-1", "ap-northeast-2", "ap-southeast-1"))
SCALE_REPEATS = 3


def scale_spec(accounts: int, regions: tuple[str, ...]) -> SynthSpec:
    return SynthSpec(seed=13, accounts=accounts, regions=regions, days=1, end=END, events_per_file=1,
                           files_per_region_day=1, digests=False, insights=False, duplicates=0,
                           bucket=f"trailhouse-bench-scale-{accounts}-{len(regions)}")


def legacy_listing(source: Source, mav: Mav) -> int:
    """The baseline: discovery before its memory, i.e. the folder scan and one LIST per stream
    and day folder of the window, every run. Returns the objects listed."""
    days = days_between(HOUR_START - datetime.timedelta(hours=mav.lookback_hours), HOUR_END)
    streams = scan_streams(source, mav)
    with ThreadPoolExecutor(max_workers=16) as pool:
        listed = pool.map(lambda p: len(source.list_objects(p)),
                          [day_prefix(s.base, s.kind, s.region, d) for s in streams for d in days])
        return sum(listed)


def _timed(source: Source, fn: Callable[[Source], Any]) -> tuple[float, int, Any]:
    """(seconds, LIST calls, result) of fn(source)."""
    t0 = time.perf_counter()
    out = fn(source)
    return time.perf_counter() - t0, source.list_calls, out


def _scale_point(client: Any, bucket: str, eng: Any, n: int, regions: int) -> dict[str, Any]:
    """One organisation size: baseline, the day's first (scanning) run and an hourly run, each timed."""
    mav = Mav(name=f"scale-{n}-{regions}", bucket=bucket)
    now = datetime.datetime.combine(END, datetime.time(13, 5), tzinfo=datetime.UTC)

    def run(source: Source) -> Any:
        return discover(source, eng, mav, HOUR_START, HOUR_END, now=now)

    repeats = 1 if n * regions > 1000 else SCALE_REPEATS
    legacy, scan, hourly = [], [], []
    for _ in range(repeats):
        with eng.begin() as conn:  # each repeat's first run scans again
            conn.execute(appdb.discovery_scans.delete().where(appdb.discovery_scans.c.mav == mav.name))
        legacy.append(_timed(S3Source(client, bucket), lambda s: legacy_listing(s, mav)))
        scan.append(_timed(S3Source(client, bucket), run))
        hourly.append(_timed(S3Source(client, bucket), run))
    found = hourly[-1][2]
    assert scan[-1][2].scanned and not found.scanned and found.streams == n * regions
    return {"accounts": n, "regions": regions, "streams": found.streams, "new": len(found.new), "repeats": repeats,
            "legacy_calls": legacy[-1][1], "legacy_s": median([t for t, _c, _o in legacy]),
            "scan_calls": scan[-1][1], "scan_s": median([t for t, _c, _o in scan]),
            "hourly_calls": hourly[-1][1], "hourly_s": median([t for t, _c, _o in hourly])}


def run_scale(work: Path, sheet: Sheet, accounts: tuple[int, ...] = SCALE_ACCOUNTS) -> list[dict[str, Any]]:
    """LIST calls and seconds of one hourly run at 20 / 200 (/ 1,000) accounts x 4 / 17 regions on
    moto's S3 server (one bucket per size), against the baseline of listing every folder and day
    folder every run."""
    import boto3
    from botocore.config import Config

    from trailhouse.dev.servers import moto_server

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    eng = appdb.engine(f"sqlite:///{work / 'app-discovery-scale.db'}")
    rows = []
    with moto_server() as endpoint:
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                              config=Config(max_pool_connections=32, retries={"max_attempts": 8}))
        for regions in SCALE_REGIONS:
            for n in accounts:
                spec = scale_spec(n, regions)
                client.create_bucket(Bucket=spec.bucket)
                upload(spec, lambda k, b, bk=spec.bucket: client.put_object(Bucket=bk, Key=k, Body=b))
                rows.append(_scale_point(client, spec.bucket, eng, n, len(regions)))
    for r in rows:
        label = f"moto S3, {r['accounts']:>4} accounts x {r['regions']:>2} regions"
        note = f"{r['streams']:,} streams; median of {r['repeats']}"
        sheet.add("discovery", f"{label}: LIST calls, hourly run", r["hourly_calls"], "calls",
                  ratio=f"{r['hourly_calls'] / r['legacy_calls']:.2f}x baseline {r['legacy_calls']:,}",
                  note=f"first run of the day (scan): {r['scan_calls']:,} calls")
        sheet.add("discovery", f"{label}: seconds, hourly run", r["hourly_s"], "s",
                  ratio=f"{r['hourly_s'] / r['legacy_s']:.2f}x baseline {r['legacy_s']:.2f} s",
                  note=f"{note}; first run of the day (scan) {r['scan_s']:.2f} s")
    sheet.details["discovery_scale"] = rows
    return rows


def upload(spec: SynthSpec, put: Callable[[str, bytes], None]) -> None:
    """Upload a spec's objects with 16 threads."""
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda kb: put(*kb), generate(spec)))
