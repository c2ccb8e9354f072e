"""Section 3: the same files through DuckDB's read_json, and the gunzip and JSON-parse floors."""

from __future__ import annotations

import shutil
import time
import zlib
from pathlib import Path
from typing import Any

from bench.common import MB, MIB, Sheet, cpu_seconds, isolated
from trailhouse.ingest import records
from trailhouse.warehouse.schema import BOOL, COLUMNS, JSON, MFA, STR, TIME

_DUCK_TYPE = {STR: "VARCHAR", BOOL: "BOOLEAN", MFA: "VARCHAR", TIME: "VARCHAR", JSON: "JSON"}


def _struct(node: dict[str, Any]) -> str:
    parts = []
    for name, sub in node.items():
        typ = _struct(sub) if isinstance(sub, dict) else _DUCK_TYPE[sub.kind]
        parts.append(f'"{name}" {typ}')
    return f"STRUCT({', '.join(parts)})"


def records_type() -> str:
    """The explicit DuckDB type of `Records`: every field trailhouse has a column for, blobs as JSON."""
    return _struct(records.TREE) + "[]"


def _select_list() -> str:
    cols = []
    for col in COLUMNS:
        if col.path is None:
            continue
        ref = "r." + ".".join(f'"{p}"' for p in col.path)
        if col.kind == TIME:
            ref = f"try_strptime({ref}, '%Y-%m-%dT%H:%M:%SZ')"
        elif col.kind == MFA:
            ref = f"({ref} = 'true')"
        elif col.kind == JSON:
            ref = f"CAST({ref} AS VARCHAR)"
        cols.append(f"{ref} AS {col.name}")
    cols.append("r.recipientAccountId AS account_id")
    cols.append("CAST(try_strptime(r.eventTime, '%Y-%m-%dT%H:%M:%SZ') AS DATE) AS event_date")
    return ",\n       ".join(cols)


def duckdb_sql(files: list[str], out_dir: str) -> str:
    file_list = "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"
    columns = "{'Records': '" + records_type().replace("'", "''") + "'}"
    return f"""
COPY (
  SELECT {_select_list()}
  FROM (SELECT unnest(Records) AS r FROM read_json({file_list}, columns = {columns}, format = 'auto'))
) TO '{out_dir}' (FORMAT parquet, PARTITION_BY (event_date), COMPRESSION zstd, OVERWRITE_OR_IGNORE true)
"""


def duckdb_copy(files: list[str], out_dir: str, threads: int) -> dict[str, Any]:
    """Runs in its own process: json.gz files to hive-partitioned Parquet with DuckDB."""
    import duckdb

    shutil.rmtree(out_dir, ignore_errors=True)
    con = duckdb.connect()
    con.execute(f"SET threads = {threads}")
    con.execute("SET enable_progress_bar = false")
    con.execute("SET preserve_insertion_order = false")
    sql = duckdb_sql(files, out_dir)
    t0, c0 = time.perf_counter(), cpu_seconds()
    rows = con.execute(sql).fetchone()[0]
    seconds, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    con.close()
    out_bytes = sum(p.stat().st_size for p in Path(out_dir).rglob("*.parquet"))
    return {"rows": int(rows), "seconds": seconds, "cpu_s": cpu, "parquet_bytes": out_bytes, "version": duckdb.__version__}


