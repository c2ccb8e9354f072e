"""The C column builder (trailhouse/_fastjson.c) against records.record_to_row, record by record.

The builder is only allowed to be faster: for every record it takes, its columns and
extra_fields must be exactly those of record_to_row; every record it leaves out goes through
record_to_row; a file it refuses must be left untouched (and goes to the Python path, which
names what is wrong with it).
"""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.include.ingest.test_records import CORPUS, corpus_records
from trailhouse.dev.synth.files import write_to_dir
from trailhouse.dev.synth.world import SynthSpec
from trailhouse.ingest import records


def test_the_extension_is_built() -> None:
    # `make venv` builds it (setup.py); without it ingest still works, several times slower.
    assert records.column_builder() is not None, "trailhouse.ingest._fastjson is missing: run `make venv` (needs gcc)"


_TIMES = {c.name for c in records.COLUMNS if c.kind == records.TIME}


def _normal(row: dict[str, Any]) -> dict[str, Any]:
    """A row of either path, comparable: the builder's times are timestamps, record_to_row's
    canonical text (the builder only takes canonical times)."""
    out = {name: row.get(name) for name in records.SOURCE_COLUMNS}
    for name in _TIMES:
        if isinstance(out[name], datetime):
            assert out[name].tzinfo is not None and out[name].utcoffset().total_seconds() == 0
            out[name] = out[name].isoformat().replace("+00:00", "Z")
    extras = row.get("extra_fields")
    out["extra_fields"] = msgspec.json.decode(extras) if extras else None
    return out


def builder_rows(text: bytes) -> tuple[list[dict[str, Any]], list[int]] | None:
    """(rows of the records the builder took, indices of those it left out), or None."""
    builder = records.column_builder()
    result = builder.add(text)
    if result is None:
        assert builder.rows == 0
        return None
    added, left_out = result
    rows = records.builder_table(builder).to_pylist()
    assert len(rows) == added
    return [_normal(r) for r in rows], left_out


def assert_same_as_python(text: bytes) -> tuple[int, int]:
    """Both paths on one file; returns (records taken by the builder, records left out)."""
    raw = records.decode_envelope(text)
    got = builder_rows(text)
    assert got is not None, "the builder refused a file the Python path reads"
    rows, left_out = got
    taken = [i for i in range(len(raw)) if i not in set(left_out)]
    assert len(taken) == len(rows)
    for i, row in zip(taken, rows, strict=True):
        expected = _normal(records.record_to_row(raw[i]))
        assert row == expected, f"record {i}: {msgspec.json.encode(raw[i])[:300]!r}"
    return len(rows), len(left_out)


def _wrap(*raws: bytes) -> bytes:
    return b'{"Records":[' + b",".join(raws) + b"]}"


@pytest.mark.parametrize("corpus", sorted(CORPUS))
def test_every_corpus_record_gives_the_same_row(corpus: str) -> None:
    recs = corpus_records(corpus)
    taken, left = assert_same_as_python(_wrap(*(raw for _, raw in recs)))
    assert taken + left == len(recs)


def test_the_builder_takes_nearly_every_synthetic_record(tmp_path: Any) -> None:
    spec = SynthSpec(seed=3, accounts=2, regions=("us-east-1", "eu-west-1"), days=1, events_per_file=150,
                           files_per_region_day=3, end=date(2026, 11, 25))
    write_to_dir(spec, tmp_path)
    taken = left = 0
    for path in sorted(tmp_path.rglob("*.json.gz")):
        if "/CloudTrail/" not in path.as_posix():
            continue
        t, lo = assert_same_as_python(records.decompress(path.read_bytes()))
        taken, left = taken + t, left + lo
    assert taken > 1000
    # the fast path is the common case, not a rare one
    assert left / (taken + left) < 0.02, (taken, left)


