"""The one module that writes the warehouse's events table (Delta Lake) and opens it for SQL."""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from trailhouse import storage
from trailhouse.common import sql_literal
from trailhouse.warehouse.schema import ARROW_SCHEMA, COLUMNS, JSON, PARTITION_BY

TABLE = "cloudtrail_events"
TARGET_FILE_SIZE = 32 * 1024 * 1024
# The columns stored in a data file: Delta keeps the partition value in the log and the path.
FILE_SCHEMA = pa.schema([f for f in ARROW_SCHEMA if f.name not in PARTITION_BY])
COMPRESSION = "zstd"
# Row-group min/max statistics let DuckDB and Polars skip row groups; the JSON text columns
# (and extra_fields) cannot be pruned on, and their statistics cost ~10% of the write.
STATISTICS = [c.name for c in COLUMNS if c.kind != JSON and c.name not in PARTITION_BY and c.name != "extra_fields"]
NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"
_LAYOUT = re.compile(r"(?:^|/)event_date=([^/]+)/[^/]+\.parquet$")


def _partition_day(path: str) -> str | None:
    """The event_date partition value of a file in the table's layout (None: the null partition).

    KeyError if the path is not in the layout."""
    found = _LAYOUT.search(path)
    if found is None:
        raise KeyError(path)
    return None if found.group(1) == NULL_PARTITION else found.group(1)


def _by_day(table: pa.Table) -> list[tuple[date | None, pa.Table]]:
    """The rows of each event date, without copying them: rows arrive file by file and a
    delivery file nearly always holds one day, so each day is a few runs of adjacent rows,
    joined as zero-copy slices."""
    days = table.column("event_date").combine_chunks()
    if len(days) == 0:
        return []
    changed = pc.fill_null(pc.not_equal(days.slice(1), days.slice(0, len(days) - 1)), True)
    starts = [0, *(i + 1 for i in pc.indices_nonzero(changed).to_pylist()), len(days)]
    runs: dict[date | None, list[pa.Table]] = {}
    for start, end in zip(starts, starts[1:], strict=False):
        runs.setdefault(days[start].as_py(), []).append(table.slice(start, end - start))
    return [(day, pa.concat_tables(parts)) for day, parts in runs.items()]


class PartitionedWriter:
    """Parquet files in the table's layout: <root>/event_date=<day>/part-<uuid>.zstd.parquet.

    Written into the table's folder they are invisible to every reader (readers see the
    files of the Delta log only) until Warehouse.commit adds them.
    """

    def __init__(self, root: str, *, row_group_rows: int = 64 * 1024) -> None:
        self.root = root.rstrip("/")
        self.rows: dict[str, int] = {}  # file URI -> rows
        self._writers: dict[str | None, tuple[str, Any]] = {}
        self._row_group_rows = row_group_rows

    def write(self, table: pa.Table) -> None:
        """Rows in ARROW_SCHEMA (any event dates)."""
        for day, part in _by_day(table):
            uri, writer = self._writer(None if day is None else day.isoformat())
            writer.write_table(part.drop_columns(list(PARTITION_BY)).cast(FILE_SCHEMA), row_group_size=self._row_group_rows)
            self.rows[uri] += part.num_rows

    def _writer(self, day: str | None) -> tuple[str, Any]:
        if day not in self._writers:
            folder = f"{self.root}/event_date={day or NULL_PARTITION}"
            storage.makedirs(folder)
            uri = f"{folder}/part-{uuid.uuid4().hex}.{COMPRESSION}.parquet"
            fs, path = storage.resolve(uri)
            self._writers[day] = (uri, pq.ParquetWriter(path, FILE_SCHEMA, compression=COMPRESSION, filesystem=fs,
                                                        write_statistics=STATISTICS))
            self.rows[uri] = 0
        return self._writers[day]

    def close(self) -> list[str]:
        """Close the files; the URIs of the ones that hold rows."""
        for _uri, writer in self._writers.values():
            writer.close()
        self._writers.clear()
        return [uri for uri, n in self.rows.items() if n]

    def abort(self) -> None:
        """Close and delete every file written (a failed batch leaves nothing behind)."""
        for uri, writer in self._writers.values():
            try:
                writer.close()
            finally:
                storage.remove_file(uri)
        self._writers.clear()
        for uri in self.rows:
            storage.remove_file(uri)
        self.rows.clear()


