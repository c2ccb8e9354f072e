"""Lossless parsing, proven on every record of the real CloudTrail corpora in tests/fixtures/corpora.

Each record goes row -> record through `records.rebuild` twice: straight from
`records.parse_file`, and after the full path (Polars frame, Arrow, Parquet file, back).
Both must give back exactly what `json.loads` makes of the record's original bytes.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import msgspec
import pyarrow.parquet as pq
import pytest

from trailhouse.ingest import records, transform
from trailhouse.warehouse.schema import ARROW_SCHEMA

CORPORA = Path(__file__).resolve().parents[2] / "fixtures" / "corpora"

# Broken on purpose: tested in test_transform.py (quarantine), not here.
BROKEN_ON_PURPOSE = {"SerializerTestFileBadJsonFormat.json"}
# Not CloudTrail records at all: SNS notifications telling where a delivery file is.
NOT_RECORDS = {"SQSMessageBody", "SQSMessageBodyWrongFormat"}

Record = tuple[str, bytes]  # (source file relative to CORPORA, the record's raw JSON bytes)

_raw_list = msgspec.json.Decoder(list[msgspec.Raw])
_envelope = msgspec.json.Decoder(dict[str, list[msgspec.Raw]])


class _DocsLine(msgspec.Struct):
    kind: str
    event: msgspec.Raw


class _LookupEvents(msgspec.Struct):
    Events: list[msgspec.Raw]


_docs_line = msgspec.json.Decoder(_DocsLine)
_lookup = msgspec.json.Decoder(_LookupEvents)


def _rel(path: Path) -> str:
    return path.relative_to(CORPORA).as_posix()


def _read(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.name.endswith(".gz") else data


def _delivery_file(path: Path, data: bytes | None = None) -> Iterator[Record]:
    """{"Records": [...]}: each record's bytes exactly as they are in the file."""
    envelope = _envelope.decode(_read(path) if data is None else data)
    for raw in envelope["Records"]:
        yield _rel(path), bytes(raw)


def _json_array(path: Path) -> Iterator[Record]:
    for raw in _raw_list.decode(_read(path)):
        yield _rel(path), bytes(raw)


def invictus() -> Iterator[Record]:
    for path in sorted((CORPORA / "invictus_aws_dataset" / "CloudTrail").glob("*.json")):
        yield from _delivery_file(path)


def traildiscover() -> Iterator[Record]:
    # events/<Service>/<EventName>.json holds TrailDiscover's metadata about the event name
    # (MITRE mappings, incidents, links: no CloudTrail record, at any depth); the captured
    # records are in the .json.cloudtrail next to it: a JSON array, or in some files one
    # bare event object.
    for path in sorted((CORPORA / "traildiscover" / "events").glob("*/*.json.cloudtrail")):
        data = path.read_bytes()
        if data.lstrip()[:1] == b"[":
            yield from _json_array(path)
        else:
            yield _rel(path), data


def stratus() -> Iterator[Record]:
    for path in sorted((CORPORA / "stratus_red_team" / "detonation-logs").glob("*.json")):
        yield from _json_array(path)


def processing_library() -> Iterator[Record]:
    for path in sorted((CORPORA / "aws_cloudtrail_processing_library" / "test-resources").iterdir()):
        if path.name in BROKEN_ON_PURPOSE or path.name in NOT_RECORDS:
            continue
        yield from _delivery_file(path)


def awsdocs() -> Iterator[Record]:
    path = CORPORA / "awsdocs_cloudtrail_user_guide" / "examples.jsonl"
    for line in path.read_bytes().splitlines():
        if not line.strip():
            continue
        entry = _docs_line.decode(line)
        event = bytes(entry.event)
        if entry.kind in ("record", "insight"):
            yield _rel(path), event
        elif entry.kind == "records_file":
            yield from _delivery_file(path, event)
        elif entry.kind == "lookup_events":  # `aws cloudtrail lookup-events` output: events are objects here
            for raw in _lookup.decode(event).Events:
                yield _rel(path), bytes(raw)
        elif entry.kind == "digest":
            continue  # digest files are never events
        else:
            raise AssertionError(f"unknown kind {entry.kind!r} in {path}")


