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
    ("gunzip (records.decompress)", "trailhouse/ingest/records.py", "decompress"),
    ("SHA-256 of the JSON (hashlib)", "~", "<built-in method _hashlib.openssl_sha256>"),
    ("C column builder (Builder.add)", "~", "<method 'add' of 'trailhouse.ingest._fastjson.Builder' objects>"),
    ("records left to Python (records.record_to_row)", "trailhouse/ingest/records.py", "record_to_row"),
    ("builder -> Arrow table (transform.builder_arrow)", "trailhouse/ingest/transform.py", "builder_arrow"),
    ("row dicts -> Polars frame (transform.rows_to_frame)", "trailhouse/ingest/transform.py", "rows_to_frame"),
    ("Parquet write (PartitionedWriter.write)", "trailhouse/warehouse/table.py", "write"),
    ("key parsing (layout.parse_key)", "trailhouse/ingest/layout.py", "parse_key"),
)


def _cum(stats: pstats.Stats, file_part: str, func: str) -> float:
    total = 0.0
    for (filename, _line, name), (_cc, _nc, _tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if name == func and file_part in filename:
            total += ct
    return total


def stage_times(root: str, objects: list[tuple[str, str, int]]) -> dict[str, float]:
    """transform_batch's stages timed by hand, without a profiler's overhead (same functions, same order)."""
    import hashlib

    from trailhouse.ingest import records
    from trailhouse.ingest.layout import parse_key
    from trailhouse.ingest.transform import FLUSH_ROWS, builder_arrow, rows_to_frame
    from trailhouse.warehouse.schema import ARROW_SCHEMA
    from trailhouse.warehouse.table import PartitionedWriter

    t: dict[str, float] = dict.fromkeys(
        ("read file", "gunzip", "SHA-256", "C column builder", "record_to_row (records left to Python)",
         "Arrow table in the warehouse's schema", "Parquet write"), 0.0)
    clock = time.perf_counter
    ingested_at = datetime.datetime.now(datetime.UTC)
    builder = records.column_builder()
    with tempfile.TemporaryDirectory() as tmp:
        writer = PartitionedWriter(tmp)
        built: list[Any] = []
        pending: list[dict[str, Any]] = []
        lineage: list[tuple[str, Any, Any]] = []

        def flush() -> None:
            tables = []
            t0 = clock()
            if built:
                tables.append(builder_arrow(builder, built, mav="bench", ingested_at=ingested_at))
            if pending:
                tables.append(rows_to_frame(pending, [a for _, a, _ in lineage], [d for _, _, d in lineage],
                                            [k for k, _, _ in lineage], mav="bench",
                                            ingested_at=ingested_at).to_arrow().cast(ARROW_SCHEMA))
            t1 = clock()
            for table in tables:
                writer.write(table)
            t2 = clock()
            t["Arrow table in the warehouse's schema"] += t1 - t0
            t["Parquet write"] += t2 - t1
            built.clear(), pending.clear(), lineage.clear()

        for key, _etag, _size in objects:
            t0 = clock()
            data = (Path(root) / key).read_bytes()
            t1 = clock()
            text = records.decompress(data, key)
            t2 = clock()
            hashlib.sha256(text).hexdigest()
            t3 = clock()
            fast = builder.add(text)
            t4 = clock()
            if fast is None:
                added, rows = 0, [records.record_to_row(r) for r in records.decode_envelope(text)]
            else:
                added, left_out = fast
                raw = records.decode_envelope(text) if left_out else []
                rows = [records.record_to_row(raw[i]) for i in left_out]
            t5 = clock()
            t["read file"] += t1 - t0
            t["gunzip"] += t2 - t1
            t["SHA-256"] += t3 - t2
            t["C column builder"] += t4 - t3
            t["record_to_row (records left to Python)"] += t5 - t4
            parsed = parse_key(key)
            account, day = (parsed.account, parsed.day) if parsed else (None, None)
            if added:
                built.append((key, account, day, added))
            pending.extend(rows)
            lineage.extend([(key, account, day)] * len(rows))
            if builder.rows + len(pending) >= FLUSH_ROWS:
                flush()
        flush()
        writer.close()
    return t


def profile_batch(root: str, objects: list[tuple[str, str, int]], staging: str) -> dict[str, Any]:
    """Runs in its own process: one transform_batch plain, then one under cProfile."""
    from trailhouse.ingest.source import LocalSource, ObjectInfo
    from trailhouse.ingest.transform import transform_batch

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
    total = _cum(stats, "trailhouse/ingest/transform.py", "transform_batch")
    stages = {}
    for label, file_part, func in STAGES:
        if file_part:
            stages[label] = _cum(stats, file_part, func)
    flush = _cum(stats, "trailhouse/ingest/transform.py", "flush")
    stages["rest of flush (lineage dates, to_arrow of Python rows)"] = flush - sum(
        stages[label] for label in stages if "table" in label or "frame" in label or "Parquet" in label)
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
    hand_total = sum(hand.values())
    for label, secs in hand.items():
        sheet.add(s, f"timed stage: {label.strip()}", 100 * secs / hand_total, "% of stages",
                  note=f"{secs:.2f} s, no profiler")
    total = res["profiled_total_s"] or 1.0
    for label, secs in res["stages"].items():
        sheet.add(s, f"cProfile stage: {label}", 100 * secs / total, "% of profiled", note=f"{secs:.2f} s under cProfile")
    sheet.details["profile"] = res
