"""transform_batch on a local bucket: good files are staged, broken ones quarantined with a reason."""

from __future__ import annotations

import gzip
import json
import random
import re
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from trailhouse.dev.hostile import bomb, hostile_files, record
from trailhouse.ingest import records, transform
from trailhouse.ingest.source import LocalSource, ObjectInfo
from trailhouse.warehouse.table import FILE_SCHEMA, read_files

CORPORA = Path(__file__).resolve().parents[2] / "fixtures" / "corpora"
INVICTUS = CORPORA / "invictus_aws_dataset" / "CloudTrail"
LIBRARY = CORPORA / "aws_cloudtrail_processing_library" / "test-resources"
DOCS = CORPORA / "awsdocs_cloudtrail_user_guide" / "examples.jsonl"

ACCOUNT = "111122223333"
DAY = "2026/11/27"


def log_key(name: str, account: str = ACCOUNT, day: str = DAY, region: str = "us-east-1") -> str:
    y, m, d = day.split("/")
    return (
        f"AWSLogs/{account}/CloudTrail/{region}/{day}/"
        f"{account}_CloudTrail_{region}_{y}{m}{d}T1005Z_{name}.json.gz"
    )


def digest_key() -> str:
    return (
        f"AWSLogs/{ACCOUNT}/CloudTrail-Digest/us-east-1/{DAY}/"
        f"{ACCOUNT}_CloudTrail-Digest_us-east-1_trail_us-east-1_20261127T100500Z.json.gz"
    )


