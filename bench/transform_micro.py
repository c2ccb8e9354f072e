"""Micro-benchmark of one transform batch: decode, record_to_row, rows_to_frame, transform_batch.

Usage: python -m bench.transform_micro DIR  (DIR: a folder written by `trailhouse synth --out`)
"""
import time, pathlib, sys
from trailhouse import transform, records
from trailhouse.source import LocalSource
d = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/pf")
src = LocalSource(d)
objs = [o for o in src.list_objects("AWSLogs/") if "/CloudTrail/" in o.key]
datas = [src.get(o.key) for o in objs]
texts = [records.decompress(x) for x in datas]
t=time.perf_counter(); n=0
for tx in texts:
    recs = records.decode_envelope(tx)
    n += len(recs)
t1=time.perf_counter()
for tx in texts:
    for r in records.decode_envelope(tx):
        records.record_to_row(r)
t2=time.perf_counter()
r = transform.transform_batch(src, objs, mav="m", staging_dir=str(d) + "-stage", threads=4)
t3=time.perf_counter()
print(f"{n} records; decode {n/(t1-t0 if False else t1-t):,.0f}/s; record_to_row {n/(t2-t1):,.0f}/s; transform_batch {r.rows/(t3-t2):,.0f}/s")
import polars as pl, pyarrow as pa
from datetime import datetime, timezone
from trailhouse.schema import COLUMNS, ARROW_SCHEMA
rows=[]; 
for tx in texts:
    for r in records.decode_envelope(tx): rows.append(records.record_to_row(r))
n=len(rows)
t=time.perf_counter()
f = transform.rows_to_frame(rows, [None]*n, [None]*n, ["k"]*n, mav="m", ingested_at=datetime.now(timezone.utc))
t1=time.perf_counter()
string_cols = {c.name: pl.String for c in COLUMNS if c.path is not None and c.kind in ("str", "json", "time")}
bool_cols = {c.name: pl.Boolean for c in COLUMNS if c.kind in ("bool", "mfa")}
df = pl.from_dicts(rows, schema={**string_cols, **bool_cols, "extra_fields": pl.String})
t2=time.perf_counter()
cols = {name: pa.array([r.get(name) for r in rows], type=pa.string() if name in string_cols or name=="extra_fields" else pa.bool_()) for name in list(string_cols)+list(bool_cols)+["extra_fields"]}
t3=time.perf_counter()
print(f"rows_to_frame {n/(t1-t):,.0f}/s; from_dicts {n/(t2-t1):,.0f}/s; pa.array per column {n/(t3-t2):,.0f}/s")
