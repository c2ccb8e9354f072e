"""A batch of delivery files to one staged Parquet file of typed rows, with Polars."""

from __future__ import annotations

import hashlib
import itertools
import traceback
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from trailhouse import faults
from trailhouse.ingest import records
from trailhouse.ingest.layout import parse_key
from trailhouse.ingest.source import ObjectInfo, Source
from trailhouse.warehouse.schema import ARROW_SCHEMA, COLUMNS, UTC_TS
from trailhouse.warehouse.table import PartitionedWriter

LOADED, QUARANTINED = "loaded", "quarantined"
# In the ledger: listed by a run whose transform of it failed; the next run takes it again.
PENDING = "pending"
# Rows held before they are written out as a Parquet row group: bounds a worker's memory
# whatever the batch size.
FLUSH_ROWS = 50_000
# ... or bytes held by the C builder (records with large blobs: 50,000 of them could be GBs).
FLUSH_BYTES = 128 * 1024 * 1024
_TIME_FORMATS = ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S%.fZ", "%Y-%m-%dT%H:%M:%S%z")


@dataclass(frozen=True)
class Outcome:
    key: str
    etag: str
    size: int
    status: str
    events: int = 0
    reason: str = ""
    # hex SHA-256 of the uncompressed content: what a CloudTrail digest's hashValue holds
    sha256: str = ""


