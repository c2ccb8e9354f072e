"""CloudTrail log file integrity: the ledger checked against CloudTrail's own digest files.

Every hour CloudTrail writes, per account, region and trail, a digest file listing the log
files it delivered with the SHA-256 of each one's UNCOMPRESSED content (`hashValue`), and
linking the previous digest (`previousDigestS3Object`, and `previousDigestHashValue`: the
SHA-256 of the previous digest's uncompressed content). The digest itself is signed
(SHA256withRSA) and the hex signature is kept in its S3 object metadata
(`x-amz-meta-signature`); the public keys come from cloudtrail:ListPublicKeys.

`verify` reads the digests the ledger recorded for a window and answers, for every log file
they list: was it loaded (ledger status `loaded`), with the content CloudTrail hashed (the
`sha256` transform ledgered), or is it quarantined or missing? It also follows each chain
and, given the public keys, checks the signatures as `aws cloudtrail validate-logs` does.
`findings_to_matches` turns what it finds into alerts of the built-in rule
`trailhouse.integrity-gap`, stored through `alerts.store` like any rule's matches.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from trailhouse.alerting import rules
from trailhouse.common import chunks, redact_access_keys
from trailhouse.config import Mav
from trailhouse.db import appdb
from trailhouse.ingest import records
from trailhouse.ingest.clients import cloudtrail_clients, open_source
from trailhouse.ingest.discover import days_between
from trailhouse.ingest.layout import KIND_DIGEST, parse_key
from trailhouse.ingest.source import S3Source, Source

log = logging.getLogger(__name__)

# Finding kinds (an alert's event_name).
MISSING = "missing"  # a listed log file the ledger does not have
QUARANTINED = "quarantined"  # a listed log file that could not be loaded
MISMATCH = "mismatch"  # loaded content differs from what CloudTrail hashed
CHAIN_BROKEN = "chain-broken"  # a digest does not link to the previous one
SIGNATURE_INVALID = "signature-invalid"  # a digest's signature does not verify
DIGEST_MISSING = "digest-missing"  # a digest the ledger recorded is gone from the bucket
DIGEST_INVALID = "digest-invalid"  # a digest that cannot be read, or was moved
FINDING_KINDS = (MISSING, QUARANTINED, MISMATCH, CHAIN_BROKEN, SIGNATURE_INVALID, DIGEST_MISSING, DIGEST_INVALID)

# Status of one listed log file (FileCheck.status).
FILE_LOADED = "loaded"
FILE_UNHASHED = "unhashed"  # loaded before the ledger kept hashes (migration 0004): not comparable
FILE_STATUSES = (FILE_LOADED, FILE_UNHASHED, QUARANTINED, MISSING, MISMATCH)

NOT_YET_LOADED = "not yet loaded (the file is in the bucket)"
ABSENT = "absent from the bucket"

RULE_ID = "trailhouse.integrity-gap"
RULE = rules.Rule(
    id=RULE_ID,
    title="CloudTrail integrity gap: a log file or digest does not match CloudTrail's digests",
    description=(
        "Raised by the integrity check, not by SQL over events: a log file CloudTrail listed in a digest "
        "is missing, quarantined, or was loaded with other content than CloudTrail hashed; or the digest "
        "chain is broken, or a digest signature does not verify. The alert's event_name is the finding "
        "kind and each linked event id is integrity:<kind>:<key>."
    ),
    severity="high",
    references=["https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-log-file-custom-validation.html"],
    tags=["integrity", "cloudtrail"],
    condition="FALSE",  # never runs as SQL
    dedup=rules.Dedup(fields=["account_id", "region", "event_name"], period_minutes=60),
)

# <account>_CloudTrail-Digest_<region>_<trail name>_<home region>_<end stamp>[_backfill].json.gz
_DIGEST_NAME_RE = re.compile(
    r"^\d{12}_CloudTrail-Digest_[a-z0-9-]+_(?P<trail>.+)_\d{8}T\d{6}Z(?P<backfill>_backfill)?\.json(?:\.gz)?$"
)

SignatureFor = Callable[[str], "str | None"]


# --------------------------------------------------------------------------- report


@dataclass(frozen=True)
class Finding:
    """One integrity problem (FINDING_KINDS): a file missing, quarantined or changed against its
    digest, a broken digest chain, a bad signature, or a digest missing or unreadable.
    """
    kind: str
    key: str  # the log file; the digest itself for chain, signature and digest findings
    digest_key: str
    account_id: str | None
    region: str | None
    detail: str
    event_time: datetime | None  # the digest's newestEventTime, else its digestEndTime

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "key": self.key, "digest_key": self.digest_key, "account_id": self.account_id,
            "region": self.region, "detail": self.detail,
            "event_time": self.event_time.isoformat() if self.event_time else None,
        }


@dataclass(frozen=True)
class FileCheck:
    """One log file a digest lists, and what the ledger says about it."""

    key: str
    digest_key: str
    account_id: str | None
    region: str | None
    hour: datetime | None  # delivery hour, from the file name
    status: str  # one of FILE_STATUSES


@dataclass
class IntegrityReport:
    """The result of verifying a MAV's digests over a time range: counts and findings."""
    mav: str
    start: datetime
    end: datetime
    digests: int = 0  # digest files read and parsed
    chain_starts: int = 0  # digests with null previousDigest* (logging or validation turned on)
    findings: list[Finding] = field(default_factory=list)
    files: list[FileCheck] = field(default_factory=list)
    signatures_verified: bool = False
    signature_note: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def counts(self) -> dict[str, Any]:
        by_status = {s: 0 for s in FILE_STATUSES}
        for f in self.files:
            by_status[f.status] += 1
        by_kind = {k: 0 for k in FINDING_KINDS}
        for finding in self.findings:
            by_kind[finding.kind] += 1
        return {
            "digests": self.digests,
            "chain_starts": self.chain_starts,
            "log_files_listed": len(self.files),
            "files": by_status,
            "findings": sum(by_kind.values()),
            "findings_by_kind": by_kind,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "mav": self.mav,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "ok": self.ok,
            "counts": self.counts,
            "signatures_verified": self.signatures_verified,
            "signature_note": self.signature_note,
            "notes": list(self.notes),
            "findings": [f.to_dict() for f in self.findings],
        }

    def render(self) -> str:
        c = self.counts
        files = c["files"]
        lines = [
            f"Integrity of MAV {self.mav}: digests delivered in [{self.start:%Y-%m-%d %H:%M}, {self.end:%Y-%m-%d %H:%M}) UTC",
            f"  {self.digests} digest files ({self.chain_starts} chain starts), {c['log_files_listed']} log files listed: "
            f"{files[FILE_LOADED]} loaded and matching, {files[FILE_UNHASHED]} loaded without a hash to compare, "
            f"{files[MISMATCH]} mismatched, {files[QUARANTINED]} quarantined, {files[MISSING]} missing",
            f"  signatures: {'verified' if self.signatures_verified else 'NOT verified'} ({self.signature_note})",
        ]
        lines += [f"  note: {n}" for n in self.notes]
        if not self.findings:
            lines.append("  no findings")
            return "\n".join(lines)
        lines.append(f"  {len(self.findings)} findings:")
        rows = [("kind", "account", "region", "key", "detail")]
        rows += [(f.kind, f.account_id or "-", f.region or "-", f.key, f.detail) for f in self.findings]
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        for r in rows:
            lines.append("  " + "  ".join(r[i].ljust(widths[i]) for i in range(4)) + "  " + r[4])
        return "\n".join(lines)


