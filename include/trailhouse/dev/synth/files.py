"""Deterministic synthetic CloudTrail aggregate bucket: log, digest and insight files as AWS writes them."""

from __future__ import annotations

import datetime
import gzip
import hashlib
import random
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from trailhouse.dev.synth.events import _events
from trailhouse.dev.synth.world import (
    _UA_BOTO,
    _UTC,
    SynthSpec,
    _Account,
    _account,
    _Gen,
    _iso,
    _root_path,
    _token,
    _uuid,
    account_ids,
)

try:  # ISA-L is ~6x faster than zlib -6 for ~20% bigger files; only the bytes differ, never the JSON.
    from isal import igzip as _igzip
except ImportError:  # pragma: no cover - isal is a declared dependency
    _igzip = None  # type: ignore[assignment]

_SLOT = 300  # CloudTrail delivers roughly every 5 minutes
_FINGERPRINT = "8a5d2c3f1b9e4d7a6c0f2e1d3b5a7c9e"
_encode = msgspec.json.encode


@dataclass
class SynthSummary:
    objects: int = 0
    log_files: int = 0
    digest_files: int = 0
    insight_files: int = 0
    events: int = 0
    unique_events: int = 0
    accounts: list[str] = field(default_factory=list)
    bytes: int = 0


# --------------------------------------------------------------------------- helpers


def _gzip(data: bytes) -> bytes:
    # mtime=0 keeps the bytes a pure function of the content (digest hashes rely on it).
    if _igzip is not None:
        return _igzip.compress(data, compresslevel=2, mtime=0)
    return gzip.compress(data, compresslevel=6, mtime=0)


def _stamp(ts: int) -> str:
    return time.strftime("%Y%m%dT%H%MZ", time.gmtime(ts))


def _stamp_s(ts: int) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(ts))


def _day_start(day: datetime.date) -> int:
    return int(datetime.datetime(day.year, day.month, day.day, tzinfo=_UTC).timestamp())


def digest_signature(key: str) -> str:
    """The (fake, deterministic) RSA signature CloudTrail would store as the digest's x-amz-meta-signature."""
    h = hashlib.sha256(key.encode()).hexdigest()
    return (h * 8)[:512]


# --------------------------------------------------------------------------- files


@dataclass
class _LogFile:
    key: str
    body: bytes
    delivery: int
    oldest: str
    newest: str
    n_records: int
    sha256: str  # of the uncompressed JSON, as a digest's hashValue
    records: list[dict[str, Any]] | None = None  # kept only where duplicates are drawn from


def _log_key(acct: _Account, region: str, ts: int, suffix: str) -> str:
    t = time.gmtime(ts)
    return (
        f"{acct.root}CloudTrail/{region}/{t.tm_year:04d}/{t.tm_mon:02d}/{t.tm_mday:02d}/"
        f"{acct.id}_CloudTrail_{region}_{_stamp(ts)}_{suffix}.json.gz"
    )


def _make_log(
    acct: _Account, region: str, ts: int, suffix: str, records: list[dict[str, Any]], keep: bool = False
) -> _LogFile:
    text = _encode({"Records": records})
    times = [r["eventTime"] for r in records]
    return _LogFile(
        key=_log_key(acct, region, ts, suffix),
        body=_gzip(text),
        delivery=ts,
        oldest=min(times),
        newest=max(times),
        n_records=len(records),
        sha256=hashlib.sha256(text).hexdigest(),
        records=records if keep else None,
    )