BASE = {
    "eventVersion": "1.09",
    "userIdentity": {
        "type": "AssumedRole",
        "principalId": "AROA:me",
        "arn": "arn:aws:sts::111122223333:assumed-role/r/me",
        "accountId": "111122223333",
        "sessionContext": {
            "sessionIssuer": {"type": "Role", "arn": "arn:aws:iam::111122223333:role/r"},
            "webIdFederationData": {},
            "attributes": {"creationDate": "2026-11-27T10:00:00Z", "mfaAuthenticated": "false"},
        },
    },
    "eventTime": "2026-11-27T10:05:00Z",
    "eventSource": "ec2.amazonaws.com",
    "eventName": "DescribeInstances",
    "awsRegion": "eu-west-1",
    "sourceIPAddress": "203.0.113.9",
    "userAgent": "aws-cli/2",
    "requestParameters": {"filterSet": {}, "maxResults": 5},
    "responseElements": None,
    "requestID": "r-1",
    "eventID": "e-1",
    "readOnly": True,
    "eventType": "AwsApiCall",
    "managementEvent": True,
    "recipientAccountId": "111122223333",
    "eventCategory": "Management",
    "tlsDetails": {"tlsVersion": "TLSv1.3", "cipherSuite": "TLS_AES_128_GCM_SHA256"},
}


def _with(**changes: Any) -> dict[str, Any]:
    record = json.loads(json.dumps(BASE))
    for path, value in changes.items():
        node = record
        parts = path.split("__")
        for part in parts[:-1]:
            node = node[part]
        if value is _DROP:
            node.pop(parts[-1], None)
        else:
            node[parts[-1]] = value
    return record


_DROP = object()

# Records the builder must take itself, each with one shape its rules cover.
TAKEN = {
    "base": BASE,
    "null blob": _with(requestParameters=None, responseElements=None),
    "blob scalar": _with(requestParameters="text", additionalEventData=5),
    "unknown top-level keys": _with(newField={"a": [1, {"b": None}]}, another=None),
    "unknown nested keys": _with(userIdentity__sessionContext__ec2RoleDelivery="2.0", userIdentity__x=[1]),
    "escapes in values": _with(userAgent='a "quoted"\\path\n\t\u00e9\u4e2d', errorMessage="\u0001\u001f"),
    "non-ascii": _with(userAgent="Zürich ☃ 𝄞"),
    "escaped surrogate pair": _with(userAgent="\U0001d11e and \U0001f600"),  # json.dumps escapes them
    "string column null": _with(errorCode=None, errorMessage=None),
    "string column bool": _with(errorCode=True),
    "string column object": _with(userAgent={"a": 1}),
    "bool column null": _with(readOnly=None),
    "bool column number": _with(readOnly=1),
    "mfa other text": _with(userIdentity__sessionContext__attributes__mfaAuthenticated="maybe"),
    "mfa true": _with(userIdentity__sessionContext__attributes__mfaAuthenticated="true"),
    "time column null": _with(eventTime=None),
    "time column number": _with(eventTime=1700000000),
    "nested arrived empty": _with(tlsDetails={}, userIdentity__sessionContext__attributes={}),
    "nested emptied": _with(userIdentity__sessionContext__webIdFederationData=_DROP),
    "nested partly emptied": _with(tlsDetails={"tlsVersion": "TLSv1.2", "keyExchange": "x"}),
    "nested not an object": _with(userIdentity=None, tlsDetails="none"),
    "nested array": _with(userIdentity__sessionContext=[1, 2]),
    "no user identity": _with(userIdentity=_DROP),
    "leap day": _with(eventTime="2024-02-29T23:59:59Z"),
    "unknown key with escapes inside a value": _with(newField={"k\"ey": "v\\u"}),
}

# Records that need a conversion: the builder must leave them to record_to_row.
LEFT_OUT = {
    "number in a string column": _with(awsRegion=5),
    "string true in a bool column": _with(readOnly="true"),
    "bool in the mfa column": _with(userIdentity__sessionContext__attributes__mfaAuthenticated=False),
    "non-canonical time": _with(eventTime="2026-11-27T10:05:00.123Z"),
    "impossible date": _with(eventTime="2026-02-30T10:05:00Z"),
    "hour 24": _with(eventTime="2026-11-27T24:00:00Z"),
    "no event id": _with(eventID=_DROP),
    "null event id": _with(eventID=None),
    "event id that looks derived": _with(eventID="sha256:abc"),
}