# --------------------------------------------------------------------------- digests


@dataclass
class _Digest:
    key: str
    doc: dict[str, Any]
    sha256: str  # of the uncompressed content
    account: str | None
    region: str | None
    trail: str
    backfill: bool
    end_time: datetime | None

    @property
    def chain(self) -> tuple[str | None, str | None, str]:
        return (self.account, self.region, self.trail)

    @property
    def event_time(self) -> datetime | None:
        return _time(self.doc.get("newestEventTime")) or self.end_time


def _time(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


def _hash_uncompressed(data: bytes, key: str) -> tuple[bytes, str]:
    text = records.decompress(data, key)
    return text, hashlib.sha256(text).hexdigest()


def _aws_error(exc: Exception) -> tuple[str, str]:
    """(code, message) of a botocore ClientError; ("", str(exc)) for anything else."""
    response = getattr(exc, "response", None)
    error = response.get("Error", {}) if isinstance(response, dict) else {}
    return str(error.get("Code", "")), str(error.get("Message", "")) or str(exc)


def _not_found(exc: Exception) -> bool:
    return isinstance(exc, FileNotFoundError) or _aws_error(exc)[0] in ("NoSuchKey", "404", "NotFound")


def _ledger_digest_keys(eng: sa.Engine, mav: str, start: datetime, end: datetime) -> list[str]:
    """Digest keys the ledger recorded for the MAV whose delivery time is in [start, end)."""
    led = appdb.ledger
    q = sa.select(led.c.key).where(led.c.mav == mav, led.c.kind == KIND_DIGEST)
    days = days_between(start, end)
    if len(days) <= 62:
        # Narrow by the day folder in SQL; the exact delivery time is checked below.
        q = q.where(sa.or_(*[led.c.key.like(f"%/{KIND_DIGEST}/%/{d:%Y/%m/%d}/%") for d in days]))
    with eng.connect() as conn:
        keys = [k for (k,) in conn.execute(q)]
    out = []
    for key in keys:
        parsed = parse_key(key)
        when = parsed.delivered_at if parsed else None
        if when is not None and start <= when < end:
            out.append(key)
    return sorted(out)


def _ledger_rows(eng: sa.Engine, mav: str, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
    led = appdb.ledger
    keys = sorted(set(keys))
    out: dict[str, dict[str, Any]] = {}
    with eng.connect() as conn:
        for part in chunks(keys):
            q = sa.select(led.c.key, led.c.status, led.c.sha256, led.c.reason).where(
                led.c.mav == mav, led.c.key.in_(part)
            )
            out.update({r.key: dict(r._mapping) for r in conn.execute(q)})
    return out


def digest_regions(eng: sa.Engine, mav: Mav, start: datetime, end: datetime) -> list[str]:
    """The regions of the digests the ledger recorded for [start, end): where their keys live."""
    regions = {p.region for k in _ledger_digest_keys(eng, mav.name, start, end) if (p := parse_key(k))}
    return sorted(regions)


# --------------------------------------------------------------------------- signatures


def string_to_sign(doc: dict[str, Any], digest_sha256: str) -> bytes:
    """What CloudTrail signs: end time, bucket/key, SHA-256 of the uncompressed digest, previous signature."""
    previous = doc.get("previousDigestSignature")
    return (
        f"{doc.get('digestEndTime')}\n{doc.get('digestS3Bucket')}/{doc.get('digestS3Object')}\n"
        f"{digest_sha256}\n{'null' if previous is None else previous}"
    ).encode()


def load_public_key(value: bytes | str) -> Any:
    """An RSA public key from ListPublicKeys' Value (DER bytes), PEM, or base64 text of the DER."""
    from cryptography.hazmat.primitives import serialization

    raw = value.encode() if isinstance(value, str) else bytes(value)
    if raw.lstrip().startswith(b"-----BEGIN"):
        return serialization.load_pem_public_key(raw)
    try:
        return serialization.load_der_public_key(raw)
    except ValueError:
        return serialization.load_der_public_key(base64.b64decode(raw, validate=True))


def s3_signature_for(source: S3Source) -> SignatureFor:
    """x-amz-meta-signature of a digest object (HeadObject), None when it has none."""

    def signature(key: str) -> str | None:
        head = source.client.head_object(Bucket=source.bucket, Key=key)
        return (head.get("Metadata") or {}).get("signature")

    return signature


def default_signature_for(source: Source) -> SignatureFor:
    if isinstance(source, S3Source):
        return s3_signature_for(source)
    return lambda _key: None  # a folder keeps no S3 metadata


def _check_signature(d: _Digest, signature: str, keys: dict[str, Any], loaded: dict[str, Any]) -> str | None:
    """None when the signature verifies, else why not."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    fingerprint = d.doc.get("digestPublicKeyFingerprint")
    if fingerprint not in keys:
        return f"no public key with fingerprint {fingerprint} among the {len(keys)} keys given"
    if fingerprint not in loaded:
        try:
            loaded[fingerprint] = load_public_key(keys[fingerprint])
        except (ValueError, TypeError, binascii.Error) as exc:
            return f"the public key with fingerprint {fingerprint} cannot be loaded ({exc})"
    try:
        sig = bytes.fromhex(signature)
    except ValueError:
        return "the signature metadata is not hex"
    try:
        loaded[fingerprint].verify(sig, string_to_sign(d.doc, d.sha256), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return "SHA256withRSA signature does not verify: the digest was changed after CloudTrail signed it"
    return None


# --------------------------------------------------------------------------- verify


def verify(
    source: Source,
    eng: sa.Engine,
    mav: Mav,
    start: datetime,
    end: datetime,
    *,
    public_keys: dict[str, Any] | None = None,
    keys_note: str = "",
    signature_for: SignatureFor | None = None,
    threads: int = 16,
) -> IntegrityReport:
    """Check the log files listed by the digests delivered in [start, end) against the ledger.

    `public_keys` maps digestPublicKeyFingerprint to the key (fetch_public_keys); without it
    signatures are not verified and the report says why (`keys_note`, e.g. the reason
    fetch_public_keys gave). `signature_for(key)` returns a digest's hex signature; the
    default reads S3 metadata (x-amz-meta-signature) for an S3Source, nothing otherwise.
    """
    report = IntegrityReport(mav=mav.name, start=start, end=end)
    keys = _ledger_digest_keys(eng, mav.name, start, end)
    digests = _read_digests(source, keys, report, threads)
    report.digests = len(digests)
    _check_log_files(source, eng, mav, digests, report)
    _check_chains(source, digests, report)
    _check_signatures(source, digests, report, public_keys, keys_note, signature_for)
    order = {k: i for i, k in enumerate(FINDING_KINDS)}
    report.findings.sort(key=lambda f: (order[f.kind], f.account_id or "", f.region or "", f.key))
    return report


def _read_digests(source: Source, keys: Sequence[str], report: IntegrityReport, threads: int) -> list[_Digest]:
    def fetch(key: str) -> tuple[str, bytes | Exception]:
        try:
            return key, source.get(key)
        except Exception as exc:  # sorted out below: gone is a finding, anything else fails the check
            return key, exc

    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(keys)))) as pool:
        fetched = list(pool.map(fetch, keys))
    out = []
    for key, data in fetched:
        parsed = parse_key(key)
        account, region = (parsed.account, parsed.region) if parsed else (None, None)
        when = parsed.delivered_at if parsed else None
        if isinstance(data, Exception):
            if not _not_found(data):
                raise data
            report.findings.append(Finding(DIGEST_MISSING, key, key, account, region,
                                           "digest file recorded in the ledger is " + ABSENT, when))
            continue
        try:
            text, sha = _hash_uncompressed(data, key)
            doc = json.loads(text)
            if not isinstance(doc, dict) or not isinstance(doc.get("logFiles", []), list):
                raise ValueError("not a CloudTrail digest (no logFiles list)")
        except (records.BadObject, ValueError) as exc:
            report.findings.append(Finding(DIGEST_INVALID, key, key, account, region, f"unreadable digest: {exc}", when))
            continue
        if doc.get("digestS3Object") != key:
            report.findings.append(Finding(
                DIGEST_INVALID, key, key, account, region,
                f"digestS3Object is {doc.get('digestS3Object')!r}: the digest was moved or copied from elsewhere", when,
            ))
            continue
        m = _DIGEST_NAME_RE.match(parsed.name) if parsed else None
        out.append(_Digest(
            key=key, doc=doc, sha256=sha, account=account, region=region,
            trail=m["trail"] if m else "", backfill=bool(m and m["backfill"]),
            end_time=_time(doc.get("digestEndTime")) or when,
        ))
    return out


def _check_log_files(source: Source, eng: sa.Engine, mav: Mav, digests: list[_Digest], report: IntegrityReport) -> None:
    listed = [(d, lf) for d in digests for lf in d.doc.get("logFiles") or [] if isinstance(lf, dict)]
    ledger = _ledger_rows(eng, mav.name, (str(lf.get("s3Object")) for _, lf in listed))
    missing: list[tuple[_Digest, str, FileCheck]] = []
    for d, lf in listed:
        key = str(lf.get("s3Object"))
        parsed = parse_key(key)
        when = parsed.delivered_at if parsed else None
        hour = when.replace(minute=0, second=0, microsecond=0) if when else None
        account = parsed.account if parsed else d.account
        region = parsed.region if parsed else d.region
        row = ledger.get(key)
        kind: str | None = None
        detail = ""
        if row is None or row["status"] not in (FILE_LOADED, QUARANTINED):
            status = MISSING  # the finding waits for the bucket check below
        elif row["status"] == QUARANTINED:
            status = kind = QUARANTINED
            detail = f"quarantined, not loaded: {row['reason']}"
        elif not row["sha256"]:
            status = FILE_UNHASHED
        elif str(row["sha256"]).lower() != str(lf.get("hashValue", "")).lower():
            status = kind = MISMATCH
            detail = f"loaded content has SHA-256 {row['sha256']}, the digest lists {lf.get('hashValue')}"
        else:
            status = FILE_LOADED
        fc = FileCheck(key, d.key, account, region, hour, status)
        report.files.append(fc)
        if status == MISSING:
            missing.append((d, "" if row is None else f"ledger status {row['status']!r}", fc))
        elif kind is not None:
            report.findings.append(Finding(kind, key, d.key, account, region, detail, d.event_time))
    # One LIST per folder tells a file still to load from one that is gone.
    folders = sorted({fc.key.rsplit("/", 1)[0] + "/" for _, _, fc in missing})
    present = {o.key for folder in folders for o in source.list_objects(folder)}
    for d, why, fc in missing:
        where = NOT_YET_LOADED if fc.key in present else ABSENT
        detail = f"listed by the digest but not in the ledger{f' ({why})' if why else ''}: {where}"
        report.findings.append(Finding(MISSING, fc.key, d.key, fc.account_id, fc.region, detail, d.event_time))
    if any(fc.status == FILE_UNHASHED for fc in report.files):
        report.notes.append("some listed files were loaded before the ledger kept hashes (migration 0004): "
                            "they are counted as loaded, their content is not compared")


def _check_chains(source: Source, digests: list[_Digest], report: IntegrityReport) -> None:
    by_key = {d.key: d for d in digests}
    chains: dict[tuple[str | None, str | None, str], list[_Digest]] = {}
    for d in digests:
        if d.backfill:
            continue  # backfill digests list late files; they are not links of the hourly chain
        chains.setdefault(d.chain, []).append(d)
    _epoch = datetime.min.replace(tzinfo=UTC)
    for chain in chains.values():
        chain.sort(key=lambda d: (d.end_time or _epoch, d.key))
        for i, d in enumerate(chain):
            prev_key = d.doc.get("previousDigestS3Object")
            if prev_key is None and d.doc.get("previousDigestHashValue") is None:
                # As after logging (or validation) is turned on: the start of a chain.
                report.chain_starts += 1
                continue
            problem = _link_problem(source, d, chain[i - 1] if i else None, by_key)
            if problem:
                report.findings.append(Finding(CHAIN_BROKEN, d.key, d.key, d.account, d.region, problem, d.event_time))


def _link_problem(source: Source, d: _Digest, before: _Digest | None, by_key: dict[str, _Digest]) -> str | None:
    prev_key = d.doc.get("previousDigestS3Object")
    expected = d.doc.get("previousDigestHashValue")
    if not prev_key or not expected:
        return "previousDigestS3Object or previousDigestHashValue is missing while the other is set"
    prev = by_key.get(prev_key)
    if prev is not None:
        actual = prev.sha256
    else:
        # The previous digest is outside the window, or gone: read it.
        prev_bucket = d.doc.get("previousDigestS3Bucket")
        if prev_bucket and prev_bucket != d.doc.get("digestS3Bucket"):
            return None  # the chain continues in another bucket, out of reach of this source
        try:
            _, actual = _hash_uncompressed(source.get(prev_key), prev_key)
        except records.BadObject as exc:
            return f"the previous digest {prev_key} is unreadable: {exc}"
        except Exception as exc:
            if _not_found(exc):
                return f"the previous digest {prev_key} is {ABSENT}"
            raise
    if before is not None and prev_key != before.key:
        return f"links to {prev_key}, but the trail's previous digest is {before.key}"
    if actual.lower() != str(expected).lower():
        return f"previousDigestHashValue {expected} is not the SHA-256 of {prev_key} ({actual})"
    return None


def _check_signatures(
    source: Source,
    digests: list[_Digest],
    report: IntegrityReport,
    public_keys: dict[str, Any] | None,
    keys_note: str,
    signature_for: SignatureFor | None,
) -> None:
    if public_keys is None:
        report.signatures_verified = False
        report.signature_note = keys_note or (
            "no public keys given: fetch them with fetch_public_keys (cloudtrail:ListPublicKeys)"
        )
        return
    if not public_keys:
        report.signature_note = "cloudtrail:ListPublicKeys returned no public keys for the window"
        return
    if not digests:
        report.signature_note = "no digest files in the window"
        return
    signature_for = signature_for or default_signature_for(source)
    loaded: dict[str, Any] = {}
    unsigned = checked = 0
    for d in digests:
        signature = signature_for(d.key)
        if not signature:
            unsigned += 1
            continue
        checked += 1
        problem = _check_signature(d, signature, public_keys, loaded)
        if problem:
            report.findings.append(Finding(SIGNATURE_INVALID, d.key, d.key, d.account, d.region, problem, d.event_time))
    report.signatures_verified = unsigned == 0
    note = f"{checked} of {len(digests)} digest signatures checked"
    if unsigned:
        why = "a local folder keeps no S3 metadata" if not isinstance(source, S3Source) else "x-amz-meta-signature"
        note += f"; {unsigned} without signature metadata ({why})"
    report.signature_note = note


# --------------------------------------------------------------------------- public keys


def _scrub(text: str) -> str:
    return redact_access_keys(text)


def public_keys_or_reason(
    mav: Mav,
    start: datetime,
    end: datetime,
    *,
    regions: Iterable[str] | None = None,
    eng: sa.Engine | None = None,
    client_for: Callable[[str], Any] | None = None,
) -> tuple[dict[str, Any] | None, str]:
    """({fingerprint: DER public key}, note) from cloudtrail:ListPublicKeys, or (None, why not).

    CloudTrail signs with one key pair per region, so the keys are listed in every region
    the window's digests come from (from the ledger unless `regions` is given).
    """
    if client_for is None:
        if mav.path is not None:
            return None, "local folder MAV: no AWS key pair to call cloudtrail:ListPublicKeys"
        try:
            client_for = cloudtrail_clients(mav)
        except Exception as exc:  # no connection, no boto3: say so instead of failing the check
            return None, f"no CloudTrail client for the MAV's key pair ({type(exc).__name__}: {_scrub(str(exc))})"
    if regions is None:
        if eng is None:
            raise ValueError("public_keys_or_reason: pass the regions, or the app database (eng) to read them from")
        regions = digest_regions(eng, mav, start, end) or [mav.region]
    region_list = sorted(set(regions))
    keys: dict[str, Any] = {}
    for region in region_list:
        try:
            client = client_for(region)
            token = None
            while True:
                kwargs: dict[str, Any] = {"StartTime": start, "EndTime": end}
                if token:
                    kwargs["NextToken"] = token
                page = client.list_public_keys(**kwargs)
                for k in page.get("PublicKeyList", []):
                    keys[k["Fingerprint"]] = k["Value"]
                token = page.get("NextToken")
                if not token:
                    break
        except NotImplementedError as exc:  # moto, in-process
            return None, f"cloudtrail:ListPublicKeys is not implemented by this endpoint ({exc})"
        except Exception as exc:
            code, message = _aws_error(exc)
            message = _scrub(message)
            if code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnauthorizedException"):
                return None, f"no cloudtrail:ListPublicKeys permission for the MAV's key pair in {region} ({code})"
            if code in ("NotImplemented", "InvalidAction", "UnknownOperationException") or "not been implemented" in message:
                return None, f"cloudtrail:ListPublicKeys is not implemented by this endpoint ({code or message})"
            return None, f"cloudtrail:ListPublicKeys failed in {region}: {code or type(exc).__name__}: {message}"
    return keys, f"{len(keys)} public keys from cloudtrail:ListPublicKeys in {', '.join(region_list)}"


def fetch_public_keys(
    mav: Mav,
    start: datetime,
    end: datetime,
    *,
    regions: Iterable[str] | None = None,
    eng: sa.Engine | None = None,
    client_for: Callable[[str], Any] | None = None,
) -> dict[str, Any] | None:
    """{fingerprint: public key} for verify(), or None (the reason is logged; public_keys_or_reason returns it)."""
    keys, note = public_keys_or_reason(mav, start, end, regions=regions, eng=eng, client_for=client_for)
    if keys is None:
        log.warning("digest signatures of MAV %s will not be verified: %s", mav.name, note)
    return keys


# --------------------------------------------------------------------------- completeness and alerts


def completeness(
    eng: sa.Engine,
    mav: Mav,
    start: datetime,
    end: datetime,
    *,
    source: Source | None = None,
    report: IntegrityReport | None = None,
) -> list[dict[str, Any]]:
    """Per account, region and delivery hour: files the digests list, loaded, missing, mismatched.

    `loaded` counts every listed file in the table (matching, mismatched or without a hash);
    `complete` is True when nothing listed is missing, quarantined or mismatched. Pass the
    report of a verify() of the same window to avoid reading the digests twice.
    """
    if report is None:
        if source is None:

            source = open_source(mav)
        report = verify(source, eng, mav, start, end)
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    for f in report.files:
        hour = f.hour.isoformat() if f.hour else ""
        row = rows.setdefault((f.account_id or "", f.region or "", hour), {
            "account_id": f.account_id, "region": f.region, "hour": hour, "listed": 0, "loaded": 0,
            "quarantined": 0, "missing": 0, "mismatched": 0, "unhashed": 0, "missing_keys": [],
        })
        row["listed"] += 1
        if f.status in (FILE_LOADED, FILE_UNHASHED, MISMATCH):
            row["loaded"] += 1
        if f.status == MISMATCH:
            row["mismatched"] += 1
        elif f.status == FILE_UNHASHED:
            row["unhashed"] += 1
        elif f.status == QUARANTINED:
            row["quarantined"] += 1
        elif f.status == MISSING:
            row["missing"] += 1
            row["missing_keys"].append(f.key)
    out = [rows[k] for k in sorted(rows)]
    for row in out:
        row["complete"] = row["missing"] == row["quarantined"] == row["mismatched"] == 0
    return out


def findings_to_matches(
    report: IntegrityReport, mav: Mav | str, *, kinds: Iterable[str] | None = None
) -> list[rules.Match]:
    """The findings as matches of `trailhouse.integrity-gap`, ready for alerts.store()."""
    name = mav if isinstance(mav, str) else mav.name
    wanted = set(kinds) if kinds is not None else None
    out = []
    for f in report.findings:
        if wanted is not None and f.kind not in wanted:
            continue
        when = f.event_time or report.end - timedelta(microseconds=1)
        event = {
            "event_id": f"integrity:{f.kind}:{f.key}",
            "event_time": when,
            "event_date": when.date(),
            "account_id": f.account_id,
            "region": f.region,
            "principal": None,
            "source_ip_address": None,
            "event_name": f.kind,
            "event_source": "trailhouse.integrity",
            "user_agent": None,
            "error_code": None,
            "mav": name,
        }
        out.append(rules._match(RULE, event))
    return out