def _region_day_logs(
    spec: SynthSpec, acct: _Account, day: datetime.date, region_index: int, keep: bool
) -> list[_LogFile]:
    region = spec.regions[region_index]
    rng = random.Random(f"{spec.seed}:{acct.index}:{day.isoformat()}:{region}")
    g = _Gen(rng, acct, region, day)
    base = _day_start(day)
    n_files = spec.files_per_region_day
    slots_per_day = 86400 // _SLOT
    if n_files <= slots_per_day:
        slots = sorted(rng.sample(range(slots_per_day), n_files))
    else:
        slots = sorted(rng.choices(range(slots_per_day), k=n_files))
    if region_index == 0 and n_files and 1 not in slots:
        # A 00:05 delivery carries events from before midnight: event date != folder date.
        slots[0] = 1
        slots.sort()
    mean = max(1, spec.events_per_file)
    lo, hi = max(1, mean // 2), max(1, mean + mean // 2)
    out = []
    for i, slot in enumerate(slots):
        ts = base + slot * _SLOT
        records = _events(g, ts, rng.randint(lo, hi))
        if i == 0 and acct.index == 0 and region_index == 0:
            # One record a day from a schema version this code has never seen.
            records[0]["eventVersion"] = "1.99"
            records[0]["newFutureField"] = {"reason": "schema drift", "level": 1}
        out.append(_make_log(acct, region, ts, _token(rng, 16), records, keep))
    return out


def _insight_files(spec: SynthSpec, acct: _Account, day: datetime.date) -> list[tuple[str, bytes]]:
    rng = random.Random(f"{spec.seed}:{acct.index}:{day.isoformat()}:insight")
    if acct.index != 0 and rng.random() >= 0.2:
        return []
    region = rng.choice(spec.regions)
    base = _day_start(day)
    start = base + rng.randrange(1 * 3600, 18 * 3600) // 60 * 60
    end = start + rng.randrange(2, 30) * 60
    shared = _uuid(rng)
    error_rate = rng.random() < 0.4
    source, name = rng.choice(
        (
            ("ec2.amazonaws.com", "DescribeInstances"),
            ("iam.amazonaws.com", "GetRole"),
            ("ssm.amazonaws.com", "GetParameter"),
            ("s3.amazonaws.com", "ListBuckets"),
        )
    )
    role_arn = f"arn:aws:sts::{acct.id}:assumed-role/{acct.roles[0][0]}/{acct.roles[0][3][0]}"
    baseline = round(rng.uniform(2, 90), 10)
    peak = round(baseline * rng.uniform(6, 20), 1)
    out = []
    for state, ts in (("Start", start), ("End", end)):
        stats: dict[str, Any] = {"baseline": {"average": baseline}, "insight": {"average": peak}}
        if state == "End":
            stats["insightDuration"] = (end - start) // 60
            stats["baselineDuration"] = 10079
        details: dict[str, Any] = {
            "state": state,
            "eventSource": source,
            "eventName": name,
            "insightType": "ApiErrorRateInsight" if error_rate else "ApiCallRateInsight",
        }
        if error_rate:
            details["errorCode"] = "AccessDenied"
        details["insightContext"] = {
            "statistics": stats,
            "attributions": [
                {
                    "attribute": "userIdentityArn",
                    "insight": [{"value": role_arn, "average": peak}],
                    "baseline": [{"value": role_arn, "average": baseline}],
                },
                {
                    "attribute": "userAgent",
                    "insight": [{"value": _UA_BOTO, "average": peak}],
                    "baseline": [{"value": _UA_BOTO, "average": baseline}],
                },
                {
                    "attribute": "errorCode",
                    "insight": [{"value": "AccessDenied" if error_rate else "null", "average": peak}],
                    "baseline": [{"value": "null", "average": baseline}],
                },
            ],
        }
        rec = {
            "eventVersion": "1.08",
            "eventTime": _iso(ts),
            "awsRegion": region,
            "eventID": _uuid(rng),
            "eventType": "AwsCloudTrailInsight",
            "recipientAccountId": acct.id,
            "sharedEventID": shared,
            "insightDetails": details,
            "eventCategory": "Insight",
        }
        delivery = (ts // _SLOT + rng.randrange(1, 6)) * _SLOT
        t = time.gmtime(delivery)
        key = (
            f"{acct.root}CloudTrail-Insight/{region}/{t.tm_year:04d}/{t.tm_mon:02d}/{t.tm_mday:02d}/"
            f"{acct.id}_CloudTrail-Insight_{region}_{_stamp(delivery)}_{_token(rng, 16)}.json.gz"
        )
        out.append((key, _gzip(_encode({"Records": [rec]}))))
    return out


def _digests(
    spec: SynthSpec, acct: _Account, region: str, day: datetime.date, logs: list[_LogFile], salt: str = ""
) -> list[tuple[str, bytes]]:
    """Hourly digests over one day's log files of one account and region.

    As CloudTrail does, hashValue and previousDigestHashValue are the SHA-256 of the
    UNCOMPRESSED content (the JSON inside the gzip), never of the .json.gz bytes.

    The chain restarts every UTC day (the first digest of a day has null previousDigest*,
    as after logging is turned on) so a day's objects never depend on earlier days: a
    chain running across days would make day D depend on every day before it. Real
    CloudTrail chains run across days; verifiers treat a null previousDigest* as the
    start of a chain.
    """
    rng = random.Random(f"{spec.seed}:{acct.index}:{day.isoformat()}:{region}:digest{salt}")
    by_hour: dict[int, list[_LogFile]] = {}
    for lf in logs:
        by_hour.setdefault(lf.delivery // 3600, []).append(lf)
    out: list[tuple[str, bytes]] = []
    prev_key: str | None = None
    prev_hash: str | None = None
    prev_sig: str | None = None
    start = _iso(_day_start(day))
    for hour in sorted(by_hour):
        files = sorted(by_hour[hour], key=lambda f: f.key)
        end_ts = hour * 3600 + 3540 + rng.randrange(60)  # after the hour's last 5-minute slot
        t = time.gmtime(end_ts)
        key = (
            f"{acct.root}CloudTrail-Digest/{region}/{t.tm_year:04d}/{t.tm_mon:02d}/{t.tm_mday:02d}/"
            f"{acct.id}_CloudTrail-Digest_{region}_{spec.trail_name}_{region}_{_stamp_s(end_ts)}.json.gz"
        )
        doc: dict[str, Any] = {
            "awsAccountId": acct.id,
            "digestStartTime": start,
            "digestEndTime": _iso(end_ts),
            "digestS3Bucket": spec.bucket,
            "digestS3Object": key,
            "digestPublicKeyFingerprint": _FINGERPRINT,
            "digestSignatureAlgorithm": "SHA256withRSA",
            "newestEventTime": max(f.newest for f in files),
            "oldestEventTime": min(f.oldest for f in files),
            "previousDigestS3Bucket": spec.bucket if prev_key else None,
            "previousDigestS3Object": prev_key,
            "previousDigestHashValue": prev_hash,
            "previousDigestHashAlgorithm": "SHA-256" if prev_key else None,
            "previousDigestSignature": prev_sig,
            "logFiles": [
                {
                    "s3Bucket": spec.bucket,
                    "s3Object": f.key,
                    "hashValue": f.sha256,
                    "hashAlgorithm": "SHA-256",
                    "newestEventTime": f.newest,
                    "oldestEventTime": f.oldest,
                }
                for f in files
            ],
        }
        text = _encode(doc)
        out.append((key, _gzip(text)))
        prev_key, prev_hash, prev_sig = key, hashlib.sha256(text).hexdigest(), digest_signature(key)
        start = doc["digestEndTime"]
    return out


def _redelivery(spec: SynthSpec, acct: _Account, sources: list[_LogFile]) -> _LogFile | None:
    """A late re-delivery of `spec.duplicates` records, in the folder of the day after `end`.

    Living outside the generated days keeps every day a pure function of (seed, account,
    day) while still giving the exact number of duplicated eventIDs.
    """
    if spec.duplicates <= 0 or not sources:
        return None
    rng = random.Random(f"{spec.seed}:{acct.index}:{spec.end.isoformat()}:redelivery")
    picked: list[dict[str, Any]] = []
    for lf in sorted(sources, key=lambda f: f.delivery, reverse=True):
        assert lf.records is not None
        take = spec.duplicates - len(picked)
        picked.extend(rng.sample(lf.records, min(take, len(lf.records))))
        if len(picked) >= spec.duplicates:
            break
    rng.shuffle(picked)
    ts = _day_start(spec.end + datetime.timedelta(days=1)) + rng.randrange(1, 4) * _SLOT
    return _make_log(acct, spec.regions[0], ts, _token(rng, 16), picked)


class _Tally:
    """What one pass over the objects produced, for SynthSummary."""

    def __init__(self) -> None:
        self.log_files = 0
        self.digest_files = 0
        self.insight_files = 0
        self.events = 0
        self.duplicates = 0

    def add_log(self, lf: _LogFile) -> None:
        self.log_files += 1
        self.events += lf.n_records


def _account_objects(spec: SynthSpec, index: int, account: str, tally: _Tally) -> list[tuple[str, bytes]]:
    acct = _account((spec.seed, spec.prefix, spec.org_id), index, account)
    objects: list[tuple[str, bytes]] = []
    for day in spec.day_list():
        for ri, region in enumerate(spec.regions):
            keep = index == 0 and ri == 0 and day == spec.end and spec.duplicates > 0
            logs = _region_day_logs(spec, acct, day, ri, keep)
            for lf in logs:
                tally.add_log(lf)
                objects.append((lf.key, lf.body))
            if spec.digests:
                for d in _digests(spec, acct, region, day, logs):
                    tally.digest_files += 1
                    objects.append(d)
            extra = _redelivery(spec, acct, logs) if keep else None
            if extra is not None:
                tally.add_log(extra)
                tally.duplicates += extra.n_records
                objects.append((extra.key, extra.body))
                if spec.digests:
                    next_day = spec.end + datetime.timedelta(days=1)
                    for d in _digests(spec, acct, region, next_day, [extra], salt=":redelivery"):
                        tally.digest_files += 1
                        objects.append(d)
        if spec.insights and spec.regions:
            for obj in _insight_files(spec, acct, day):
                tally.insight_files += 1
                objects.append(obj)
    objects.sort(key=lambda kv: kv[0])
    return objects


def _generate(spec: SynthSpec, tally: _Tally) -> Iterator[tuple[str, bytes]]:
    accounts = [(i, a, _root_path(spec, i, a)) for i, a in enumerate(account_ids(spec))]
    # Account folders sort as keys do ("0123…/" before "o-…/"), so yielding one account
    # at a time keeps the whole stream sorted.
    accounts.sort(key=lambda x: x[2])
    for index, account, _root in accounts:
        # An account's digests sort before its log files yet hash them, so one account is
        # built at a time: memory is bounded by the largest account, not the bucket.
        yield from _account_objects(spec, index, account, tally)


def generate(spec: SynthSpec) -> Iterator[tuple[str, bytes]]:
    """Yield (key, gzip bytes) for every object of the bucket, keys sorted, deterministic by spec."""
    return _generate(spec, _Tally())


def _summary(spec: SynthSpec, tally: _Tally, objects: int, size: int) -> SynthSummary:
    return SynthSummary(
        objects=objects,
        log_files=tally.log_files,
        digest_files=tally.digest_files,
        insight_files=tally.insight_files,
        events=tally.events,
        # eventIDs are 122 random bits, so only the re-delivered records repeat.
        unique_events=tally.events - tally.duplicates,
        accounts=account_ids(spec),
        bytes=size,
    )


def write_to_dir(spec: SynthSpec, root: Path) -> SynthSummary:
    """Write the bucket's objects under `root` (key = relative path)."""
    root = Path(root)
    tally = _Tally()
    objects = size = 0
    made: set[Path] = set()
    for key, body in _generate(spec, tally):
        path = root / key
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        path.write_bytes(body)
        objects += 1
        size += len(body)
    return _summary(spec, tally, objects, size)


def write_to_s3(spec: SynthSpec, s3_client: Any, bucket: str) -> SynthSummary:
    """put_object every object into `bucket` (which must exist) with 8 upload threads."""
    tally = _Tally()
    objects = size = 0
    pending: set[Future[None]] = set()

    def put(key: str, body: bytes) -> None:
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key, "Body": body}
        if "/CloudTrail-Digest/" in key:
            # CloudTrail stores the digest signature as object metadata, not in the body.
            kwargs["Metadata"] = {"signature": digest_signature(key), "signature-algorithm": "SHA256withRSA"}
        s3_client.put_object(**kwargs)

    with ThreadPoolExecutor(max_workers=8) as pool:
        for key, body in _generate(spec, tally):
            # Bounded in-flight uploads keep memory flat however big the spec is.
            while len(pending) >= 64:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    f.result()
                pending -= done
            pending.add(pool.submit(put, key, body))
            objects += 1
            size += len(body)
        for f in pending:
            f.result()
    return _summary(spec, tally, objects, size)


def late_file(
    spec: SynthSpec,
    when: datetime.datetime,
    account_index: int = 0,
    region: str | None = None,
    n_events: int = 5,
) -> tuple[str, bytes]:
    """One extra log file for a delivery day already generated whose name timestamp is OLDER than files already written (arrives late): used by tests of incremental discovery.

    `when` is the name timestamp (naive = UTC); records happen in the 15 minutes before it.
    The file is not listed in any digest and its eventIDs are new.
    """
    if when.tzinfo is None:
        when = when.replace(tzinfo=_UTC)
    ts = int(when.astimezone(_UTC).timestamp()) // 60 * 60
    region = region or spec.regions[0]
    account = account_ids(spec)[account_index]
    acct = _account((spec.seed, spec.prefix, spec.org_id), account_index, account)
    rng = random.Random(f"{spec.seed}:{account_index}:{region}:{ts}:{n_events}:late")
    g = _Gen(rng, acct, region, datetime.datetime.fromtimestamp(ts, _UTC).date())
    records = _events(g, ts, max(1, n_events))
    lf = _make_log(acct, region, ts, _token(rng, 16), records)
    return lf.key, lf.body