class Bucket:
    """A LocalSource folder plus the ObjectInfo of everything put into it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.objects: list[ObjectInfo] = []

    def put(self, key: str, data: bytes) -> str:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.objects.append(ObjectInfo(key, f"etag-{len(self.objects)}", len(data)))
        return key

    def source(self) -> LocalSource:
        return LocalSource(self.root)


def envelope(*recs: dict[str, Any]) -> bytes:
    return json.dumps({"Records": list(recs)}).encode()


def event(event_id: str, event_time: str | None, **fields: Any) -> dict[str, Any]:
    """An IAM user's GetObject in ACCOUNT (the hostile-file suite's record)."""
    return record(event_id, event_time, **fields)


def digest_file() -> bytes:
    """A real digest file (from the CloudTrail user guide): no event inside."""
    for line in DOCS.read_text().splitlines():
        entry = json.loads(line)
        if entry["kind"] == "digest" and entry["event"].get("logFiles") == []:
            return json.dumps(entry["event"]).encode()
    raise AssertionError("no digest with an empty logFiles in the user guide examples")


def read_staged(result: transform.BatchResult) -> list[dict[str, Any]]:
    assert result.staged
    for uri in result.staged:  # the table's layout: one file per event date, no partition column
        assert re.search(r"/event_date=[0-9-]+/part-[0-9a-f]{32}\.zstd\.parquet$", uri), uri
        assert pq.read_schema(uri).equals(FILE_SCHEMA)
    return read_files(result.staged).to_pylist()


@pytest.fixture
def bucket(tmp_path: Path) -> Bucket:
    return Bucket(tmp_path / "bucket")


def test_broken_files_are_quarantined_and_good_ones_staged(bucket: Bucket, tmp_path: Path) -> None:
    expected: dict[str, dict[str, Any]] = {}  # eventID -> original record of every good file
    good: dict[str, int] = {}  # key -> records

    # Good: two real delivery files (gzipped, as CloudTrail delivers them) ...
    for path in sorted(INVICTUS.glob("*.json"))[:2]:
        data = path.read_bytes()
        key = bucket.put(log_key(path.stem.rsplit("_", 1)[1], account="218007301253", day="2023/07/10"), gzip.compress(data))
        recs = json.loads(data)["Records"]
        good[key] = len(recs)
        expected.update({r["eventID"]: r for r in recs})
    # ... a real file left plain (a hand-copied sample) ...
    plain = LIBRARY / "SerializerTestFileNewFieldsInRoot.json"
    key = bucket.put(log_key("plainlibraryfile"), plain.read_bytes())
    lib_recs = json.loads(plain.read_bytes())["Records"]
    good[key] = len(lib_recs)
    # ... and one of ours: an event of the previous day delivered into today's folder, and
    # one without eventTime.
    late = event("late-1", "2026-11-26T23:59:58Z", recipientAccountId="444455556666")
    timeless = event("no-time-1", None)
    ontime = event("on-time-1", "2026-11-27T10:01:00Z")
    key = bucket.put(log_key("ourfile00000001"), gzip.compress(envelope(late, timeless, ontime)))
    good[key] = 3
    expected.update({r["eventID"]: r for r in (late, timeless, ontime)})

    # Broken, each for its own reason.
    whole = gzip.compress(envelope(*(event(f"t{i}", "2026-11-27T10:00:00Z") for i in range(200))))
    broken = {
        bucket.put(log_key("truncatedgzip01"), whole[: len(whole) // 2]): "gzip",
        bucket.put(log_key("invalidjson0001"), gzip.compress((LIBRARY / "SerializerTestFileBadJsonFormat.json").read_bytes())): "invalid JSON",
        bucket.put(log_key("concatenated001"), gzip.compress(envelope(event("c1", None)) + envelope(event("c2", None)))): "invalid JSON",
        bucket.put(log_key("zerobytes000001"), b""): "empty",
        bucket.put(digest_key(), gzip.compress(digest_file())): "not a CloudTrail",
        bucket.put(log_key("snsnotification"), gzip.compress((LIBRARY / "SQSMessageBody").read_bytes())): "not a CloudTrail",
        bucket.put(log_key("randombytes0001"), b"\x00" + random.Random(7).randbytes(511)): "not gzip",
        bucket.put(log_key("gzipofempty0001"), gzip.compress(b"")): "empty",
        bucket.put(log_key("gzipofspaces001"), gzip.compress(b" \n ")): "empty",
        bucket.put(log_key("recordsnotalist"), gzip.compress(b'{"Records": {"eventID": "x"}}')): "not a CloudTrail",
        bucket.put(log_key("arrayofevents01"), gzip.compress(json.dumps([event("a1", None)]).encode())): "not a CloudTrail",
        bucket.put(log_key("notutf8text0001"), gzip.compress(envelope(event("u1", None)).replace(b'"u1"', b'"u\xff"'))): "not UTF-8",
    }

    source = bucket.source()
    result = transform.transform_batch(source, bucket.objects, mav="t", staging_dir=str(tmp_path / "stage"))

    outcomes = {o.key: o for o in result.outcomes}
    assert len(result.outcomes) == len(bucket.objects) == len(outcomes)
    for key, needle in broken.items():
        o = outcomes[key]
        assert o.status == transform.QUARANTINED, key
        assert o.events == 0
        assert needle.lower() in o.reason.lower(), f"{key}: {o.reason!r} does not name {needle!r}"
    for key, n in good.items():
        assert outcomes[key].status == transform.LOADED, outcomes[key]
        assert outcomes[key].events == n
        assert outcomes[key].reason == ""
    for o in result.outcomes:  # etag and size are passed through to the ledger
        info = next(i for i in bucket.objects if i.key == o.key)
        assert (o.etag, o.size) == (info.etag, info.size)
    assert result.rows == sum(good.values())
    assert result.get_calls == len(bucket.objects)
    assert result.bytes == sum(i.size for i in bucket.objects)

    rows = read_staged(result)
    assert len(rows) == result.rows
    ids = [r["event_id"] for r in rows]
    assert len(set(ids)) == len(ids)
    lib_ids = {i for i in ids if i.startswith("sha256:")}  # the library's records carry no eventID
    assert len(lib_ids) == len(lib_recs)
    assert set(ids) - lib_ids == set(expected)
    assert all(r["mav"] == "t" for r in rows)
    assert all(r["source_key"] in good for r in rows)

    by_id = {r["event_id"]: r for r in rows}
    # event_date is the date of eventTime, not the folder's.
    assert by_id["late-1"]["event_date"] == date(2026, 11, 26)
    assert by_id["late-1"]["event_time"] == datetime(2026, 11, 26, 23, 59, 58, tzinfo=UTC)
    assert by_id["late-1"]["account_id"] == "444455556666"  # recipientAccountId wins over the folder
    assert by_id["on-time-1"]["event_date"] == date(2026, 11, 27)
    # No eventTime: the folder's date, a null event_time, and the folder's account.
    assert by_id["no-time-1"]["event_time"] is None
    assert by_id["no-time-1"]["event_date"] == date(2026, 11, 27)
    assert by_id["no-time-1"]["account_id"] == ACCOUNT
    for r in rows:
        if r["event_id"] in expected:
            if r["event_id"].count("-") == 4:  # the invictus records
                assert r["event_date"] == date(2023, 7, 10)
            assert records.rebuild(r) == expected[r["event_id"]]
    rebuilt_lib = sorted(json.dumps(records.rebuild(r), sort_keys=True) for r in rows if r["event_id"] in lib_ids)
    assert rebuilt_lib == sorted(json.dumps(r, sort_keys=True) for r in lib_recs)


def test_record_without_event_time_takes_the_folder_date(bucket: Bucket, tmp_path: Path) -> None:
    rec = event("e-1", None)
    del rec["eventID"]
    key = bucket.put(log_key("notime000000001", day="2026/02/28"), gzip.compress(envelope(rec)))
    result = transform.transform_batch(bucket.source(), bucket.objects, mav="t", staging_dir=str(tmp_path / "s"))
    (row,) = read_staged(result)
    assert row["event_time"] is None
    assert row["event_date"] == date(2026, 2, 28)
    assert row["event_id"].startswith("sha256:")
    assert row["source_key"] == key
    assert records.rebuild(row) == rec


def test_unparseable_event_time_takes_the_folder_date_and_is_kept(bucket: Bucket, tmp_path: Path) -> None:
    rec = event("e-1", "ThisIsAWrongEventTime")
    bucket.put(log_key("badtime00000001", day="2026/03/01"), gzip.compress(envelope(rec)))
    result = transform.transform_batch(bucket.source(), bucket.objects, mav="t", staging_dir=str(tmp_path / "s"))
    (row,) = read_staged(result)
    assert row["event_time"] is None
    assert row["event_date"] == date(2026, 3, 1)
    assert records.rebuild(row) == rec


def test_a_batch_of_only_broken_files_stages_nothing(bucket: Bucket, tmp_path: Path) -> None:
    bucket.put(log_key("zerobytes000001"), b"")
    bucket.put(digest_key(), gzip.compress(digest_file()))
    bucket.put(log_key("emptyrecords001"), gzip.compress(b'{"Records": []}'))
    stage = tmp_path / "stage"
    result = transform.transform_batch(bucket.source(), bucket.objects, mav="t", staging_dir=str(stage))
    assert result.staged == []
    assert result.rows == 0
    assert not stage.exists() or not any(stage.rglob("*.parquet"))  # no file written
    statuses = {o.key: o.status for o in result.outcomes}
    # A file with no records is a valid (if rare) delivery file, loaded with 0 events.
    assert statuses[log_key("emptyrecords001")] == transform.LOADED
    assert statuses[log_key("zerobytes000001")] == transform.QUARANTINED
    assert statuses[digest_key()] == transform.QUARANTINED


def test_rows_flushed_in_several_row_groups_are_all_staged(
    bucket: Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transform, "FLUSH_ROWS", 60)
    expected = {}
    for path in sorted(INVICTUS.glob("*.json"))[:6]:
        data = path.read_bytes()
        bucket.put(log_key(path.stem.rsplit("_", 1)[1], account="218007301253", day="2023/07/10"), gzip.compress(data))
        expected.update({r["eventID"]: r for r in json.loads(data)["Records"]})
    result = transform.transform_batch(bucket.source(), bucket.objects, mav="t", staging_dir=str(tmp_path / "s"), threads=3)
    assert len(result.staged) == 1
    assert pq.ParquetFile(result.staged[0]).num_row_groups > 1
    rows = read_staged(result)
    assert result.rows == len(rows) == len(expected)
    assert {r["event_id"]: records.rebuild(r) for r in rows} == expected


def test_records_with_large_blobs_are_flushed_by_size(bucket: Bucket, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker's memory is bounded by bytes too: few records with big blobs still flush."""
    monkeypatch.setattr(transform, "FLUSH_BYTES", 1_000_000)
    big = "x" * 200_000  # CloudTrail truncates nothing below 256 KB per event
    for f in range(3):
        recs = [event(f"big-{f}-{i}", "2026-11-27T10:00:00Z", responseElements={"blob": big}) for i in range(4)]
        bucket.put(log_key(f"bigblobs{f:07d}"), gzip.compress(envelope(*recs)))
    result = transform.transform_batch(bucket.source(), bucket.objects, mav="t", staging_dir=str(tmp_path / "s"))
    assert result.rows == 12 and len(result.staged) == 1
    # one row group per flush: 800 KB per file, so a flush once the second file crossed
    # 1 MB and one at the end (FLUSH_ROWS alone would have made a single one)
    assert pq.ParquetFile(result.staged[0]).num_row_groups == 2
    rows = read_staged(result)
    assert sorted(r["event_id"] for r in rows) == sorted(f"big-{f}-{i}" for f in range(3) for i in range(4))
    assert all(json.loads(r["response_elements"]) == {"blob": big} for r in rows)