def plaso() -> Iterator[Record]:
    # Event history export: the record is the JSON *string* in CloudTrailEvent.
    path = CORPORA / "plaso" / "aws_cloudtrail.jsonl"
    for line in path.read_bytes().splitlines():
        if line.strip():
            yield _rel(path), json.loads(line)["CloudTrailEvent"].encode()


def otrf() -> Iterator[Record]:
    # JSON lines from Logstash; the CSV next to it is not CloudTrail JSON.
    path = CORPORA / "otrf_security_datasets" / "ec2_proxy_s3_exfiltration" / "ec2_proxy_s3_exfiltration_2020-09-14011940.json"
    for line in path.read_bytes().splitlines():
        if line.strip():
            yield _rel(path), line


def trailscraper() -> Iterator[Record]:
    for path in sorted((CORPORA / "trailscraper" / "tests").rglob("*")):
        if path.name.endswith((".json", ".json.gz")):
            yield from _delivery_file(path)


# corpus -> (reader, at least this many records: the README's count)
CORPUS: dict[str, tuple[Callable[[], Iterator[Record]], int]] = {
    "invictus_aws_dataset": (invictus, 2900),
    "traildiscover": (traildiscover, 315),
    "stratus_red_team": (stratus, 310),
    "aws_cloudtrail_processing_library": (processing_library, 41),
    "awsdocs_cloudtrail_user_guide": (awsdocs, 25),
    "plaso": (plaso, 6),
    "trailscraper": (trailscraper, 7),
    "otrf_security_datasets": (otrf, 103),
}

_cache: dict[str, list[Record]] = {}


def corpus_records(name: str) -> list[Record]:
    if name not in _cache:
        _cache[name] = list(CORPUS[name][0]())
    return _cache[name]


def _wrap(*raws: bytes) -> bytes:
    return b'{"Records":[' + b",".join(raws) + b"]}"


def _mismatches(pairs: list[tuple[str, dict[str, Any], Any]]) -> str:
    lines = [f"{len(pairs)} record(s) do not round-trip; first ones:"]
    for src, row, expected in pairs[:3]:
        lines.append(f"  {src}\n    row:      {row}\n    rebuilt:  {records.rebuild(row)}\n    original: {expected}")
    return "\n".join(lines)


def test_fixtures_are_copied() -> None:
    for name in CORPUS:
        folder = CORPORA / name
        assert (folder / "SOURCE.txt").is_file(), folder
        assert list(folder.glob("LICENSE*")), folder


