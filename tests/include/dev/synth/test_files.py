"""Tests of the synthetic CloudTrail bucket generator: layout, content, digests, determinism."""

from __future__ import annotations

import collections
import datetime
import gzip
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from trailhouse.dev.synth.files import digest_signature, generate, late_file, write_to_dir, write_to_s3
from trailhouse.dev.synth.world import SynthSpec

END = datetime.date(2024, 3, 10)

# Written from CloudTrail's documented layout, independently of the generator's code.
KEY_RE = re.compile(
    r"^(?P<prefix>.*?)AWSLogs/(?:(?P<org>o-[a-z0-9]{10,32})/)?(?P<account>\d{12})/"
    r"(?P<kind>CloudTrail|CloudTrail-Digest|CloudTrail-Insight)/(?P<region>[a-z0-9-]+)/"
    r"(?P<y>\d{4})/(?P<m>\d\d)/(?P<d>\d\d)/(?P<name>[^/]+)$"
)
LOG_NAME_RE = re.compile(
    r"^(?P<account>\d{12})_CloudTrail_(?P<region>[a-z0-9-]+)_(?P<ts>\d{8}T\d{4}Z)_[A-Za-z0-9]{16}\.json\.gz$"
)
INSIGHT_NAME_RE = re.compile(
    r"^(?P<account>\d{12})_CloudTrail-Insight_(?P<region>[a-z0-9-]+)_(?P<ts>\d{8}T\d{4}Z)_[A-Za-z0-9]{16}\.json\.gz$"
)
DIGEST_NAME_RE = re.compile(
    r"^(?P<account>\d{12})_CloudTrail-Digest_(?P<region>[a-z0-9-]+)_(?P<trail>[A-Za-z0-9_.-]+)_(?P<region2>[a-z0-9-]+)_"
    r"(?P<ts>\d{8}T\d{6}Z)\.json\.gz$"
)
EVENT_TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def _ts(text: str) -> datetime.datetime:
    fmt = {14: "%Y%m%dT%H%MZ", 16: "%Y%m%dT%H%M%SZ", 20: "%Y-%m-%dT%H:%M:%SZ"}[len(text)]
    return datetime.datetime.strptime(text, fmt).replace(tzinfo=datetime.UTC)


def _folder_day(key: str) -> datetime.date:
    m = KEY_RE.match(key)
    assert m, key
    return datetime.date(int(m["y"]), int(m["m"]), int(m["d"]))


def _name_ts(key: str) -> datetime.datetime:
    name = key.rsplit("/", 1)[1]
    for rx in (LOG_NAME_RE, INSIGHT_NAME_RE, DIGEST_NAME_RE):
        m = rx.match(name)
        if m:
            return _ts(m["ts"])
    raise AssertionError(f"unparseable name {name}")


def _json(body: bytes) -> Any:
    return json.loads(gzip.decompress(body))


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


@pytest.fixture(scope="module")
def spec() -> SynthSpec:
    return SynthSpec(end=END)


@pytest.fixture(scope="module")
def objects(spec: SynthSpec) -> dict[str, bytes]:
    items = list(generate(spec))
    keys = [k for k, _ in items]
    assert keys == sorted(keys), "generate() must yield keys in sorted order"
    assert len(set(keys)) == len(keys)
    return dict(items)


@pytest.fixture(scope="module")
def logs(objects: dict[str, bytes]) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for key, body in objects.items():
        if "/CloudTrail/" in key:
            doc = _json(body)
            assert list(doc) == ["Records"], key
            out[key] = doc["Records"]
    return out


