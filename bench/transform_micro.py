"""Micro-benchmark of one transform batch, stage by stage, in one process.

Usage: python -m bench.transform_micro DIR   (DIR: a folder written by `trailhouse synth --out DIR`)
Prints records/s for the C column builder (records.column_builder), for the Python path it
falls back to (envelope decoding, record_to_row, rows_to_frame), and for the whole
transform_batch.
"""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from trailhouse.ingest import records, transform
from trailhouse.ingest.source import LocalSource


def main(root: Path) -> None:
    src = LocalSource(root)
    objects = [o for o in src.list_objects("AWSLogs/") if "/CloudTrail/" in o.key]
    texts = [records.decompress(src.get(o.key)) for o in objects]

    builder = records.column_builder()
    tb = time.perf_counter()
    built = sum(builder.add(t)[0] for t in texts) if builder is not None else 0
    if builder is not None:
        records.builder_table(builder)
    tb1 = time.perf_counter()
    t0 = time.perf_counter()
    decoded = [records.decode_envelope(t) for t in texts]
    t1 = time.perf_counter()
    rows = [records.record_to_row(r) for recs in decoded for r in recs]
    t2 = time.perf_counter()
    n = len(rows)
    transform.rows_to_frame(rows, [None] * n, [None] * n, ["k"] * n, mav="m", ingested_at=datetime.now(UTC))
    t3 = time.perf_counter()
    with tempfile.TemporaryDirectory() as stage:
        result = transform.transform_batch(src, objects, mav="m", staging_dir=stage, threads=4)
    t4 = time.perf_counter()
    if builder is not None:
        print(f"C column builder: {built:,} of {n:,} records to Arrow at {built / (tb1 - tb):,.0f}/s")
    print(f"{n:,} records in {len(objects)} files: decode {n / (t1 - t0):,.0f}/s; record_to_row "
          f"{n / (t2 - t1):,.0f}/s; rows_to_frame {n / (t3 - t2):,.0f}/s; transform_batch {result.rows / (t4 - t3):,.0f}/s")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