@dataclass
class BatchResult:
    # The Parquet files written, one per event date, in the table's layout (see
    # warehouse.PartitionedWriter); Warehouse.commit adds them.
    staged: list[str] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    rows: int = 0
    bytes: int = 0
    get_calls: int = 0
    # The event dates (partitions) of each loaded key: the ledger keeps them so that rule
    # evaluation finds a run's events again after any crash or retry.
    dates: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form (the task's XCom); from_dict reads it back."""
        return {
            "staged": self.staged,
            "rows": self.rows,
            "bytes": self.bytes,
            "get_calls": self.get_calls,
            "dates": self.dates,
            "outcomes": [[o.key, o.etag, o.size, o.status, o.events, o.reason, o.sha256] for o in self.outcomes],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BatchResult:
        """The result to_dict gave, also from the XCom of a run started by an older version."""
        staged = d["staged"]
        return cls(
            # one file path or None in XComs of runs started by an older version
            staged=[staged] if isinstance(staged, str) else list(staged or []),
            rows=d["rows"],
            bytes=d["bytes"],
            get_calls=d.get("get_calls", 0),
            dates=d.get("dates", {}),
            # 6 fields before the sha256 was added (XCom of a run started by an older version)
            outcomes=[Outcome(*o) for o in d["outcomes"]],
        )

    @classmethod
    def merge(cls, parts: Sequence[BatchResult]) -> BatchResult:
        """One batch's result from the results of its parts (split_objects), in their order."""
        merged = cls()
        for part in parts:
            merged.staged.extend(part.staged)
            merged.outcomes.extend(part.outcomes)
            merged.rows += part.rows
            merged.bytes += part.bytes
            merged.get_calls += part.get_calls
            for key, days in part.dates.items():
                merged.dates[key] = sorted({*merged.dates.get(key, []), *days})
        return merged


def split_objects(objects: Sequence[ObjectInfo], parts: int) -> list[list[ObjectInfo]]:
    """`objects` in at most `parts` non-empty groups of about equal bytes (largest first, each to the lightest group)."""
    groups: list[list[ObjectInfo]] = [[] for _ in range(max(1, min(parts, len(objects))))]
    sizes = [0] * len(groups)
    for obj in sorted(objects, key=lambda o: o.size, reverse=True):
        lightest = sizes.index(min(sizes))
        groups[lightest].append(obj)
        sizes[lightest] += obj.size
    return [g for g in groups if g]


_ROW_SCHEMA = {
    **{c.name: pl.String for c in COLUMNS if c.path is not None and c.kind in ("str", "json", "time")},
    **{c.name: pl.Boolean for c in COLUMNS if c.kind in ("bool", "mfa")},
    "extra_fields": pl.String,
}


def _parse_time(name: str) -> pl.Expr:
    text = pl.col(name)
    parsed = pl.coalesce(
        [text.str.to_datetime(fmt, strict=False, time_zone="UTC", time_unit="us") for fmt in _TIME_FORMATS]
    )
    # Year 0, or 0001-01-01T00:00:00+01:00: Polars parses them, but no date of Python (nor of
    # the readers of the table) holds them. The column stays null and the text is kept in
    # extra_fields (record_to_row keeps every non-canonical time there), like any unparseable time.
    return pl.when(parsed.dt.year().is_between(1, 9999)).then(parsed).otherwise(None).alias(name)


def rows_to_frame(
    rows: list[dict[str, Any]],
    folder_accounts: list[str | None],
    folder_days: list[date | None],
    source_keys: list[str],
    *,
    mav: str,
    ingested_at: datetime,
) -> pl.DataFrame:
    """Rows from records.record_to_row to a frame in the warehouse's schema."""
    # Polars reads the row dicts itself (in Rust): measured 5x faster than pulling one
    # Python list per column out of them first.
    frame = pl.from_dicts(rows, schema=_ROW_SCHEMA).with_columns(
        pl.Series("source_key", source_keys, dtype=pl.String),
        pl.Series("_folder_account", folder_accounts, dtype=pl.String),
        pl.Series("_folder_day", folder_days, dtype=pl.Date),
    )
    return frame.with_columns(
        _parse_time("event_time"),
        _parse_time("session_creation_date"),
        pl.coalesce("recipient_account_id", "_folder_account").alias("account_id"),
        pl.lit(mav).alias("mav"),
        pl.lit(ingested_at).cast(pl.Datetime("us", "UTC")).alias("ingested_at"),
    ).with_columns(
        pl.coalesce(pl.col("event_time").dt.date(), "_folder_day").alias("event_date"),
    ).select([c.name for c in COLUMNS])


def builder_arrow(
    builder: Any,
    files: list[tuple[str, str | None, date | None, int]],
    *,
    mav: str,
    ingested_at: datetime,
) -> pa.Table:
    """The rows of a records.column_builder() (emptied), in the warehouse's schema (ARROW_SCHEMA).

    files: (source key, folder account, folder day, rows added) in the order they were added.
    Arrow compute only: the builder's buffers are not copied into another engine and back.
    """
    return _builder_rows_arrow(records.builder_table(builder), files, mav=mav, ingested_at=ingested_at)


def _builder_rows_arrow(table: pa.Table, files: list[tuple[str, str | None, date | None, int]], *, mav: str,
                        ingested_at: datetime) -> pa.Table:
    """builder_arrow of rows taken out of the builder already (records.builder_table)."""
    rows = table.num_rows
    # each row's file: its lineage columns are the file's values, taken by index
    index = pa.array(itertools.chain.from_iterable(itertools.repeat(i, n) for i, (*_, n) in enumerate(files)),
                     pa.int32(), size=rows)
    source_key = pa.array([f[0] for f in files], pa.string()).take(index)
    folder_account = pa.array([f[1] for f in files], pa.string()).take(index)
    folder_day = pa.array([f[2] for f in files], pa.date32()).take(index)
    event_time = table.column("event_time")
    derived = {
        "event_date": pc.coalesce(pc.cast(event_time, pa.date32()), folder_day),
        "account_id": pc.coalesce(table.column("recipient_account_id").cast(pa.string()), folder_account),
        "mav": pa.repeat(pa.scalar(mav, pa.string()), rows),
        "source_key": source_key,
        "ingested_at": pa.repeat(pa.scalar(ingested_at, UTC_TS), rows),
    }
    columns = [derived[c.name] if c.name in derived else table.column(c.name) for c in COLUMNS]
    return pa.table(columns, names=[c.name for c in COLUMNS]).cast(ARROW_SCHEMA)


def _download(source: Source, objects: Sequence[ObjectInfo], threads: int) -> Iterable[tuple[ObjectInfo, bytes | Exception]]:
    def fetch(obj: ObjectInfo) -> tuple[ObjectInfo, bytes | Exception]:
        try:
            return obj, source.get(obj.key)
        except Exception as exc:  # a failed GET is reported per object, not for the batch
            return obj, exc

    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(objects)))) as pool:
        yield from pool.map(fetch, objects)


class DownloadError(RuntimeError):
    """GETs failed (after the client's retries); the batch is retried, nothing is ledgered."""


@dataclass(frozen=True)
class Limits:
    """What one object may inflate to (records.inflate_cap); settings.py reads them from the environment."""
    max_inflated_bytes: int = records.MAX_INFLATED_BYTES
    max_inflate_ratio: int = records.MAX_INFLATE_RATIO


DEFAULT_LIMITS = Limits()