@pytest.mark.parametrize("name", sorted(TAKEN))
def test_shapes_the_builder_takes(name: str) -> None:
    taken, left = assert_same_as_python(_wrap(json.dumps(TAKEN[name]).encode()))
    assert (taken, left) == (1, 0)


@pytest.mark.parametrize("name", sorted(LEFT_OUT))
def test_records_needing_a_conversion_are_left_to_python(name: str) -> None:
    text = _wrap(json.dumps(BASE).encode(), json.dumps(LEFT_OUT[name]).encode(), json.dumps(BASE).encode())
    rows, left_out = builder_rows(text)
    assert left_out == [1] and len(rows) == 2


def test_escaped_keys_and_duplicate_keys_are_left_to_python() -> None:
    escaped = json.dumps(BASE).replace('"eventName"', '"event\\u004eame"').encode()
    duplicated = json.dumps(BASE)[:-1].encode() + b', "awsRegion": "us-east-1"}'
    duplicated_nested = json.dumps(BASE)[:-1].encode() + b', "userIdentity": {"type": "Root"}}'
    rows, left_out = builder_rows(_wrap(escaped, duplicated, duplicated_nested, json.dumps(BASE).encode()))
    assert left_out == [0, 1, 2] and len(rows) == 1


def test_whitespace_anywhere_is_the_same_record() -> None:
    pretty = json.dumps({"Records": [BASE, TAKEN["unknown nested keys"]]}, indent=3).encode()
    assert assert_same_as_python(pretty) == (2, 0)
    spaced = b' \n\t{ "Other" : [1, {"x": null}] ,\r\n "Records" : [ ' + json.dumps(BASE).encode() + b" ] } \n"
    assert assert_same_as_python(spaced) == (1, 0)