def floors(files: list[str]) -> dict[str, Any]:
    """Runs in its own process, one core: gunzip (ISA-L, zlib) and JSON parsing (msgspec, orjson) of every file."""
    import msgspec
    from isal import igzip

    blobs = [Path(f).read_bytes() for f in files]
    out: dict[str, Any] = {"files": len(blobs), "compressed_bytes": sum(map(len, blobs))}

    cpu = time.process_time  # one thread here, so process CPU time is this loop's CPU time
    t0, c0 = time.perf_counter(), cpu()
    total = 0
    for b in blobs:
        total += len(igzip.decompress(b))
    out["isal_s"], out["isal_cpu_s"] = time.perf_counter() - t0, cpu() - c0
    out["uncompressed_bytes"] = total

    t0, c0 = time.perf_counter(), cpu()
    for b in blobs:
        zlib.decompress(b, 47)
    out["zlib_s"], out["zlib_cpu_s"] = time.perf_counter() - t0, cpu() - c0

    decode = msgspec.json.decode
    parse_s = parse_cpu = 0.0
    records = 0
    for b in blobs:
        text = igzip.decompress(b)
        t, c = time.perf_counter(), cpu()
        doc = decode(text)
        parse_s += time.perf_counter() - t
        parse_cpu += cpu() - c
        records += len(doc["Records"])
        del doc
    out["msgspec_s"], out["msgspec_cpu_s"] = parse_s, parse_cpu
    out["records"] = records

    try:
        import orjson
    except ImportError:
        out["orjson_s"] = None
    else:
        parse_s = 0.0
        for b in blobs:
            text = igzip.decompress(b)
            t = time.perf_counter()
            orjson.loads(text)
            parse_s += time.perf_counter() - t
        out["orjson_s"] = parse_s
    return out


def run(files: list[Path], work: Path, events: int, sheet: Sheet, skip: set[str]) -> dict[str, Any]:
    res: dict[str, Any] = {}
    names = [str(f) for f in files]
    if "duckdb" not in skip:
        d, rss = isolated(duckdb_copy, names, str(work / "duckdb-out"), 2)
        d["peak_rss"] = rss
        res["duckdb"] = d
        s = "baseline"
        sheet.add(s, "duckdb read_json -> Parquet events/s", d["rows"] / d["seconds"], "events/s",
                  note=f"DuckDB {d['version']}, 2 threads, explicit schema, blobs JSON, hive by event_date")
        sheet.add(s, "duckdb wall time", d["seconds"], "s", note=f"{d['rows']:,} rows")
        sheet.add(s, "duckdb events per CPU-second", d["rows"] / d["cpu_s"], "events/CPU-s", note=f"{d['cpu_s']:.0f} CPU-s")
        sheet.add(s, "duckdb peak RSS", rss / MIB, "MiB", note="whole process (VmHWM)")
        shutil.rmtree(work / "duckdb-out", ignore_errors=True)
    if "floor" not in skip:
        f, rss = isolated(floors, names)
        res["floor"] = f
        s = "floor"
        unc = f["uncompressed_bytes"] / MB
        sheet.add(s, "gunzip ISA-L, 1 core", unc / f["isal_s"], "MB/s",
                  note=f"{f['isal_s']:.2f} s = {events / f['isal_s']:,.0f} events/s")
        sheet.add(s, "gunzip zlib, 1 core", unc / f["zlib_s"], "MB/s",
                  ratio=f"{f['isal_s'] / f['zlib_s']:.2f}x ISA-L speed", note=f"{f['zlib_s']:.2f} s")
        sheet.add(s, "JSON parse msgspec.json.decode, 1 core", unc / f["msgspec_s"], "MB/s",
                  note=f"{f['msgspec_s']:.2f} s to Python objects")
        if f.get("orjson_s"):
            sheet.add(s, "JSON parse orjson.loads, 1 core", unc / f["orjson_s"], "MB/s")
        else:
            sheet.add(s, "JSON parse orjson.loads, 1 core", None, "", note="orjson not installed")
        floor_s = f["isal_s"] + f["msgspec_s"]
        sheet.add(s, "gunzip + parse floor, 1 core", f["records"] / floor_s, "events/s",
                  note=f"{unc / floor_s:.0f} MB/s; x2 for 2 cores = {2 * f['records'] / floor_s:,.0f} events/s")
        floor_cpu = f["isal_cpu_s"] + f["msgspec_cpu_s"]
        sheet.add(s, "gunzip + parse floor, events per CPU-second", f["records"] / floor_cpu, "events/CPU-s",
                  note=f"{floor_cpu:.1f} CPU-s")
    return res