def _parse_file(builder: Any, data: bytes, key: str, limits: Limits = DEFAULT_LIMITS) -> tuple[str, int, list[dict[str, Any]]]:
    """One file's (sha256, rows the builder took, rows through Python); BadObject if it is broken."""
    # records.parse_file, with the uncompressed bytes kept to hash them
    text = records.decompress(data, key, max_bytes=limits.max_inflated_bytes, max_ratio=limits.max_inflate_ratio)
    sha256 = hashlib.sha256(text).hexdigest()
    fast = builder.add(text) if builder is not None else None
    if fast is None:  # the whole file through Python (which also names what is broken)
        return sha256, 0, [records.record_to_row(r) for r in records.decode_envelope(text)]
    added, left_out = fast
    if not left_out:
        return sha256, added, []
    try:
        raw = records.decode_envelope(text, checked=True)
        return sha256, added, [records.record_to_row(raw[i]) for i in left_out]
    except BaseException:
        builder.undo()  # the file is not loaded: none of its rows either
        raise


def unexpected(exc: BaseException, stage: str) -> str:
    """The quarantine reason for an error nobody foresaw: its type and where it was raised, never
    its message (which could quote the object's content)."""
    frame = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" at {Path(frame[0].filename).name}:{frame[0].lineno}" if frame else ""
    return (f"could not be read: {type(exc).__name__} while {stage}{where}; nothing of the file is loaded. "
            "This is a bug of trailhouse: report it with the object's key")


class _Buffer:
    """A batch's rows not staged yet, flushed as row groups so a worker's memory stays bounded."""

    def __init__(self, out: PartitionedWriter, dates: dict[str, list[str]], *, mav: str, ingested_at: datetime,
                 limits: Limits = DEFAULT_LIMITS) -> None:
        self.out, self.dates, self.mav, self.ingested_at, self.limits = out, dates, mav, ingested_at, limits
        self.builder = records.column_builder()
        self.built: list[tuple[str, str | None, date | None, int]] = []  # the files (parts) in the builder
        self.pending: list[dict[str, Any]] = []  # rows from records.record_to_row
        self.accounts: list[str | None] = []
        self.days: list[date | None] = []
        self.keys: list[str] = []

    def load(self, obj: ObjectInfo, data: bytes) -> Outcome:
        """Parse one downloaded file into the buffer; a broken one is quarantined, not fatal."""
        parsed = parse_key(obj.key)
        account, day = (parsed.account, parsed.day) if parsed else (None, None)
        try:
            sha256, added, rows = _parse_file(self.builder, data, obj.key, self.limits)
        except records.BadObject as exc:
            return Outcome(obj.key, obj.etag, obj.size, QUARANTINED, 0, str(exc))
        except Exception as exc:  # any other failure is the object's too: the rest of the batch loads
            return Outcome(obj.key, obj.etag, obj.size, QUARANTINED, 0, unexpected(exc, "reading it"))
        if added:
            self.built.append((obj.key, account, day, added))
        self.pending.extend(rows)
        self.accounts.extend([account] * len(rows))
        self.days.extend([day] * len(rows))
        self.keys.extend([obj.key] * len(rows))
        return Outcome(obj.key, obj.etag, obj.size, LOADED, added + len(rows), "", sha256)

    def full(self) -> bool:
        """Whether the rows or bytes held reached FLUSH_ROWS or FLUSH_BYTES."""
        held = (self.builder.rows, self.builder.nbytes) if self.builder is not None else (0, 0)
        return held[0] + len(self.pending) >= FLUSH_ROWS or held[1] >= FLUSH_BYTES

    def flush(self) -> dict[str, str]:
        """Stage every row held (the builder's, then the Python path's) and empty the buffer.

        Returns {key: reason} of the files whose rows could not be converted: those are left
        out (and quarantined by the caller), the others staged.
        """
        failed: dict[str, str] = {}
        tables: list[pa.Table] = []
        if self.built:
            table = records.builder_table(self.builder)
            tables += self._convert(failed, self.built, lambda files, offset, rows: _builder_rows_arrow(
                table.slice(offset, rows), files, mav=self.mav, ingested_at=self.ingested_at))
            self.built.clear()
        if self.pending:
            files = _runs(self.keys)
            tables += self._convert(failed, files, lambda _files, offset, rows: rows_to_frame(
                self.pending[offset:offset + rows], self.accounts[offset:offset + rows],
                self.days[offset:offset + rows], self.keys[offset:offset + rows], mav=self.mav,
                ingested_at=self.ingested_at).to_arrow().cast(ARROW_SCHEMA))
            for column in (self.pending, self.accounts, self.days, self.keys):
                column.clear()
        for table, pairs in tables:
            self._write(table, pairs, failed)
        return failed

    def _convert(self, failed: dict[str, str], files: list[tuple[str, str | None, date | None, int]],
                 convert: Any) -> list[tuple[pa.Table, list[tuple[str, str]]]]:
        """convert(files, first row, rows) of all the files at once; if that fails, file by file,
        noting in `failed` the files that fail alone. With each table its (key, event date) pairs."""
        try:
            table = convert(files, 0, sum(f[3] for f in files))
            return [(table, _key_dates(table))]
        except Exception:
            pass
        out, offset = [], 0
        for f in files:
            try:
                table = convert([f], offset, f[3])
                out.append((table, _key_dates(table)))
            except Exception as exc:
                failed[f[0]] = unexpected(exc, "converting its records to the table's columns")
            offset += f[3]
        return out

    def _write(self, table: pa.Table, pairs: list[tuple[str, str]], failed: dict[str, str]) -> None:
        """Note each source key's event dates (for the ledger), then stage the rows."""
        if failed:  # a file that failed in another part of the flush (the builder's or Python's)
            keep = pc.invert(pc.is_in(table.column("source_key"), pa.array(list(failed), pa.string())))
            table = table.filter(keep)
            pairs = [p for p in pairs if p[0] not in failed]
        for key, day in pairs:
            self.dates[key] = sorted({*self.dates.get(key, []), day})
        faults.point("transform.before_stage")
        self.out.write(table)