def _has_record(value: Any) -> bool:
    if isinstance(value, dict):
        return "eventTime" in value or "userIdentity" in value or any(_has_record(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_record(v) for v in value)
    return False


def test_skipped_files_hold_no_records() -> None:
    """What the readers leave out is metadata or digests, not events a reader forgot."""
    metadata = sorted((CORPORA / "traildiscover" / "events").glob("*/*.json"))
    assert len(metadata) >= 300
    for path in metadata:
        assert not _has_record(json.loads(path.read_bytes())), path
    kinds = [json.loads(line)["kind"] for line in (CORPORA / "awsdocs_cloudtrail_user_guide" / "examples.jsonl").read_text().splitlines()]
    assert kinds.count("digest") == 2


@pytest.mark.parametrize("corpus", sorted(CORPUS))
def test_every_record_round_trips(corpus: str) -> None:
    recs = corpus_records(corpus)
    assert len(recs) >= CORPUS[corpus][1], f"{corpus}: only {len(recs)} records read; a file format was skipped?"
    bad = []
    for src, raw in recs:
        original = json.loads(raw)
        assert isinstance(original, dict), src
        rows = records.parse_file(_wrap(raw))
        assert len(rows) == 1, src
        if records.rebuild(rows[0]) != original:
            bad.append((src, rows[0], original))
    assert not bad, _mismatches(bad)


@pytest.mark.parametrize("corpus", sorted(CORPUS))
def test_every_record_round_trips_through_parquet(corpus: str, tmp_path: Path) -> None:
    recs = corpus_records(corpus)
    # All of a corpus's records in one delivery file: also proves multi-record parsing.
    rows = records.parse_file(_wrap(*(raw for _src, raw in recs)))
    assert len(rows) == len(recs)
    n = len(rows)
    frame = transform.rows_to_frame(
        rows,
        [None] * n,
        [date(2020, 1, 1)] * n,
        [src for src, _raw in recs],
        mav="t",
        ingested_at=datetime.now(UTC),
    )
    table = frame.to_arrow().cast(ARROW_SCHEMA)  # as transform_batch does before writing
    pq.write_table(table, tmp_path / "part.parquet")
    back = pq.read_table(tmp_path / "part.parquet")
    assert back.schema.equals(ARROW_SCHEMA)
    bad = []
    for (src, raw), row in zip(recs, back.to_pylist(), strict=True):
        assert row["source_key"] == src
        assert row["mav"] == "t"
        original = json.loads(raw)
        if records.rebuild(row) != original:
            bad.append((src, row, original))
    assert not bad, _mismatches(bad)


# -- typed columns of one known event ---------------------------------------------------------

KNOWN = b"""{
  "eventVersion": "1.09",
  "userIdentity": {
    "type": "AssumedRole",
    "principalId": "AROAEXAMPLE:alice",
    "arn": "arn:aws:sts::111122223333:assumed-role/Admin/alice",
    "accountId": "111122223333",
    "accessKeyId": "ASIAEXAMPLE",
    "brandNewIdentityField": {"x": [1, 2]},
    "sessionContext": {
      "sessionIssuer": {
        "type": "Role",
        "principalId": "AROAEXAMPLE",
        "arn": "arn:aws:iam::111122223333:role/Admin",
        "accountId": "111122223333",
        "userName": "Admin"
      },
      "webIdFederationData": {},
      "attributes": {"creationDate": "2026-11-27T09:00:00Z", "mfaAuthenticated": "true"}
    }
  },
  "eventTime": "2026-11-27T10:01:02Z",
  "eventSource": "ec2.amazonaws.com",
  "eventName": "AuthorizeSecurityGroupIngress",
  "awsRegion": "eu-west-1",
  "sourceIPAddress": "203.0.113.7",
  "userAgent": "aws-cli/2.15.0",
  "errorCode": "Client.UnauthorizedOperation",
  "errorMessage": "You are not authorized to perform this operation.",
  "requestParameters": {"groupId": "sg-0123", "ipPermissions": {"items": [{"ipProtocol": "tcp",  "fromPort": 22}]}, "note": "caf\\u00e9 \xc3\xa9"},
  "responseElements": null,
  "requestID": "req-1",
  "eventID": "11111111-2222-3333-4444-555555555555",
  "readOnly": false,
  "eventType": "AwsApiCall",
  "managementEvent": true,
  "recipientAccountId": "111122223333",
  "eventCategory": "Management",
  "tlsDetails": {"tlsVersion": "TLSv1.3", "cipherSuite": "TLS_AES_128_GCM_SHA256", "clientProvidedHostHeader": "ec2.eu-west-1.amazonaws.com"},
  "brandNewTopLevelField": {"since": "2027", "values": [true, null, 1.5]}
}"""


def _known_row() -> dict[str, Any]:
    rows = records.parse_file(_wrap(KNOWN))
    assert len(rows) == 1
    return rows[0]


def test_typed_columns_of_a_known_event() -> None:
    row = _known_row()
    assert row["event_id"] == "11111111-2222-3333-4444-555555555555"
    assert row["event_time"] == "2026-11-27T10:01:02Z"
    assert row["region"] == "eu-west-1"
    assert row["event_source"] == "ec2.amazonaws.com"
    assert row["event_name"] == "AuthorizeSecurityGroupIngress"
    assert row["user_type"] == "AssumedRole"
    assert row["principal_arn"] == "arn:aws:sts::111122223333:assumed-role/Admin/alice"
    assert row["principal_account_id"] == "111122223333"
    assert row["session_issuer_arn"] == "arn:aws:iam::111122223333:role/Admin"
    assert row["session_issuer_user_name"] == "Admin"
    assert row["session_mfa_authenticated"] is True
    assert row["session_creation_date"] == "2026-11-27T09:00:00Z"
    assert row["error_code"] == "Client.UnauthorizedOperation"
    assert row["tls_version"] == "TLSv1.3"
    assert row["tls_cipher_suite"] == "TLS_AES_128_GCM_SHA256"
    assert row["read_only"] is False
    assert row["management_event"] is True
    assert row["recipient_account_id"] == "111122223333"
    # The exact text of the original bytes, whitespace and escapes included.
    start = KNOWN.index(b'{"groupId"')
    end = KNOWN.index(b"\n", start) - 1  # the line ends with `},`
    assert row["request_parameters"] == KNOWN[start:end].decode()
    extras = json.loads(row["extra_fields"])
    assert extras["brandNewTopLevelField"] == {"since": "2027", "values": [True, None, 1.5]}
    assert extras["userIdentity"]["brandNewIdentityField"] == {"x": [1, 2]}
    assert extras["userIdentity"]["sessionContext"] == {"webIdFederationData": {}}
    # Values the columns hold exactly are not repeated in extra_fields.
    assert "eventID" not in extras and "awsRegion" not in extras and "tlsDetails" not in extras
    assert "arn" not in extras["userIdentity"]
    assert records.rebuild(row) == json.loads(KNOWN)


def test_typed_columns_through_the_frame() -> None:
    row = _known_row()
    frame = transform.rows_to_frame(
        [row], [None], [date(2026, 11, 26)], ["k"], mav="t", ingested_at=datetime.now(UTC)
    )
    out = frame.to_dicts()[0]
    assert out["event_time"] == datetime(2026, 11, 27, 10, 1, 2, tzinfo=UTC)
    assert out["event_date"] == date(2026, 11, 27)
    assert out["session_creation_date"] == datetime(2026, 11, 27, 9, 0, 0, tzinfo=UTC)
    assert out["account_id"] == "111122223333"
    assert out["session_mfa_authenticated"] is True
    assert records.rebuild(out) == json.loads(KNOWN)


def test_json_null_round_trips() -> None:
    row = _known_row()
    assert row.get("response_elements") is None
    assert records.rebuild(row)["responseElements"] is None
    raw = b'{"eventID": "e1", "requestParameters": null, "additionalEventData": {}}'
    assert records.rebuild(records.parse_file(_wrap(raw))[0]) == json.loads(raw)


def test_request_parameters_null_stays_null_in_extra_fields() -> None:
    raw = b'{"eventID": "e1", "eventTime": "2026-11-27T10:00:00Z", "requestParameters": null}'
    row = records.parse_file(_wrap(raw))[0]
    assert row.get("request_parameters") is None
    assert json.loads(row["extra_fields"]) == {"requestParameters": None}
    assert records.rebuild(row) == json.loads(raw)


def test_record_without_event_id_gets_a_deterministic_derived_id() -> None:
    raw = b'{"eventTime": "2026-11-27T10:00:00Z", "eventName": "ConsoleLogin", "awsRegion": "us-east-1"}'
    first = records.parse_file(_wrap(raw))[0]
    again = records.parse_file(_wrap(raw, raw))
    other = records.parse_file(_wrap(raw.replace(b"us-east-1", b"us-west-2")))[0]
    assert first["event_id"].startswith("sha256:")
    assert len(first["event_id"]) == len("sha256:") + 64
    assert [r["event_id"] for r in again] == [first["event_id"]] * 2
    assert other["event_id"] != first["event_id"]
    assert records.rebuild(first) == json.loads(raw)  # the derived id is not put into the record


def test_record_with_a_null_event_id_gets_a_derived_id_and_keeps_the_null() -> None:
    raw = b'{"eventID": null, "eventName": "X"}'
    row = records.parse_file(_wrap(raw))[0]
    assert row["event_id"].startswith("sha256:")
    assert records.rebuild(row) == {"eventID": None, "eventName": "X"}


def test_event_id_that_looks_derived_round_trips() -> None:
    raw = b'{"eventID": "sha256:abc", "eventName": "X"}'
    row = records.parse_file(_wrap(raw))[0]
    assert records.rebuild(row) == json.loads(raw)


def test_read_only_as_a_string_round_trips(tmp_path: Path) -> None:
    raw = b'{"eventID": "e1", "eventTime": "2026-11-27T10:00:00Z", "readOnly": "true", "managementEvent": "false"}'
    row = records.parse_file(_wrap(raw))[0]
    assert row["read_only"] is True
    assert row["management_event"] is False
    rebuilt = records.rebuild(row)
    assert rebuilt == json.loads(raw)
    assert rebuilt["readOnly"] == "true"
    frame = transform.rows_to_frame([row], [None], [None], ["k"], mav="t", ingested_at=datetime.now(UTC))
    pq.write_table(frame.to_arrow().cast(ARROW_SCHEMA), tmp_path / "p.parquet")
    (back,) = pq.read_table(tmp_path / "p.parquet").to_pylist()
    assert back["read_only"] is True
    assert records.rebuild(back) == json.loads(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"eventID": "e1", "eventTime": "2026-11-27T10:00:00.123Z"}',
        b'{"eventID": "e1", "eventTime": "2026-11-27T10:00:00+01:00"}',
        b'{"eventID": "e1", "eventTime": "ThisIsAWrongEventTime"}',
        b'{"eventID": "e1", "eventTime": null}',
        b'{"eventID": "e1", "eventTime": 1764237600}',
        b'{"eventID": "e1", "userIdentity": {"sessionContext": {"attributes": {"mfaAuthenticated": true}}}}',
        b'{"eventID": "e1", "userIdentity": {"sessionContext": {"attributes": {"creationDate": "2021-02-21T23: 46: 28Z"}}}}',
        b'{"eventID": "e1", "recipientAccountId": 111122223333, "userIdentity": {"type": null, "arn": 5}}',
        b'{"eventID": "e1", "userIdentity": {}, "tlsDetails": {"tlsVersion": "TLSv1.2", "x": {}}}',
        b'{"eventID": "e1", "userIdentity": null, "resources": [], "additionalEventData": "text"}',
    ],
)
def test_odd_values_round_trip_through_parquet(raw: bytes, tmp_path: Path) -> None:
    rows = records.parse_file(_wrap(raw))
    assert records.rebuild(rows[0]) == json.loads(raw)
    frame = transform.rows_to_frame(rows, [None], [date(2026, 11, 27)], ["k"], mav="t", ingested_at=datetime.now(UTC))
    pq.write_table(frame.to_arrow().cast(ARROW_SCHEMA), tmp_path / "p.parquet")
    (back,) = pq.read_table(tmp_path / "p.parquet").to_pylist()
    assert records.rebuild(back) == json.loads(raw)


def test_impossible_canonical_event_time_survives_the_frame(tmp_path: Path) -> None:
    raw = b'{"eventID": "e1", "eventTime": "2026-02-30T10:00:00Z"}'
    rows = records.parse_file(_wrap(raw))
    frame = transform.rows_to_frame(rows, [None], [date(2026, 2, 28)], ["k"], mav="t", ingested_at=datetime.now(UTC))
    (back,) = frame.to_arrow().cast(ARROW_SCHEMA).to_pylist()
    assert records.rebuild(back) == json.loads(raw)