@pytest.fixture(scope="module")
def records(logs: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [r for recs in logs.values() for r in recs]


def test_same_spec_gives_identical_bytes() -> None:
    small = SynthSpec(end=END, accounts=3, days=2, files_per_region_day=3, events_per_file=10)
    first = list(generate(small))
    assert first == list(generate(small))
    other_seed = dict(
        generate(SynthSpec(end=END, accounts=3, days=2, files_per_region_day=3, events_per_file=10, seed=8))
    )
    assert set(other_seed) != {k for k, _ in first}


def test_overlapping_days_are_byte_identical_across_ends() -> None:
    kwargs: dict[str, Any] = {"accounts": 4, "days": 3, "files_per_region_day": 4, "events_per_file": 12}
    a = dict(generate(SynthSpec(end=END, **kwargs)))
    b = dict(generate(SynthSpec(end=END + datetime.timedelta(days=1), **kwargs)))
    overlap = {END - datetime.timedelta(days=1), END}
    a_days = {k: v for k, v in a.items() if _folder_day(k) in overlap}
    b_days = {k: v for k, v in b.items() if _folder_day(k) in overlap}
    assert len(a_days) > 50
    assert a_days == b_days
    # ... while the days that are not shared really differ.
    assert any(_folder_day(k) == END + datetime.timedelta(days=1) and "/CloudTrail/" in k for k in b)
    assert not any(_folder_day(k) == END - datetime.timedelta(days=2) for k in b)


def test_keys_follow_cloudtrail_layout(spec: SynthSpec, objects: dict[str, bytes]) -> None:
    kinds: collections.Counter[str] = collections.Counter()
    for key in objects:
        m = KEY_RE.match(key)
        assert m, key
        name = m["name"]
        rx = {"CloudTrail": LOG_NAME_RE, "CloudTrail-Digest": DIGEST_NAME_RE, "CloudTrail-Insight": INSIGHT_NAME_RE}[
            m["kind"]
        ]
        nm = rx.match(name)
        assert nm, name
        assert nm["account"] == m["account"] and nm["region"] == m["region"], key
        if m["kind"] == "CloudTrail-Digest":
            assert nm["region2"] == m["region"] and nm["trail"] == spec.trail_name
        assert m["region"] in spec.regions
        # The name timestamp (delivery time) lies in the day folder it was written to.
        assert _name_ts(key).date() == _folder_day(key), key
        kinds[m["kind"]] += 1
    assert kinds["CloudTrail"] > 0 and kinds["CloudTrail-Digest"] > 0 and kinds["CloudTrail-Insight"] > 0


def test_both_layouts_and_account_ids(spec: SynthSpec, objects: dict[str, bytes]) -> None:
    org_accounts: set[str] = set()
    own_accounts: set[str] = set()
    for key in objects:
        m = KEY_RE.match(key)
        assert m is not None
        assert m["org"] in (None, spec.org_id)
        (org_accounts if m["org"] else own_accounts).add(m["account"])
    assert org_accounts and own_accounts
    assert not org_accounts & own_accounts, "an account uses one layout only"
    accounts = org_accounts | own_accounts
    assert len(accounts) == spec.accounts
    assert len(org_accounts) == round(spec.accounts * 2 / 3)
    assert any(a.startswith("0") for a in accounts), "leading-zero account ids must be exercised"
    days = {_folder_day(k) for k in objects if "/CloudTrail/" in k}
    # Window days plus the re-delivery folder of the day after `end`.
    assert days == {
        END - datetime.timedelta(days=2),
        END - datetime.timedelta(days=1),
        END,
        END + datetime.timedelta(days=1),
    }


def test_prefix_is_put_before_awslogs() -> None:
    keys = [k for k, _ in generate(SynthSpec(end=END, accounts=3, days=1, files_per_region_day=1, prefix="org-trail/"))]
    assert keys and all(k.startswith("org-trail/AWSLogs/") for k in keys)


def test_log_records_have_cloudtrail_fields(logs: dict[str, list[dict[str, Any]]]) -> None:
    unsorted_files = 0
    cross_midnight = 0
    for key, recs in logs.items():
        m = KEY_RE.match(key)
        assert m is not None and recs, key
        delivered = _name_ts(key)
        times = []
        for r in recs:
            for f in (
                "eventID",
                "eventTime",
                "recipientAccountId",
                "eventSource",
                "eventName",
                "eventVersion",
                "userIdentity",
                "eventType",
            ):
                assert f in r, (key, f)
            assert r["recipientAccountId"] == m["account"]
            assert r["awsRegion"] == m["region"]
            assert r["eventType"] in ("AwsApiCall", "AwsConsoleSignIn", "AwsServiceEvent")
            assert r["managementEvent"] is True and r["eventCategory"] == "Management"
            assert EVENT_TIME_RE.match(r["eventTime"]), r["eventTime"]
            t = _ts(r["eventTime"])
            if _folder_day(key) <= END:  # the re-delivery file is late on purpose
                assert delivered - datetime.timedelta(minutes=15) <= t < delivered, (key, r["eventTime"])
            cross_midnight += t.date() != _folder_day(key)
            times.append(r["eventTime"])
        unsorted_files += times != sorted(times)
    assert unsorted_files > len(logs) // 2, "records inside a file are not time-ordered in CloudTrail"
    assert cross_midnight > 0, "some events must be delivered in the next day's folder"


def test_event_mix_is_realistic(records: list[dict[str, Any]]) -> None:
    n = len(records)
    names = collections.Counter(r["eventName"] for r in records)
    types = collections.Counter(r["userIdentity"].get("type") for r in records)
    assert {"IAMUser", "AssumedRole", "Root", "AWSService", "FederatedUser"} <= set(types)
    assert any("AWSReservedSSO_" in r["userIdentity"].get("arn", "") for r in records)
    read_only = sum(r.get("readOnly") is True for r in records)
    assert read_only / n > 0.8
    errors = [r for r in records if "errorCode" in r]
    assert 0.01 < len(errors) / n < 0.06
    assert {"AccessDenied", "Client.UnauthorizedOperation"} <= {r["errorCode"] for r in errors}
    logins = [r for r in records if r["eventName"] == "ConsoleLogin"]
    outcomes = {r["responseElements"]["ConsoleLogin"] for r in logins}
    assert outcomes == {"Success", "Failure"}
    assert all(
        r["errorMessage"] == "Failed authentication"
        for r in logins
        if r["responseElements"]["ConsoleLogin"] == "Failure"
    )
    assert all(r["additionalEventData"]["MFAUsed"] in ("Yes", "No") for r in logins)
    security = {
        "AuthorizeSecurityGroupIngress", "CreateUser", "CreateAccessKey", "AttachRolePolicy", "StopLogging",
        "UpdateTrail", "PutEventSelectors", "DeleteTrail", "PutBucketPolicy", "PutBucketAcl", "DisableKey",
        "ScheduleKeyDeletion", "StopConfigurationRecorder", "DeleteDetector", "DisableSecurityHub",
        "CreateNetworkAclEntry", "CreateRoute", "PutUserPolicy", "RevokeSecurityGroupIngress",
    }  # fmt: skip
    n_security = sum(names[s] for s in security)
    assert 0.005 < n_security / n < 0.08
    assert len(security & set(names)) >= 12
    assert "UpdateFunctionCode20150331v2" in names
    open_world = [
        r
        for r in records
        if r["eventName"] == "AuthorizeSecurityGroupIngress" and "0.0.0.0/0" in json.dumps(r["requestParameters"])
    ]
    assert open_world
    assert {"AwsApiCall", "AwsConsoleSignIn", "AwsServiceEvent"} == {r["eventType"] for r in records}
    assert all("serviceEventDetails" in r for r in records if r["eventType"] == "AwsServiceEvent")
    assert sum("tlsDetails" in r for r in records) / n > 0.5


def test_odd_payloads_are_present(records: list[dict[str, Any]]) -> None:
    sizes = [len(json.dumps(r["requestParameters"])) for r in records]
    big = [s for s in sizes if s > 50_000]
    assert big and all(80_000 < s < 100_000 for s in big)
    assert any(r["eventVersion"] == "1.99" for r in records)
    assert {r["eventVersion"] for r in records} >= {"1.08", "1.09"}
    assert any("newFutureField" in r for r in records)
    assert any(r["requestParameters"] is None for r in records)
    tags_types = {
        type(r["requestParameters"]["tags"])
        for r in records
        if isinstance(r["requestParameters"], dict) and "tags" in r["requestParameters"]
    }
    assert tags_types == {list, dict}
    max_results = {
        type(r["requestParameters"]["maxResults"])
        for r in records
        if isinstance(r["requestParameters"], dict) and "maxResults" in r["requestParameters"]
    }
    assert max_results == {int, str}
    assert any(not json.dumps(r["requestParameters"], ensure_ascii=False).isascii() for r in records)
    assert max(_depth(r["requestParameters"]) for r in records) >= 10
    dotted = any(
        isinstance(r["requestParameters"], dict) and "." in k
        for r in records
        if isinstance(r["requestParameters"], dict) and isinstance(r["requestParameters"].get("tags"), dict)
        for k in r["requestParameters"]["tags"]
    )
    assert dotted


def test_insight_files(objects: dict[str, bytes]) -> None:
    insight_keys = [k for k in objects if "/CloudTrail-Insight/" in k]
    assert 2 <= len(insight_keys) <= 40
    states = collections.Counter()
    for key in insight_keys:
        recs = _json(objects[key])["Records"]
        for r in recs:
            assert r["eventType"] == "AwsCloudTrailInsight"
            assert "userIdentity" not in r and "eventName" not in r
            assert r["insightDetails"]["insightType"] in ("ApiCallRateInsight", "ApiErrorRateInsight")
            assert r["recipientAccountId"] == key.split("/CloudTrail-Insight/")[0].rsplit("/", 1)[-1]
            states[r["insightDetails"]["state"]] += 1
    assert states["Start"] == states["End"] > 0


def test_digests_cover_every_log_file_with_correct_hashes(objects: dict[str, bytes], spec: SynthSpec) -> None:
    log_keys = {k for k in objects if "/CloudTrail/" in k}
    covered: list[str] = []
    for key, body in objects.items():
        if "/CloudTrail-Digest/" not in key:
            continue
        doc = _json(body)
        m = KEY_RE.match(key)
        assert m is not None
        assert doc["digestS3Object"] == key and doc["digestS3Bucket"] == spec.bucket
        assert doc["awsAccountId"] == m["account"]
        assert doc["digestSignatureAlgorithm"] == "SHA256withRSA"
        assert doc["digestEndTime"] == _name_ts(key).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert doc["logFiles"], "digests are only written for hours with log files"
        end = _ts(doc["digestEndTime"])
        start = _ts(doc["digestStartTime"])
        for lf in doc["logFiles"]:
            assert lf["hashAlgorithm"] == "SHA-256" and lf["s3Bucket"] == spec.bucket
            # CloudTrail hashes the uncompressed content, not the .json.gz bytes.
            assert lf["hashValue"] == hashlib.sha256(gzip.decompress(objects[lf["s3Object"]])).hexdigest()
            lm = KEY_RE.match(lf["s3Object"])
            assert lm is not None and (lm["account"], lm["region"]) == (m["account"], m["region"])
            assert start <= _name_ts(lf["s3Object"]) <= end
            assert _name_ts(lf["s3Object"]).hour == end.hour
            times = [r["eventTime"] for r in _json(objects[lf["s3Object"]])["Records"]]
            assert (lf["oldestEventTime"], lf["newestEventTime"]) == (min(times), max(times))
            covered.append(lf["s3Object"])
        assert doc["newestEventTime"] == max(lf["newestEventTime"] for lf in doc["logFiles"])
    assert sorted(covered) == sorted(log_keys), "every log file is in exactly one digest"


def test_digest_chain_links(objects: dict[str, bytes], spec: SynthSpec) -> None:
    chains: dict[tuple[str, str, datetime.date], list[str]] = collections.defaultdict(list)
    for key in objects:
        if "/CloudTrail-Digest/" in key:
            m = KEY_RE.match(key)
            assert m is not None
            chains[(m["account"], m["region"], _folder_day(key))].append(key)
    linked = 0
    for chain in chains.values():
        chain.sort(key=_name_ts)
        first = _json(objects[chain[0]])
        assert first["previousDigestS3Object"] is None and first["previousDigestHashValue"] is None
        assert first["digestStartTime"].endswith("T00:00:00Z")
        for prev, cur in zip(chain, chain[1:], strict=False):
            doc = _json(objects[cur])
            assert doc["previousDigestS3Bucket"] == spec.bucket
            assert doc["previousDigestS3Object"] == prev
            assert doc["previousDigestHashAlgorithm"] == "SHA-256"
            assert doc["previousDigestHashValue"] == hashlib.sha256(gzip.decompress(objects[prev])).hexdigest()
            assert doc["previousDigestSignature"] == digest_signature(prev)
            assert doc["digestStartTime"] == _json(objects[prev])["digestEndTime"]
            linked += 1
    assert linked > 100


def test_duplicates_are_same_record_in_two_files(logs: dict[str, list[dict[str, Any]]], spec: SynthSpec) -> None:
    where: dict[str, list[tuple[str, dict[str, Any]]]] = collections.defaultdict(list)
    for key, recs in logs.items():
        for r in recs:
            where[r["eventID"]].append((key, r))
    dups = {eid: places for eid, places in where.items() if len(places) > 1}
    assert len(dups) == spec.duplicates == 3
    for places in dups.values():
        assert len(places) == 2
        (k1, r1), (k2, r2) = places
        assert k1 != k2 and r1 == r2


def test_no_duplicates_when_disabled() -> None:
    small = SynthSpec(
        end=END,
        accounts=2,
        days=1,
        files_per_region_day=2,
        events_per_file=10,
        duplicates=0,
        digests=False,
        insights=False,
    )
    ids = [r["eventID"] for k, b in generate(small) for r in _json(b)["Records"]]
    assert ids and len(ids) == len(set(ids))
    assert all("/CloudTrail/" in k for k, _ in generate(small))


def test_late_file_is_older_than_the_newest_file_of_its_day(objects: dict[str, bytes], spec: SynthSpec) -> None:
    key, body = late_file(spec, datetime.datetime(2024, 3, 9, 6, 2, 30, tzinfo=datetime.UTC), account_index=0)
    m = KEY_RE.match(key)
    assert m is not None and m["kind"] == "CloudTrail" and m["region"] == spec.regions[0]
    folder = key.rsplit("/", 1)[0] + "/"
    same_folder = [k for k in objects if k.startswith(folder)]
    assert same_folder, "the late file lands in a folder that already has files"
    assert key not in objects
    assert _name_ts(key) == datetime.datetime(2024, 3, 9, 6, 2, tzinfo=datetime.UTC)
    assert _name_ts(key) < max(_name_ts(k) for k in same_folder)
    recs = _json(body)["Records"]
    assert len(recs) == 5
    existing_ids = {r["eventID"] for k in same_folder for r in _json(objects[k])["Records"]}
    assert not existing_ids & {r["eventID"] for r in recs}
    for r in recs:
        assert r["recipientAccountId"] == m["account"]
        assert _name_ts(key) - datetime.timedelta(minutes=15) <= _ts(r["eventTime"]) < _name_ts(key)
    # Deterministic too, and a naive datetime means UTC.
    assert late_file(spec, datetime.datetime(2024, 3, 9, 6, 2, 30), account_index=0) == (key, body)


def test_write_to_dir_matches_generate(tmp_path: Path) -> None:
    small = SynthSpec(end=END, accounts=3, days=1, files_per_region_day=2, events_per_file=8)
    summary = write_to_dir(small, tmp_path)
    expected = dict(generate(small))
    files = {p.relative_to(tmp_path).as_posix(): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert files == expected
    assert summary.objects == len(expected) == summary.log_files + summary.digest_files + summary.insight_files
    assert summary.bytes == sum(map(len, expected.values()))
    ids = [r["eventID"] for k, b in expected.items() if "/CloudTrail/" in k for r in _json(b)["Records"]]
    assert summary.events == len(ids)
    assert summary.unique_events == len(set(ids)) == len(ids) - small.duplicates
    assert len(summary.accounts) == 3 and all(len(a) == 12 and a.isdigit() for a in summary.accounts)


def test_write_to_s3_with_moto() -> None:
    boto3 = pytest.importorskip("boto3")
    moto = pytest.importorskip("moto")
    small = SynthSpec(end=END, accounts=3, days=1, files_per_region_day=2, events_per_file=8)
    with moto.mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=small.bucket)
        summary = write_to_s3(small, s3, small.bucket)
        keys = [
            o["Key"]
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=small.bucket)
            for o in page.get("Contents", [])
        ]
        assert len(keys) == summary.objects > 0
        expected = dict(generate(small))
        assert set(keys) == set(expected)
        some_log = next(k for k in keys if "/CloudTrail/" in k)
        assert s3.get_object(Bucket=small.bucket, Key=some_log)["Body"].read() == expected[some_log]
        some_digest = next(k for k in keys if "/CloudTrail-Digest/" in k)
        head = s3.head_object(Bucket=small.bucket, Key=some_digest)
        assert head["Metadata"]["signature"] == digest_signature(some_digest)
    assert summary.digest_files == sum("/CloudTrail-Digest/" in k for k in keys)
    assert summary.log_files == sum("/CloudTrail/" in k for k in keys)
