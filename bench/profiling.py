"""Section 7: where transform_batch's time goes, by cProfile, over one batch of ~50k events."""

from __future__ import annotations

import cProfile
import datetime
import io
import pstats
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import Sheet

# (label, file name part, function name) of the stages of transform_batch, by cumulative time.
STAGES = (
    ("gunzip (records.decompress)", "trailhouse/records.py", "decompress"),
    ("envelope decode (records.decode_envelope)", "trailhouse/records.py", "decode_envelope"),
    ("record -> row dicts (records.record_to_row)", "trailhouse/records.py", "record_to_row"),
    ("rows -> Polars frame (transform.rows_to_frame)", "trailhouse/transform.py", "rows_to_frame"),
    ("frame -> Arrow + cast to schema (flush less the above)", "", ""),
    ("Parquet write (ParquetWriter.write_table)", "pyarrow/parquet", "write_table"),
    ("key parsing (layout.parse_key)", "trailhouse/layout.py", "parse_key"),
)


def _cum(stats: pstats.Stats, file_part: str, func: str) -> float:
    total = 0.0
    for (filename, _line, name), (_cc, _nc, _tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if name == func and file_part in filename:
            total += ct
    return total


def stage_times(root: str, objects: list[tuple[str, str, int]]) -> dict[str, float]:
    """transform_batch's stages timed by hand, without a profiler's overhead (same functions, same order)."""
    import pyarrow.parquet as pq

    from trailhouse import records
    from trailhouse.layout import parse_key
    from trailhouse.schema import ARROW_SCHEMA
    from trailhouse.transform import FLUSH_ROWS, rows_to_frame

    t: dict[str, float] = dict.fromkeys(
        ("read file", "gunzip", "envelope decode", "record_to_row", "rows_to_frame", "  of which: column lists from row dicts",
         "to_arrow + cast", "Parquet write"), 0.0)
    clock = time.perf_counter
    ingested_at = datetime.datetime.now(datetime.UTC)
    with tempfile.TemporaryDirectory() as tmp:
        writer = pq.ParquetWriter(f"{tmp}/x.parquet", ARROW_SCHEMA, compression="zstd")
        pending: list[dict[str, Any]] = []
        accounts: list[str | None] = []
        days: list[Any] = []
        keys: list[str] = []

        def flush() -> None:
            t0 = clock()
            _ = {name: [r.get(name) for r in pending] for name in records.SOURCE_COLUMNS}
            t1 = clock()
            frame = rows_to_frame(pending, accounts, days, keys, mav="bench", ingested_at=ingested_at)
            t2 = clock()
            table = frame.to_arrow().cast(ARROW_SCHEMA)
            t3 = clock()
            writer.write_table(table)
            t4 = clock()
            t["  of which: column lists from row dicts"] += t1 - t0
            t["rows_to_frame"] += t2 - t1
            t["to_arrow + cast"] += t3 - t2
            t["Parquet write"] += t4 - t3
            pending.clear(), accounts.clear(), days.clear(), keys.clear()

        for key, _etag, _size in objects:
            t0 = clock()
            data = (Path(root) / key).read_bytes()
            t1 = clock()
            text = records.decompress(data, key)
            t2 = clock()
            recs = records.decode_envelope(text)
            t3 = clock()
            rows = [records.record_to_row(r) for r in recs]
            t4 = clock()
            t["read file"] += t1 - t0
            t["gunzip"] += t2 - t1
            t["envelope decode"] += t3 - t2
            t["record_to_row"] += t4 - t3
            parsed = parse_key(key)
            pending.extend(rows)
            accounts.extend([parsed.account if parsed else None] * len(rows))
            days.extend([parsed.day if parsed else None] * len(rows))
            keys.extend([key] * len(rows))
            if len(pending) >= FLUSH_ROWS:
                flush()
        flush()
        writer.close()
    return t


def profile_batch(root: str, objects: list[tuple[str, str, int]], staging: str) -> dict[str, Any]:
    """Runs in its own process: one transform_batch plain, then one under cProfile."""
    from trailhouse.source import LocalSource, ObjectInfo
    from trailhouse.transform import transform_batch

    objs = [ObjectInfo(*o) for o in objects]
    plain_runs = []
    for _ in range(2):  # the first call in a fresh process also pays one-off start-up costs
        t0 = time.perf_counter()
        plain = transform_batch(LocalSource(root), objs, mav="bench", staging_dir=staging)
        plain_runs.append(time.perf_counter() - t0)
    plain_s = min(plain_runs)
    by_hand = stage_times(root, objects)
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    transform_batch(LocalSource(root), objs, mav="bench", staging_dir=staging)
    prof.disable()
    prof_s = time.perf_counter() - t0
    shutil.rmtree(staging, ignore_errors=True)
    stats = pstats.Stats(prof)
    total = _cum(stats, "trailhouse/transform.py", "transform_batch")
    stages = {}
    for label, file_part, func in STAGES:
        if file_part:
            stages[label] = _cum(stats, file_part, func)
    flush = _cum(stats, "trailhouse/transform.py", "flush")
    stages["frame -> Arrow + cast to schema (flush less the above)"] = (
        flush - stages["rows -> Polars frame (transform.rows_to_frame)"] - stages["Parquet write (ParquetWriter.write_table)"]
    )
    rows = []
    for (filename, line, name), (_cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append({"function": f"{Path(filename).name}:{line}({name})" if filename != "~" else name,
                     "ncalls": nc, "tottime": tt, "cumtime": ct})
    rows.sort(key=lambda r: r["tottime"], reverse=True)
    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(15)
    return {"events": plain.rows, "files": len(objs), "plain_s": plain_s, "plain_runs": plain_runs, "profiled_s": prof_s, "by_hand": by_hand,
            "profiled_total_s": total, "stages": stages, "top_tottime": rows[:10], "pstats_text": text.getvalue()}


def report(res: dict[str, Any], sheet: Sheet) -> None:
    s = "profile"
    sheet.add(s, f"one transform_batch, {res['events']:,} events / {res['files']} files", res["plain_s"], "s",
              note=f"{res['events'] / res['plain_s']:,.0f} events/s unprofiled (best of 2), 1 process; "
                   f"{res['profiled_s']:.1f} s under cProfile")
    hand = res["by_hand"]
    hand_total = sum(v for k, v in hand.items() if not k.startswith(" "))
    for label, secs in hand.items():
        sheet.add(s, f"timed stage: {label.strip()}", 100 * secs / hand_total, "% of stages",
                  note=f"{secs:.2f} s, no profiler" + ("; part of rows_to_frame" if label.startswith(" ") else ""))
    total = res["profiled_total_s"] or 1.0
    for label, secs in res["stages"].items():
        sheet.add(s, f"cProfile stage: {label}", 100 * secs / total, "% of profiled", note=f"{secs:.2f} s under cProfile")
    sheet.details["profile"] = res