def test_a_failed_download_fails_the_batch(bucket: Bucket, tmp_path: Path) -> None:
    bucket.put(log_key("goodfile0000001"), gzip.compress(envelope(event("e-1", "2026-11-27T10:00:00Z"))))
    missing = ObjectInfo(log_key("gonefrombucket1"), "etag", 10)
    with pytest.raises(transform.DownloadError, match="gonefrombucket1"):
        transform.transform_batch(bucket.source(), [*bucket.objects, missing], mav="t", staging_dir=str(tmp_path / "s"))


def test_the_c_builder_and_the_python_path_stage_the_same_rows(bucket: Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """transform_batch with records.column_builder() and without it (no compiler): same table."""
    if records.column_builder() is None:
        pytest.skip("the C extension is not built")
    for path in sorted(INVICTUS.glob("*.json"))[:3]:
        bucket.put(log_key(path.stem.rsplit("_", 1)[1], account="218007301253", day="2023/07/10"),
                   gzip.compress(path.read_bytes()))
    odd = [event("odd-1", "2026-11-27T10:00:00.5Z"), event("odd-2", None, readOnly="true"), event("ok-1", "2026-11-27T10:00:00Z")]
    # times the builder converts itself (to microseconds), at the edges of the calendar
    odd += [event(f"t-{t}", t) for t in ("0001-01-01T00:00:00Z", "1969-12-31T23:59:59Z", "1970-01-01T00:00:00Z",
                                          "2000-02-29T12:00:00Z", "2100-03-01T00:00:01Z", "9999-12-31T23:59:59Z")]
    bucket.put(log_key("mixedrecords001"), gzip.compress(envelope(*odd)))
    bucket.put(log_key("plainlibraryfile"), (LIBRARY / "SerializerTestFileNewFieldsInRoot.json").read_bytes())
    when = datetime(2026, 11, 27, 12, tzinfo=UTC)

    def staged(folder: str) -> list[dict[str, Any]]:
        result = transform.transform_batch(bucket.source(), bucket.objects, mav="t", staging_dir=str(tmp_path / folder),
                                           ingested_at=when)
        return sorted(read_staged(result), key=lambda r: r["event_id"])

    fast = staged("fast")
    monkeypatch.setattr(records, "column_builder", lambda: None)
    slow = staged("slow")
    assert len(fast) == len(slow) > 80
    for a, b in zip(fast, slow, strict=True):
        extras_a, extras_b = a.pop("extra_fields"), b.pop("extra_fields")
        assert a == b
        assert (json.loads(extras_a) if extras_a else None) == (json.loads(extras_b) if extras_b else None)


@pytest.mark.parametrize("path", ["builder", "python"])
def test_hostile_files_are_quarantined_by_name_and_the_rest_of_the_batch_loads(
        bucket: Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    if path == "python":
        monkeypatch.setattr(records, "column_builder", lambda: None)
    good = {bucket.put(log_key(f"goodfile{i:07d}"), gzip.compress(envelope(event(f"g-{i}", "2026-11-27T10:00:00Z"))))
            for i in range(3)}
    hostile = {bucket.put(log_key(name), h.body): h.reason for name, h in hostile_files().items()}
    # Odd but loadable: a number beyond int64 in a string column, times no timestamp holds.
    odd = [event("big-1", "2026-11-27T10:00:00Z", eventName=10**30),
           *(event(f"y-{i}", t) for i, t in enumerate(
               ["0000-01-01T00:00:00Z", "0000-06-01T00:00:00.5Z", "0001-01-01T00:00:00+01:00", "-0001-01-01T00:00:00Z"])),
           event("s-1", "2026-11-27T10:00:00Z", userIdentity={"sessionContext": {"attributes": {
               "creationDate": "0000-01-01T00:00:00Z"}}})]
    odd_key = bucket.put(log_key("oddbutloadable1"), gzip.compress(envelope(*odd)))

    result = transform.transform_batch(bucket.source(), bucket.objects, mav="t", staging_dir=str(tmp_path / "s"))

    outcomes = {o.key: o for o in result.outcomes}
    for key, needle in hostile.items():
        assert outcomes[key].status == transform.QUARANTINED, key
        assert needle in outcomes[key].reason, (key, outcomes[key].reason)
    assert {k: outcomes[k].status for k in [*good, odd_key]} == dict.fromkeys([*good, odd_key], transform.LOADED)
    rows = {r["event_id"]: r for r in read_staged(result)}
    assert sorted(rows) == sorted(["g-0", "g-1", "g-2", *(r["eventID"] for r in odd)])
    assert rows["big-1"]["event_name"] == str(10**30)
    for i in range(4):  # no timestamp: null, the folder's date, and the text kept
        assert rows[f"y-{i}"]["event_time"] is None and rows[f"y-{i}"]["event_date"] == date(2026, 11, 27)
    assert rows["s-1"]["session_creation_date"] is None
    for rec in odd:
        assert records.rebuild(rows[rec["eventID"]]) == rec


def test_the_inflate_cap_follows_the_ratio_the_floor_and_the_absolute_size() -> None:
    assert records.inflate_cap(1_000) == records.RATIO_FLOOR_BYTES  # a small file may always reach 16 MiB
    assert records.inflate_cap(1_000_000) == 100_000_000  # 100x
    assert records.inflate_cap(10_000_000) == records.MAX_INFLATED_BYTES  # never past 256 MiB
    assert records.inflate_cap(1_000_000, max_bytes=50_000_000, max_ratio=10) == 16 * 1024 * 1024
    data = bomb(20)
    with pytest.raises(records.BadObject, match="inflates past 16,777,216 bytes"):
        records.decompress(data)
    assert records.decompress(data, max_ratio=20_000) == bytes(20 << 20)  # a higher ratio lets it through
    with pytest.raises(records.BadObject, match="TRAILHOUSE_MAX_INFLATED_BYTES"):
        records.decompress(data, max_bytes=1 << 20, max_ratio=20_000)
    # gzip members one after another, and NUL padding after the last one, as gzip readers take them
    text = envelope(event("e-1", "2026-11-27T10:00:00Z"))
    assert records.decompress(gzip.compress(text[:10]) + gzip.compress(text[10:]) + b"\0" * 8) == text
    with pytest.raises(records.BadObject, match="truncated or corrupt gzip"):
        records.decompress(gzip.compress(text) + b"garbage")


def test_the_limits_reach_the_transform(bucket: Bucket, tmp_path: Path) -> None:
    key = bucket.put(log_key("fourmibofzeros1"), bomb(4))
    result = transform.transform_batch(bucket.source(), bucket.objects, mav="t", staging_dir=str(tmp_path / "s"),
                                       limits=transform.Limits(max_inflated_bytes=1 << 20))
    (o,) = result.outcomes
    assert (o.key, o.status) == (key, transform.QUARANTINED) and "inflates past 1,048,576 bytes" in o.reason


def test_an_unforeseen_error_in_one_file_quarantines_that_file_only(
        bucket: Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever goes wrong while reading one object is that object's problem, not the batch's."""
    real = records.record_to_row

    def record_to_row(record: dict[str, Any]) -> dict[str, Any]:
        if b"poison-value" in bytes(record.get("eventName", b"")):
            raise ZeroDivisionError("poison-value")  # a message that quotes the file's content
        return real(record)

    monkeypatch.setattr(records, "record_to_row", record_to_row)
    bucket.put(log_key("goodfile0000001"), gzip.compress(envelope(event("g-1", "2026-11-27T10:00:00Z"))))
    # The builder takes the first record, leaves the second (a number in a string column) to
    # Python, which fails: the first one's row must go too.
    bad = bucket.put(log_key("poisonedfile001"), gzip.compress(envelope(
        event("p-1", "2026-11-27T10:00:00Z"), event("p-2", "2026-11-27T10:00:00Z", eventName="poison-value",
                                                     readOnly="true"))))
    result = transform.transform_batch(bucket.source(), bucket.objects, mav="t", staging_dir=str(tmp_path / "s"))
    outcomes = {o.key: o for o in result.outcomes}
    assert outcomes[bad].status == transform.QUARANTINED
    assert outcomes[bad].reason.startswith("could not be read: ZeroDivisionError while reading it at test_transform.py:")
    assert "poison-value" not in outcomes[bad].reason
    assert [r["event_id"] for r in read_staged(result)] == ["g-1"]
    assert result.rows == 1


def test_a_file_whose_rows_cannot_be_converted_is_quarantined_and_the_others_staged(
        bucket: Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = transform._builder_rows_arrow

    def convert(table: Any, files: list[tuple[Any, ...]], **kw: Any) -> Any:
        if any("unconvertible" in f[0] for f in files):
            raise OverflowError("date value out of range")
        return real(table, files, **kw)

    monkeypatch.setattr(transform, "_builder_rows_arrow", convert)
    for i in range(3):
        bucket.put(log_key(f"goodfile{i:07d}"), gzip.compress(envelope(event(f"g-{i}", "2026-11-27T10:00:00Z"))))
    bad = bucket.put(log_key("unconvertible01"), gzip.compress(envelope(
        event("u-1", "2026-11-27T10:00:00Z"), event("u-2", "2026-11-27T10:00:00.5Z"))))  # builder + Python rows
    result = transform.transform_batch(bucket.source(), bucket.objects, mav="t", staging_dir=str(tmp_path / "s"))
    outcomes = {o.key: o for o in result.outcomes}
    assert outcomes[bad].status == transform.QUARANTINED and outcomes[bad].events == 0
    assert "OverflowError while converting its records" in outcomes[bad].reason
    assert sorted(r["event_id"] for r in read_staged(result)) == ["g-0", "g-1", "g-2"]
    assert result.rows == 3 and bad not in result.dates