class WarehouseFullError(OSError):
    """The warehouse's disk has no space left for a commit (nothing of the run was committed)."""


@dataclass
class CommitResult:
    inserted: int = 0
    duplicates: int = 0
    partitions: list[str] = field(default_factory=list)
    version: int | None = None


class Warehouse:
    """The events table (Delta Lake) at `<uri>/cloudtrail_events`: the only writer of it, and its readers.

    Commits are atomic and idempotent (see commit); readers see the current Delta version only.
    """

    def __init__(self, uri: str, storage_options: dict[str, str] | None = None) -> None:
        self.uri = uri.rstrip("/")
        self.storage_options = storage_options
        self.table_uri = f"{self.uri}/{TABLE}"

    @property
    def is_remote(self) -> bool:
        """Whether the table lives in an object store (s3://...) rather than on a local disk."""
        return storage.is_remote(self.table_uri)

    def _table(self) -> Any:
        from deltalake import DeltaTable

        return DeltaTable(self.table_uri, storage_options=self.storage_options)

    def exists(self) -> bool:
        """Whether the table has been created (it has a Delta log)."""
        from deltalake import DeltaTable

        return DeltaTable.is_deltatable(self.table_uri, storage_options=self.storage_options)

    def ensure_table(self) -> None:
        """Create the empty table unless it exists; safe when another writer creates it concurrently."""
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

        Under the table's writer lock, DuckDB reads only the event_id of the staged files and
        of the table's files in the touched partitions, and finds the rows to drop: ids the
        table holds already, and every copy but the first of an id delivered twice. Staged
        files in the table's own layout (transform writes them there) that drop nothing are
        added to the Delta log as they are, without reading or rewriting their rows; the rows
        of any other file are rewritten without the dropped ones. All of it is one Delta
        version, so a reader sees all of a run or none of it; a retried commit (or a re-run
        of a whole interval) adds nothing.
        """
        result = CommitResult()
        if not staged:
            return result
        try:
            self._commit(staged, run_id, lock, result)
        except Exception as exc:
            self._raise_if_disk_full(exc)
            raise
        return result

    def _commit(self, staged: list[str], run_id: str, lock: Any, result: CommitResult) -> None:
        from deltalake import CommitProperties

        with lock if lock is not None else self._local_lock():
            # Inside the lock: two first commits racing to create the table would otherwise
            # both succeed and leave a second CREATE as version 1.
            self.ensure_table()
            table = self._table()
            in_table = set(pa.table(table.get_add_actions(flatten=True)).column("path").to_pylist())
            con = self._commit_connection(staged)
            try:
                per_file = dict(con.execute("SELECT filename, count(*) FROM staged GROUP BY 1").fetchall())
                total = sum(per_file.values())
                dates = [d for (d,) in con.execute("SELECT DISTINCT event_date FROM staged ORDER BY 1").fetchall()]
                result.partitions = [str(d) for d in dates]
                dropped = self._find_dropped(con, self._known_ids(table, result.partitions))
                adds, result.inserted = self._additions(con, staged, per_file, dropped, in_table)
                if adds:
                    table.create_write_transaction(
                        adds, mode="append", schema=table.schema(), partition_by=list(PARTITION_BY),
                        commit_properties=CommitProperties(custom_metadata={"trailhouse.run_id": run_id}),
                    )
                result.version = self._table().version()
            finally:
                con.close()
        result.duplicates = total - result.inserted

    def _raise_if_disk_full(self, exc: Exception) -> None:
        """A failed write to a local warehouse whose disk is full says so (Delta's own error is
        "Generic LocalFileSystem error"), and that nothing of the run was committed."""
        import errno
        import shutil

        if "://" in self.uri:
            return
        full = isinstance(exc, OSError) and exc.errno == errno.ENOSPC
        try:
            free = shutil.disk_usage(self.uri).free
        except OSError:
            return
        if full or free < 1024 * 1024:
            raise WarehouseFullError(
                f"the warehouse's disk is full ({self.uri}: {free:,} bytes free): the commit could not be "
                "written and nothing of this run was committed; free space (or move TRAILHOUSE_WAREHOUSE to a "
                "larger disk), then run again: the same files load exactly once") from exc

    @staticmethod
    def _known_ids(table: Any, partitions: list[str]) -> str:
        """A DuckDB query of the event_id in the table's files of `partitions` (the staged rows' dates)."""
        existing = table.file_uris(partition_filters=[("event_date", "in", partitions)])
        existing = [u.removeprefix("file://") for u in existing]
        return (f"SELECT event_id FROM read_parquet([{', '.join(sql_literal(f) for f in existing)}])"
                if existing else "SELECT NULL::VARCHAR AS event_id WHERE FALSE")

    @staticmethod
    def _find_dropped(con: Any, known: str) -> dict[str, int]:
        """Create the temp table `dropped` (the staged rows not to add); {staged file: rows dropped}."""
        # Rows to drop: ids already in the table, and the later copies of an id
        # delivered twice within the run (the first by source_key is kept).
        con.execute("CREATE TEMP TABLE twice AS SELECT event_id FROM staged GROUP BY event_id "
                    "HAVING count(*) > 1")
        con.execute(
            f"CREATE TEMP TABLE dropped AS SELECT filename, file_row_number FROM staged "
            f"WHERE event_id IN ({known}) "
            f"UNION ALL SELECT filename, file_row_number FROM staged WHERE event_id NOT IN ({known}) "
            "AND event_id IN (SELECT event_id FROM twice) QUALIFY row_number() OVER "
            "(PARTITION BY event_id ORDER BY source_key, ingested_at, filename, file_row_number) > 1"
        )
        return dict(con.execute("SELECT filename, count(*) FROM dropped GROUP BY 1").fetchall())

    def _additions(self, con: Any, staged: list[str], per_file: dict[str, int], dropped: dict[str, int],
                   in_table: set[str]) -> tuple[list[Any], int]:
        """Add actions for the staged files' new rows (files kept as they are, or rewritten); and their rows."""
        adds, rewrite, inserted = [], [], 0
        for uri in staged:
            rows, drop = per_file.get(uri, 0), dropped.get(uri, 0)
            rel = self._relative(uri)
            if rows == drop or (rel is not None and rel in in_table):
                continue  # nothing new, or added already by an earlier try of this commit
            if drop == 0 and rel is not None:
                adds.append(self._add_action(uri, rel, rows))
                inserted += rows
            else:
                rewrite.append(uri)
        if rewrite:
            for uri, rows in self._rewrite(con, rewrite).items():
                adds.append(self._add_action(uri, self._relative(uri), rows))
                inserted += rows
        return adds, inserted

    def _relative(self, uri: str) -> str | None:
        """The path of a file relative to the table, if it is in the table's layout."""
        prefix = self.table_uri + "/"
        if not uri.startswith(prefix):
            return None
        rel = uri[len(prefix):]
        return rel if _LAYOUT.match(rel) else None

    def _add_action(self, uri: str, rel: str | None, rows: int) -> Any:
        from deltalake.transaction import AddAction

        assert rel is not None, uri
        fs, path = storage.resolve(uri)
        return AddAction(
            path=rel,
            size=fs.get_file_info(path).size,
            partition_values={"event_date": _partition_day(rel)},
            modification_time=int(time.time() * 1000),
            data_change=True,
            stats=json.dumps({"numRecords": rows}),
        )

    def _rewrite(self, con: Any, files: list[str]) -> dict[str, int]:
        """The kept rows of `files`, written into the table's layout; {file URI: rows}."""
        columns = ", ".join(COLUMN_NAMES)
        reader = con.sql(
            f"SELECT {columns} FROM staged s WHERE filename IN ({', '.join(sql_literal(f) for f in files)}) "
            "AND NOT EXISTS (SELECT 1 FROM dropped d WHERE d.filename = s.filename "
            "AND d.file_row_number = s.file_row_number)"
        ).to_arrow_reader(16 * 1024)
        writer = PartitionedWriter(self.table_uri)
        try:
            for batch in reader:
                writer.write(pa.Table.from_batches([batch]).cast(ARROW_SCHEMA))
            written = writer.close()
        except BaseException:
            writer.abort()
            raise
        return {uri: writer.rows[uri] for uri in written}

    def _commit_connection(self, staged: list[str]) -> Any:
        import tempfile

        import duckdb

        con = duckdb.connect(config={"threads": 2, "memory_limit": "512MB", "preserve_insertion_order": False,
                                     "temp_directory": tempfile.gettempdir() + "/trailhouse-duckdb"})
        con.execute("SET TimeZone = 'UTC'")
        for uri in {self.table_uri, *staged}:
            if storage.is_remote(uri):
                con.register_filesystem(storage.fsspec_for(uri))
                break
        files = ", ".join(sql_literal(p) for p in staged)
        # Files in the table's layout carry event_date in their path, not as a column.
        hive = ("hive_partitioning = true, hive_types = {'event_date': DATE}"
                if any(self._relative(p) for p in staged) else "hive_partitioning = false")
        con.execute(
            f"CREATE VIEW staged AS SELECT * FROM read_parquet([{files}], filename = true, file_row_number = true, "
            f"{hive}, union_by_name = true)"
        )
        return con

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
                f"[{', '.join(sql_literal(f) for f in files)}], hive_partitioning = true, "
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
        """{event_date: data files} of the current version ("None" for the null partition)."""
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
        metrics = self._table().delete(f"mav = {sql_literal(mav)} AND event_date < '{cutoff.isoformat()}'")
        return int(metrics.get("num_deleted_rows", 0))

    def vacuum(self, retention_hours: int = 168) -> int:
        """Remove files no table version younger than `retention_hours` needs (readers keep a week).

        Full: also the files of transforms whose run never committed (they are written into
        the table's folder and only the commit adds them), once older than the retention.
        """
        if not self.exists():
            return 0
        removed = self._table().vacuum(retention_hours=retention_hours, dry_run=False,
                                       enforce_retention_duration=False, full=True)
        return len(removed)

    def stats(self) -> dict[str, Any]:
        """Files, partitions and version of the current version (0, 0 and None before the table exists)."""
        if not self.exists():
            return {"files": 0, "partitions": 0, "version": None}
        table = self._table()
        files = table.file_uris()
        partitions = {tuple(p.items()) for p in (table.partitions() or [])}
        return {"files": len(files), "partitions": len(partitions), "version": table.version()}


def read_files(files: list[str]) -> pa.Table:
    """Files in the table's layout (PartitionedWriter), in ARROW_SCHEMA: event_date from each path."""
    parts = []
    for uri in files:
        day = _partition_day(uri)
        fs, path = storage.resolve(uri)
        table = pq.read_table(path, filesystem=fs)
        value = None if day is None else date.fromisoformat(day)
        parts.append(table.append_column("event_date", pa.array([value] * table.num_rows, pa.date32())))
    return pa.concat_tables(parts).select(ARROW_SCHEMA.names).cast(ARROW_SCHEMA) if parts else ARROW_SCHEMA.empty_table()


COLUMN_NAMES = [c.name for c in COLUMNS]
