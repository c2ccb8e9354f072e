"""The warehouse table: keyed on event_id, atomic idempotent commits, readers in DuckDB and Polars."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from trailhouse.ingest import records, transform
from trailhouse.warehouse.schema import ARROW_SCHEMA
from trailhouse.warehouse.table import PartitionedWriter, Warehouse


def events(ids: list[str], day: str = "2026-11-20", key: str = "k", fields: str = "") -> pa.Table:
    """Minimal records with these ids on `day`, as rows in the table's schema."""
    raws = [f'{{"eventID": "{i}", "eventTime": "{day}T10:00:00Z"{fields}}}'.encode() for i in ids]
    rows = records.parse_file(b'{"Records": [' + b",".join(raws) + b"]}")
    frame = transform.rows_to_frame(rows, [None] * len(rows), [date(2026, 11, 20)] * len(rows), [key] * len(rows),
                                    mav="t", ingested_at=datetime.now(UTC))
    return frame.to_arrow().cast(ARROW_SCHEMA)


def stage(tmp_path: Path, name: str, ids: list[str], day: str = "2026-11-20") -> str:
    """One Parquet file outside the table (the commit rewrites such files into it)."""
    path = tmp_path / f"{name}.parquet"
    pq.write_table(events(ids, day, fields=', "recipientAccountId": "012345678901"'), path)
    return str(path)


def test_commit_merges_on_event_id_and_is_idempotent(tmp_path: Path) -> None:
    wh = Warehouse(str(tmp_path / "wh"))
    a = stage(tmp_path, "a", ["e1", "e2", "e2"])  # CloudTrail sometimes delivers an event twice
    b = stage(tmp_path, "b", ["e2", "e3"], day="2026-11-21")
    first = wh.commit([a, b])
    assert (first.inserted, first.duplicates) == (3, 2)
    assert first.partitions == ["2026-11-20", "2026-11-21"]
    again = wh.commit([a, b])  # a retried commit task
    assert (again.inserted, again.duplicates) == (0, 5)
    con = wh.duckdb()
    assert con.execute("SELECT count(*), count(DISTINCT event_id) FROM cloudtrail_events").fetchone() == (3, 3)
    # Account ids stay strings: a leading zero is part of the id.
    assert con.execute("SELECT DISTINCT account_id FROM cloudtrail_events").fetchall() == [("012345678901",)]
    lazy = wh.scan().filter(pl.col("event_date") == date(2026, 11, 21)).select("event_id").collect()
    assert lazy.to_series().to_list() == ["e3"]
    assert wh.stats()["partitions"] == 2


def test_empty_warehouse_answers_queries(tmp_path: Path) -> None:
    wh = Warehouse(str(tmp_path / "none"))
    assert wh.duckdb().execute("SELECT count(*) FROM cloudtrail_events").fetchone() == (0,)
    assert wh.scan().collect().height == 0
    assert wh.commit([]).inserted == 0


def staged_in_table(wh: Warehouse, ids: list[str], day: str = "2026-11-20", key: str = "k") -> list[str]:
    """Files as transform_batch writes them in production: in the table's folder and layout."""
    writer = PartitionedWriter(wh.table_uri)
    writer.write(events(ids, day, key))
    return writer.close()


def table_files(wh: Warehouse) -> set[str]:
    return {u.removeprefix("file://") for u in wh._table().file_uris()}


def test_files_in_the_table_layout_are_added_without_rewriting(tmp_path: Path) -> None:
    wh = Warehouse(str(tmp_path / "wh"))
    staged = staged_in_table(wh, ["e1", "e2"]) + staged_in_table(wh, ["e3"], day="2026-11-21")
    assert len(staged) == 2
    before = {f: Path(f).stat().st_mtime_ns for f in staged}
    # written but not committed: no reader sees them
    wh.ensure_table()
    assert wh.duckdb().execute("SELECT count(*) FROM cloudtrail_events").fetchone() == (0,)
    result = wh.commit(staged)
    assert (result.inserted, result.duplicates) == (3, 0)
    assert table_files(wh) == set(staged)  # the very files, not copies
    assert {f: Path(f).stat().st_mtime_ns for f in staged} == before
    assert wh._table().count() == 3
    assert sorted(wh.scan().select("event_id").collect().to_series().to_list()) == ["e1", "e2", "e3"]
    version = result.version
    again = wh.commit(staged)  # the commit task retried after it had committed
    assert (again.inserted, again.duplicates, again.version) == (0, 3, version)


def test_only_files_holding_duplicates_are_rewritten(tmp_path: Path) -> None:
    wh = Warehouse(str(tmp_path / "wh"))
    wh.commit(staged_in_table(wh, ["e1", "e2"]))
    clean = staged_in_table(wh, ["e5", "e6"], key="a")
    overlapping = staged_in_table(wh, ["e2", "e3", "e4"], key="b")  # e2 is in the table already
    twice = staged_in_table(wh, ["e4", "e7"], key="c")  # e4 delivered twice within the run
    result = wh.commit(clean + overlapping + twice)
    assert (result.inserted, result.duplicates) == (5, 2)
    files = table_files(wh)
    assert set(clean) <= files
    assert not set(overlapping + twice) & files  # rewritten without the dropped rows
    con = wh.duckdb()
    assert con.execute("SELECT count(*), count(DISTINCT event_id) FROM cloudtrail_events").fetchone() == (7, 7)
    # the first copy (by source_key) of an id delivered twice is the one kept
    assert con.execute("SELECT source_key FROM cloudtrail_events WHERE event_id = 'e4'").fetchall() == [("b",)]


def test_uncommitted_files_are_removed_by_a_full_vacuum(tmp_path: Path) -> None:
    wh = Warehouse(str(tmp_path / "wh"))
    kept = staged_in_table(wh, ["e1"])
    wh.commit(kept)
    orphan = staged_in_table(wh, ["e9"])  # a transform whose run never committed
    assert wh.vacuum(retention_hours=0) == 1
    assert not Path(orphan[0]).exists() and Path(kept[0]).exists()
