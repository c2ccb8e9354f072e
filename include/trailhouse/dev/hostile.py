"""Hostile delivery files (issue 15): valid-looking objects that once failed a whole run, and broken ones.

The transform's tests, the real-run test (tests/dags/test_hostile_files.py) and the fault
suite's input table (docs/reliability.md) all use these, so the table shows what is tested.
"""

from __future__ import annotations

import gzip
import json
import random
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Hostile:
    body: bytes  # the object as stored in the bucket
    reason: str  # what its quarantine reason says
    what: str  # the file, as the reliability table names it


def record(event_id: str, event_time: str | None = "2026-11-20T01:00:00Z", **fields: Any) -> dict[str, Any]:
    """A plausible CloudTrail record of account 111122223333."""
    rec: dict[str, Any] = {
        "eventVersion": "1.09",
        "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/alice", "accountId": "111122223333"},
        "eventSource": "s3.amazonaws.com",
        "eventName": "GetObject",
        "awsRegion": "us-east-1",
        "eventID": event_id,
        "requestParameters": {"bucketName": "b", "key": "k"},
        **fields,
    }
    if event_time is not None:
        rec["eventTime"] = event_time
    return rec


def envelope(*recs: dict[str, Any]) -> bytes:
    return json.dumps({"Records": list(recs)}).encode()


def bomb(inflated_mib: int) -> bytes:
    """A gzip bomb: gzip members of 1 MiB of zeros each (about 1 KB apiece), inflating to `inflated_mib` MiB."""
    return gzip.compress(bytes(1 << 20)) * inflated_mib


def hostile_files() -> dict[str, Hostile]:
    """{name (a key suffix): the file}; each one is quarantined with its reason."""
    text = envelope(record("h-1"))
    whole = gzip.compress(envelope(*(record(f"t{i}") for i in range(50))))
    deep = json.dumps(record("h-1"))[:-1].encode() + b', "requestParameters": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    return {
        "deepnesting0001": Hostile(gzip.compress(b'{"Records": [' + deep + b"]}"), "nesting deeper than 100 levels",
                                   "`requestParameters` nested 100,000 arrays deep"),
        "duplicatekey001": Hostile(gzip.compress(text[:-1] + b', "Records": []}'), "a key given twice",
                                   '`{"Records": [event], "Records": []}`'),
        "float1e999name1": Hostile(gzip.compress(text.replace(b'"GetObject"', b"1e999")), "a number out of range",
                                   "`1e999` as `eventName`"),
        "hugeintegerid01": Hostile(gzip.compress(text.replace(b'"h-1"', b"9" * 5000)), "a number out of range",
                                   "a 5,000-digit integer as `eventID`"),
        "gzipbomb0000001": Hostile(bomb(64), "inflates past 16,777,216 bytes",
                                   "a gzip bomb: 67 KB inflating to 64 MiB (and 1 MB to 1 GiB: same reason, same cap)"),
        "truncatedgzip01": Hostile(whole[: len(whole) // 2], "truncated or corrupt gzip", "gzip cut in half"),
        "notutf8text0001": Hostile(gzip.compress(text.replace(b'"h-1"', b'"h-\xff"')), "not UTF-8",
                                   "a byte 0xFF in a string"),
        "randombytes0001": Hostile(b"\x00" + random.Random(15).randbytes(2048), "not gzip and not JSON",
                                   "2 KB of random bytes"),
        "gzipofrandom001": Hostile(gzip.compress(random.Random(16).randbytes(2048)), "not UTF-8",
                                   "gzip of 2 KB of random bytes"),
        "zerobytes000001": Hostile(b"", "empty object (0 bytes)", "a 0-byte object"),
        "gzipofspaces001": Hostile(gzip.compress(b" \n "), "empty file: no JSON inside", "gzip of white space"),
        "invalidjson0001": Hostile(gzip.compress(text[:-2]), "invalid JSON", "JSON cut short"),
        "concatenated001": Hostile(gzip.compress(text + text), "invalid JSON", "two JSON documents one after the other"),
        "notadelivery001": Hostile(gzip.compress(b'{"digestStartTime": "2026-11-20T00:00:00Z", "logFiles": []}'),
                                   "not a CloudTrail log file", "JSON that is not a delivery file (a digest)"),
    }


def odd_records() -> list[dict[str, Any]]:
    """Records that are odd but loadable: they land in the table (and `extra_fields`), not in quarantine."""
    return [record("odd-year0", "0000-01-01T00:00:00Z"),
            record("odd-utc-year0", "0001-01-01T00:00:00+01:00"),
            record("odd-bigint", eventName=10**30)]