def _key_dates(table: pa.Table) -> list[tuple[str, str]]:
    """The (source key, event date) pairs of a staged table (an event date Python cannot hold fails here)."""
    pairs = table.select(["source_key", "event_date"]).group_by(["source_key", "event_date"]).aggregate([])
    return [(key, str(day)) for key, day in zip(*(pairs.column(i).to_pylist() for i in (0, 1)), strict=True)]


def _runs(keys: list[str]) -> list[tuple[str, str | None, date | None, int]]:
    """The rows of the Python path as (key, -, -, rows) per file, in order (a file's rows are contiguous)."""
    return [(key, None, None, sum(1 for _ in group)) for key, group in itertools.groupby(keys)]


def _quarantine(result: BatchResult, failed: dict[str, str]) -> None:
    """Mark the loaded files that failed at conversion (flush) quarantined, with their reason."""
    if failed:
        result.outcomes[:] = [replace(o, status=QUARANTINED, events=0, reason=failed[o.key], sha256="")
                              if o.key in failed else o for o in result.outcomes]


def _check_downloads(failures: list[str], objects: int) -> None:
    """DownloadError if any GET failed: nothing of the batch is loaded, its keys stay pending."""
    if failures:
        raise DownloadError(
            f"{len(failures)} of {objects} objects could not be downloaded: nothing of this batch was loaded "
            f"and its files stay pending for the task's next try or the next run. First: {failures[0]}"
        )


def transform_batch(
    source: Source,
    objects: Sequence[ObjectInfo],
    *,
    mav: str,
    staging_dir: str,
    threads: int = 16,
    ingested_at: datetime | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> BatchResult:
    """Download, parse and stage one batch; broken files are quarantined, not fatal.

    The rows go to Parquet files under `staging_dir` in the table's layout, one per event
    date: in production `staging_dir` is the warehouse table's own folder, so that the
    commit adds the files without rewriting them.
    """
    ingested_at = ingested_at or datetime.now(UTC)
    result = BatchResult()
    out = PartitionedWriter(staging_dir)
    buffer = _Buffer(out, result.dates, mav=mav, ingested_at=ingested_at, limits=limits)
    get_calls_before = source.get_calls
    failures: list[str] = []
    try:
        for obj, data in _download(source, objects, threads):
            if isinstance(data, Exception):
                failures.append(f"{obj.key}: {type(data).__name__}: {data}")
                continue
            faults.point("transform.after_download")
            result.bytes += len(data)
            outcome = buffer.load(obj, data)
            result.outcomes.append(outcome)
            if outcome.status == LOADED and buffer.full():
                _quarantine(result, buffer.flush())
        _check_downloads(failures, len(objects))
        _quarantine(result, buffer.flush())
        result.rows = sum(o.events for o in result.outcomes)  # 0 for a quarantined file
        result.staged = out.close()
    except BaseException:
        out.abort()  # a failed batch leaves no file behind; its retry writes new ones
        raise
    result.get_calls = source.get_calls - get_calls_before
    return result