REFUSED = {
    "truncated": _wrap(json.dumps(BASE).encode())[:-5],
    "trailing garbage": _wrap(json.dumps(BASE).encode()) + b"x",
    "two documents": _wrap(json.dumps(BASE).encode()) * 2,
    "control character in a string": _wrap(json.dumps(BASE).replace("DescribeInstances", "Describe\tX").encode()),
    "invalid escape": _wrap(json.dumps(BASE).replace("aws-cli/2", "aws\\qcli").encode()),
    "leading zero": _wrap(json.dumps(_with(requestParameters={"n": 1})).replace('"n": 1', '"n": 01').encode()),
    "bare decimal point": _wrap(json.dumps(_with(requestParameters={"n": 1})).replace('"n": 1', '"n": 1.').encode()),
    "NaN": _wrap(json.dumps(_with(requestParameters={"n": 1})).replace('"n": 1', '"n": NaN').encode()),
    "invalid utf-8": _wrap(json.dumps(BASE).encode().replace(b"aws-cli/2", b"aws-cli/\xff")),
    "lone surrogate escape": _wrap(json.dumps(BASE).replace("aws-cli/2", "aws-cli\\ud834").encode()),
    "records not a list": b'{"Records": {"a": 1}}',
    "records null": b'{"Records": null}',
    "no records key": b'{"records": []}',
    "a record that is not an object": _wrap(json.dumps(BASE).encode(), b"[1]"),
    "not an object": b"[]",
    "empty": b"",
    "deep nesting": _wrap(json.dumps(_with(requestParameters=json.loads("[" * 300 + "]" * 300))).encode()),
    "broken record after good ones": _wrap(json.dumps(BASE).encode(), json.dumps(BASE).encode(), b'{"eventID": }'),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_files_the_builder_refuses_are_left_untouched(name: str) -> None:
    builder = records.column_builder()
    assert builder.add(_wrap(json.dumps(BASE).encode())) == (1, [])
    assert builder.add(REFUSED[name]) is None
    # the rows of the refused file are gone, those before it are kept
    assert builder.rows == 1
    assert records.builder_table(builder).column("event_id").to_pylist() == ["e-1"]


def test_refused_files_are_what_python_rejects_or_reads_itself() -> None:
    for text in REFUSED.values():
        with pytest.raises(records.BadObject):
            records.decode_envelope(records.decompress(text) if text else text)


def _nested(levels: int, kind: str = "array") -> bytes:
    """A delivery file whose JSON nests `levels` deep in all: {"Records": [ {record ... [[...]] } ]}."""
    n = levels - 3  # the outer object, the Records array and the record
    inner = "[" * n + "]" * n if kind == "array" else '{"a":' * (n - 1) + "{}" + "}" * (n - 1)
    return _wrap(json.dumps(BASE)[:-1].encode() + b', "requestParameters": ' + inner.encode() + b"}")


_STRUCTURES = [
    _nested(3), _nested(100), _nested(101, "object"), _nested(5000), b'{"Records": [], "a": 1, "b": [2]}', b"[]",
    b'{"Records": [{"k": "a string with [[[ { and \\" and \\\\"}]}', b'{"Records": [{"n": 1e999}]}',
    b'{"Records": [{"n": 0.5e-999, "m": -12.5E+3}]}', b'{"Records": [', b'{"a": "unterminated', b"]]]}}}[", b"",
    b'{"x": "\\ud800"}', b'{"x": "\x01"}', b'{"n": 1' + b"0" * 4400 + b"}",
]


@pytest.mark.parametrize("text", _STRUCTURES)
def test_the_structure_check_says_the_same_with_and_without_the_extension(
        text: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        valid = msgspec.json.decode(text) is not None or True
    except (msgspec.DecodeError, RecursionError):
        valid = False

    def outcome() -> str:
        try:
            members = records.check_structure(text)
        except records.BadObject as exc:
            return str(exc)
        return str(members) if valid else "passed on to the decoder"  # members count only for valid JSON

    fast = outcome()
    monkeypatch.setattr(records, "_fastjson", None)
    assert outcome() == fast


@pytest.mark.parametrize("kind", ["array", "object"])
def test_both_paths_take_files_up_to_the_nesting_limit_and_refuse_deeper_ones_by_name(kind: str) -> None:
    # The extension and records.MAX_DEPTH say the same, counted the same way.
    assert records._fastjson.MAX_DEPTH == records.MAX_DEPTH == 100
    at_limit = _nested(records.MAX_DEPTH, kind)
    assert records.check_structure(at_limit) == 1
    assert_same_as_python(at_limit)
    for levels in (records.MAX_DEPTH + 1, 100_000):
        text = _nested(levels, kind)
        assert records.column_builder().add(text) is None
        with pytest.raises(records.BadObject, match=f"nesting deeper than {records.MAX_DEPTH} levels"):
            records.decode_envelope(text)
    # the depth of another top-level key counts the same as that of the records
    deep_sibling = b'{"Records": [], "x": ' + b"[" * 99 + b"]" * 99 + b"}"
    assert records.column_builder().add(deep_sibling) == (0, [])
    assert records.decode_envelope(deep_sibling) == []
    for text in (b'{"Records": [], "x": ' + b"[" * 100 + b"]" * 100 + b"}",):
        assert records.column_builder().add(text) is None
        with pytest.raises(records.BadObject, match="nesting deeper"):
            records.decode_envelope(text)


@pytest.mark.parametrize("text", [
    _wrap(json.dumps(BASE).encode()) [:-1] + b',"Records":[]}',
    b'{"Records":[],' + _wrap(json.dumps(BASE).encode())[1:],
    b'{"Records":[' + json.dumps(BASE).encode() + b'],"Rec\\u006frds":[]}',
    b'{"Records":[' + json.dumps(BASE).encode() + b'],"x":1,"x":2}',
])
def test_a_top_level_key_given_twice_is_refused_by_both_paths(text: bytes) -> None:
    assert records.column_builder().add(text) is None
    with pytest.raises(records.BadObject, match="a key given twice at the top level"):
        records.decode_envelope(text)


@pytest.mark.parametrize("number", ["1e999", "-1e999", "1E+309", "10e308", "1.7976931348623159e308",
                                    "1" + "0" * 400 + ".5", "1" * 4301])
@pytest.mark.parametrize("where", ["eventName", "readOnly", "unknownKey", "userIdentity"])
def test_numbers_out_of_range_are_refused_by_name_by_both_paths(number: str, where: str) -> None:
    text = json.dumps({"Records": [_with(**{where: 0})]}).replace(f'"{where}": 0', f'"{where}": {number}').encode()
    assert records.column_builder().add(text) is None
    with pytest.raises(records.BadObject, match="a number out of range"):
        records.decode_envelope(text)


@pytest.mark.parametrize("number", ["1e308", "1.7976931348623157e308", "-1.7976931348623157e+308", "1e-999",
                                    "0.0e999", "123456789012345678901234567890", "1" * 4300, "1" * 400 + ".0e-300"])
def test_numbers_in_range_are_read_alike_by_both_paths(number: str) -> None:
    text = json.dumps({"Records": [_with(eventName=0, unknownKey=0)]}).replace(": 0", f": {number}").encode()
    taken, left = assert_same_as_python(text)
    assert (taken, left) == (0, 1)  # a number in a string column: converted by Python, the text kept too
    (row,) = [records.record_to_row(r) for r in records.decode_envelope(text)]
    assert records.rebuild(row) == msgspec.json.decode(text)["Records"][0]


def test_undo_drops_the_rows_of_the_last_file_only() -> None:
    builder = records.column_builder()
    assert builder.add(_wrap(json.dumps(BASE).encode())) == (1, [])
    assert builder.add(_wrap(json.dumps(_with(eventID="e-2")).encode(), json.dumps(_with(eventID="e-3")).encode())) == (2, [])
    builder.undo()
    with pytest.raises(RuntimeError, match="nothing to undo"):
        builder.undo()
    assert records.builder_table(builder).column("event_id").to_pylist() == ["e-1"]


def test_empty_records_and_the_builder_starting_over() -> None:
    builder = records.column_builder()
    assert builder.add(b'{"Records": []}') == (0, [])
    assert builder.add(_wrap(json.dumps(BASE).encode())) == (1, [])
    assert records.builder_table(builder).num_rows == 1
    assert builder.rows == 0 and records.builder_table(builder).num_rows == 0


# Hypothesis: records built from the known keys with any JSON value in any place.
_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=False, allow_infinity=False),
                     st.text(max_size=12), st.sampled_from(["true", "false", "2026-11-27T10:05:00Z", "sha256:x"]))
