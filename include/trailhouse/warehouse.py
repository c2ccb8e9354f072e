"""The one module that writes the warehouse's events table (Delta Lake) and opens it for SQL."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from trailhouse.schema import ARROW_SCHEMA, COLUMNS, PARTITION_BY

TABLE = "cloudtrail_events"
TARGET_FILE_SIZE = 32 * 1024 * 1024


@dataclass
class CommitResult:
    inserted: int = 0
    duplicates: int = 0
    partitions: list[str] = field(default_factory=list)
    version: int | None = None


class _Counted:
    """A RecordBatchReader in the table's schema that counts the rows passed on."""

    def __init__(self, reader: pa.RecordBatchReader) -> None:
        self.rows = 0
        self._reader = reader

    def __arrow_c_stream__(self, requested_schema: Any = None) -> Any:
        def batches() -> Any:
            for batch in self._reader:
                self.rows += batch.num_rows
                yield batch.cast(ARROW_SCHEMA)

        return pa.RecordBatchReader.from_batches(ARROW_SCHEMA, batches()).__arrow_c_stream__(requested_schema)


class Warehouse:
    def __init__(self, uri: str, storage_options: dict[str, str] | None = None) -> None:
        self.uri = uri.rstrip("/")
        self.storage_options = storage_options
        self.table_uri = f"{self.uri}/{TABLE}"

    def _table(self) -> Any:
        from deltalake import DeltaTable

        return DeltaTable(self.table_uri, storage_options=self.storage_options)

    def exists(self) -> bool:
        from deltalake import DeltaTable

        return DeltaTable.is_deltatable(self.table_uri, storage_options=self.storage_options)

    def ensure_table(self) -> None:
        from deltalake import DeltaTable

        if self.exists():
            return
        if not self.table_uri.startswith(("s3://", "gs://", "az://", "abfss://")):
            Path(self.table_uri).mkdir(parents=True, exist_ok=True)
        try:
            DeltaTable.create(
                self.table_uri,
                schema=ARROW_SCHEMA,
                partition_by=list(PARTITION_BY),
                name=TABLE,
                description="CloudTrail events loaded by trailhouse; see docs/schema.md",
                storage_options=self.storage_options,
            )
        except Exception:
            if not self.exists():  # lost a creation race to another writer: fine
                raise

    def commit(self, staged: list[str], *, run_id: str = "", lock: Any = None) -> CommitResult:
        """Add the staged rows whose event_id the table does not hold yet; one atomic commit.

        Under the table's writer lock: DuckDB streams the staged files, keeps one row per
        event_id, drops the ids already in the touched partitions (reading only their
        event_id column), and the rest is appended to the Delta table as one version. A
        retried commit, or a re-run of a whole interval, inserts nothing. Memory stays
        bounded (DuckDB spills), unlike a MERGE, which rewrote and held far more.
        """
        result = CommitResult()
        if not staged:
            return result
        with lock if lock is not None else self._local_lock():
            # Inside the lock: two first commits racing to create the table would otherwise
            # both succeed and leave a second CREATE as version 1.
            self.ensure_table()
            con = self._commit_connection(staged)
            try:
                total = con.execute("SELECT count(*) FROM staged").fetchone()[0]
                dates = [d for (d,) in con.execute("SELECT DISTINCT event_date FROM staged ORDER BY 1").fetchall()]
                result.partitions = [str(d) for d in dates]
                existing = self._table().file_uris(partition_filters=[("event_date", "in", result.partitions)])
                existing = [u.removeprefix("file://") for u in existing]
                known = (f"SELECT event_id FROM read_parquet([{', '.join(_sql_str(f) for f in existing)}])"
                         if existing else "SELECT NULL::VARCHAR AS event_id WHERE FALSE")
                columns = ", ".join(COLUMN_NAMES)
                # Ids delivered twice within the run are rare: only those go through the
                # window that keeps the first copy; every other row streams straight through.
                con.execute("CREATE TEMP TABLE twice AS SELECT event_id FROM staged GROUP BY event_id "
                            "HAVING count(*) > 1")
                reader = con.sql(
                    f"SELECT {columns} FROM staged WHERE event_id NOT IN ({known}) "
                    "AND event_id NOT IN (SELECT event_id FROM twice) "
                    f"UNION ALL SELECT {columns} FROM staged WHERE event_id NOT IN ({known}) "
                    "AND event_id IN (SELECT event_id FROM twice) "
                    "QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY source_key, ingested_at) = 1"
                ).to_arrow_reader(16 * 1024)
                counted = _Counted(reader)
                self._append(counted, run_id)
                result.version = self._table().version()
            finally:
                con.close()
        result.inserted = counted.rows
        result.duplicates = total - counted.rows
        return result

    def _commit_connection(self, staged: list[str]) -> Any:
        import tempfile

        import duckdb

        from trailhouse import storage

        con = duckdb.connect(config={"threads": 2, "memory_limit": "512MB", "preserve_insertion_order": False,
                                     "temp_directory": tempfile.gettempdir() + "/trailhouse-duckdb"})
        con.execute("SET TimeZone = 'UTC'")
        for uri in {self.table_uri, *staged}:
            if storage.is_remote(uri):
                con.register_filesystem(storage.fsspec_for(uri))
                break
        files = ", ".join(_sql_str(p) for p in staged)
        con.execute(f"CREATE VIEW staged AS SELECT * FROM read_parquet([{files}])")
        return con

    def _append(self, batches: Any, run_id: str) -> None:
        from deltalake import CommitProperties, write_deltalake

        write_deltalake(
            self.table_uri,
            batches,
            mode="append",
            partition_by=list(PARTITION_BY),
            storage_options=self.storage_options,
            target_file_size=TARGET_FILE_SIZE,
            commit_properties=CommitProperties(custom_metadata={"trailhouse.run_id": run_id}),
        )

    def _local_lock(self) -> Any:
        """One writer at a time for a local table (a file lock); remote tables pass theirs."""
        from trailhouse import storage

        if storage.is_remote(self.table_uri):
            raise ValueError("commits to a remote table need the deployment's writer lock (appdb.writer_lock)")
        return storage.file_lock(Path(self.uri) / f".{TABLE}.lock")

    def dataset(self) -> Any:
        """A pyarrow dataset over the table's current version (empty table if none yet)."""
        import pyarrow.dataset as ds

        if not self.exists():
            return ds.dataset(ARROW_SCHEMA.empty_table())
        return self._table().to_pyarrow_dataset()

    def scan(self) -> pl.LazyFrame:
        """The events table as a Polars LazyFrame."""
        if not self.exists():
            return pl.LazyFrame(schema=pl.Schema(ARROW_SCHEMA))
        return pl.scan_delta(self.table_uri, storage_options=self.storage_options)

    def duckdb(self, connection: Any = None) -> Any:
        """A DuckDB connection where `cloudtrail_events` is the events table (its current version)."""
        import duckdb

        from trailhouse import storage

        con = connection or duckdb.connect()
        files = [u.removeprefix("file://") for u in self._table().file_uris()] if self.exists() else []
        if not files:
            con.register("_empty_events", ARROW_SCHEMA.empty_table())
            con.execute(f"CREATE OR REPLACE VIEW {TABLE} AS SELECT * FROM _empty_events")
        else:
            # DuckDB's own Parquet reader over the files of the current Delta version: filter
            # and projection pushdown, partition pruning on event_date, and none of the Arrow
            # dataset interop gaps (an IN list over strings failed there). Partition values
            # live in the paths, typed explicitly so no id-like value is read as a number.
            if storage.is_remote(self.table_uri):
                # No DuckDB extension for S3 can be fetched offline: DuckDB reads the object
                # store through the same pyarrow filesystem the writers use.
                con.register_filesystem(storage.fsspec_for(self.table_uri))
            columns = ", ".join(COLUMN_NAMES)
            con.execute(
                f"CREATE OR REPLACE VIEW {TABLE} AS SELECT {columns} FROM read_parquet("
                f"[{', '.join(_sql_str(f) for f in files)}], hive_partitioning = true, "
                "hive_types = {'event_date': DATE}, union_by_name = true)"
            )
        return con

    def select(self, where: str, params: dict[str, Any] | None = None) -> pa.Table:
        """Rows matching a DuckDB WHERE clause, as an Arrow table in the table's schema."""
        con = self.duckdb()
        try:
            table = con.sql(f"SELECT * FROM {TABLE} WHERE {where}", params=params or {}).to_arrow_table()
        finally:
            con.close()
        return table.cast(ARROW_SCHEMA)

    def files_per_partition(self) -> dict[str, int]:
        if not self.exists():
            return {}
        counts: dict[str, int] = {}
        for action in pa.table(self._table().get_add_actions(flatten=True)).to_pylist():
            day = str(action.get("partition.event_date"))
            counts[day] = counts.get(day, 0) + 1
        return counts

    def compact(self, partitions: list[str] | None = None, *, min_files: int = 2,
                target_size: int = 256 * 1024 * 1024) -> dict[str, Any]:
        """Rewrite the small files of each partition (hourly loads make many) into few large ones."""
        before = self.files_per_partition()
        todo = [p for p in (partitions or list(before)) if before.get(p, 0) >= min_files]
        for day in todo:
            # One partition per commit: bounded memory, and concurrent loads of other days
            # never conflict with it.
            self._table().optimize.compact(partition_filters=[("event_date", "=", day)], target_size=target_size)
        after = self.files_per_partition()
        return {"partitions": len(todo), "files_before": sum(before.get(p, 0) for p in todo),
                "files_after": sum(after.get(p, 0) for p in todo),
                "max_files_per_partition": max(after.values(), default=0)}

    def delete_before(self, mav: str, cutoff: date) -> int:
        """Delete a MAV's events older than `cutoff` (retention); files go at the next vacuum."""
        if not self.exists():
            return 0
        metrics = self._table().delete(f"mav = {_sql_str(mav)} AND event_date < '{cutoff.isoformat()}'")
        return int(metrics.get("num_deleted_rows", 0))

    def vacuum(self, retention_hours: int = 168) -> int:
        """Remove files no table version younger than `retention_hours` needs (readers keep a week)."""
        if not self.exists():
            return 0
        removed = self._table().vacuum(retention_hours=retention_hours, dry_run=False,
                                       enforce_retention_duration=False)
        return len(removed)

    def stats(self) -> dict[str, Any]:
        if not self.exists():
            return {"files": 0, "partitions": 0, "version": None}
        table = self._table()
        files = table.file_uris()
        partitions = {tuple(p.items()) for p in (table.partitions() or [])}
        return {"files": len(files), "partitions": len(partitions), "version": table.version()}


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"



def remove_staging(path: str) -> None:
    from trailhouse import storage

    if path:
        storage.remove_tree(path)


COLUMN_NAMES = [c.name for c in COLUMNS]
