"""The warehouse table: merge on event_id, atomic idempotent commits, readers in DuckDB and Polars."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from trailhouse import records, transform
from trailhouse.schema import ARROW_SCHEMA
from trailhouse.warehouse import Warehouse


def stage(tmp_path: Path, name: str, ids: list[str], day: str = "2026-11-20") -> str:
    raws = [f'{{"eventID": "{i}", "eventTime": "{day}T10:00:00Z", "recipientAccountId": "012345678901"}}'.encode()
            for i in ids]
    rows = records.parse_file(b'{"Records": [' + b",".join(raws) + b"]}")
    frame = transform.rows_to_frame(rows, [None] * len(rows), [date(2026, 11, 20)] * len(rows), ["k"] * len(rows),
                                    mav="t", ingested_at=datetime.now(UTC))
    path = tmp_path / f"{name}.parquet"
    pq.write_table(frame.to_arrow().cast(ARROW_SCHEMA), path)
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