_json = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                        st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                     max_leaves=8)


def _shape(tree: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    entries = {}
    for key, spec in tree.items():
        value = _json if isinstance(spec, records.Column) else st.one_of(_shape(spec), _json)
        entries[key] = value
    return st.fixed_dictionaries({}, optional={**entries, "unknownKey": _json})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_shape(records.TREE), min_size=1, max_size=4))
def test_any_record_gives_the_same_row_as_python(recs: list[dict[str, Any]]) -> None:
    assert_same_as_python(json.dumps({"Records": recs}).encode())


# Mutation fuzzing: broken variants of real delivery files. The builder reads untrusted
# bytes in C; whatever it gets it must not crash, must not accept a file the Python path
# rejects, and must give Python's rows for one it accepts.
_SEED_FILES = [_wrap(*(raw for _, raw in corpus_records(name)[:6])) for name in ("invictus_aws_dataset", "stratus_red_team")]
_BYTES = b'{}[]",:\\0123456789.-+eEtrunfals \n\x00\x1f\x7f\x80\xc3\xa9\xed\xa0\x80\xf4\x90'


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(_SEED_FILES)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(["flip", "delete", "insert", "truncate", "escape"]))
        if kind == "flip":
            data[at] = draw(st.sampled_from(_BYTES))
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 8))]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=4)) if draw(st.booleans()) else bytes(
                [draw(st.sampled_from(_BYTES))])
        elif kind == "truncate":
            del data[at:]
        else:
            data[at:at] = draw(st.sampled_from([b"\\u", b"\\ud800", b"\\udc00", b"\\ud83d\\ude00", b"\\", b'\\"']))
        if not data:
            data = bytearray(b"{")
    return bytes(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated())
def test_broken_variants_of_real_files_never_fool_the_builder(text: bytes) -> None:
    builder = records.column_builder()
    result = builder.add(text)
    if result is None:
        assert builder.rows == 0
        return
    try:
        records.decode_envelope(text)
    except records.BadObject as exc:
        raise AssertionError(f"the builder accepted a file Python rejects ({exc})") from None
    assert_same_as_python(text)
