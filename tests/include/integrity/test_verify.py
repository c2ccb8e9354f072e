"""Integrity: the ledger checked against CloudTrail's digests, chains, signatures, and alerts of the gaps."""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from trailhouse import config, settings
from trailhouse.alerting import alerts
from trailhouse.config import Mav
from trailhouse.db import appdb
from trailhouse.deployment import Deployment
from trailhouse.dev.synth.files import digest_signature, generate, write_to_dir, write_to_s3
from trailhouse.dev.synth.world import SynthSpec, account_ids
from trailhouse.ingest.layout import KIND_DIGEST, KIND_LOG, parse_key
from trailhouse.ingest.source import LocalSource, S3Source
from trailhouse.ingest.transform import BatchResult, Outcome
from trailhouse.integrity import verify as integrity
from trailhouse.pipeline import steps as pipeline

END_DAY = date(2026, 11, 20)
START = datetime(2026, 11, 19, tzinfo=UTC)  # digests of both generated days
END = datetime(2026, 11, 21, tzinfo=UTC)
SPEC = SynthSpec(seed=5, accounts=2, days=2, end=END_DAY, files_per_region_day=4, events_per_file=6,
                       regions=("us-east-1", "eu-west-1"), duplicates=0, insights=False)


class World:
    """A synthetic bucket folder, a MAV on it, and an app database, loaded through the pipeline."""

    def __init__(self, root: Path) -> None:
        self.root = root
        write_to_dir(SPEC, root)
        self.mav = Mav(name="integ", path=str(root))
        config.save_mav(settings.load().mav_dir, self.mav)
        self.eng = appdb.engine(settings.load().app_db_url)
        self.runs = 0

    @property
    def source(self) -> LocalSource:
        return LocalSource(self.root)

    def keys(self, kind: str) -> list[str]:
        out = []
        for p in self.root.rglob("*.json.gz"):
            key = p.relative_to(self.root).as_posix()
            parsed = parse_key(key)
            if parsed is not None and parsed.kind == kind:
                out.append(key)
        return sorted(out)

    def load(self) -> None:
        """discover_step -> transform_step (through its XCom dict) -> the ledger rows commit_step writes."""
        self.runs += 1
        run_id = f"manual__{self.runs}"
        batches = pipeline.discover_step(Deployment(), self.mav, run_id, START, END)
        results = [BatchResult.from_dict(pipeline.transform_step(Deployment(), self.mav, run_id, b)) for b in batches]
        appdb.record_objects(self.eng, self.mav.name, run_id, (
            {"key": o.key, "etag": o.etag, "size": o.size, "kind": "CloudTrail", "status": o.status,
             "events": o.events, "reason": o.reason, "sha256": o.sha256}
            for r in results for o in r.outcomes
        ))

    def verify(self, start: datetime = START, end: datetime = END, **kw: Any) -> integrity.IntegrityReport:
        return integrity.verify(self.source, self.eng, self.mav, start, end, **kw)

    def rewrite(self, key: str, change: Callable[[dict[str, Any]], None]) -> None:
        path = self.root / key
        doc = json.loads(gzip.decompress(path.read_bytes()))
        change(doc)
        path.write_bytes(gzip.compress(json.dumps(doc).encode()))

    def doc(self, key: str) -> dict[str, Any]:
        return json.loads(gzip.decompress((self.root / key).read_bytes()))


@pytest.fixture
def world(tmp_path: Path, th_home: Path) -> World:
    return World(tmp_path / "bucket")


def kinds_of(report: integrity.IntegrityReport) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for f in report.findings:
        out.setdefault(f.kind, []).append(f.key)
    return out


def linked_digest(world: World) -> str:
    """A digest in the middle of a chain (its previousDigest* are set)."""
    return next(k for k in world.keys(KIND_DIGEST) if world.doc(k)["previousDigestS3Object"])


# --------------------------------------------------------------------------- (a) a complete load


def test_complete_load_verifies_clean(world: World) -> None:
    world.load()
    report = world.verify()
    assert report.findings == [], report.render()
    assert report.digests == len(world.keys(KIND_DIGEST)) > 0
    logs = world.keys(KIND_LOG)
    assert sorted(f.key for f in report.files) == logs, "every log file is listed by exactly one digest"
    assert {f.status for f in report.files} == {integrity.FILE_LOADED}
    # The synthetic chains restart every day (as after logging is turned on): a chain start
    # per account, region and day, never a finding.
    assert report.chain_starts == SPEC.accounts * len(SPEC.regions) * SPEC.days
    assert not report.signatures_verified and "no public keys" in report.signature_note
    rows = integrity.completeness(world.eng, world.mav, START, END)
    assert rows and all(r["complete"] for r in rows)
    assert sum(r["listed"] for r in rows) == sum(r["loaded"] for r in rows) == len(logs)
    assert {r["account_id"] for r in rows} == set(account_ids(SPEC))
    assert {(r["missing"], r["mismatched"], r["quarantined"]) for r in rows} == {(0, 0, 0)}
    # The report is for people and for JSON.
    text = report.render()
    assert "no findings" in text and "NOT verified" in text
    assert json.loads(json.dumps(report.to_dict()))["counts"]["files"]["loaded"] == len(logs)


def test_the_ledger_keeps_the_hash_of_the_uncompressed_content(world: World) -> None:
    world.load()
    key = world.keys(KIND_LOG)[0]
    with world.eng.connect() as conn:
        (sha,) = conn.execute(sa.select(appdb.ledger.c.sha256).where(appdb.ledger.c.key == key)).one()
    assert sha == hashlib.sha256(gzip.decompress((world.root / key).read_bytes())).hexdigest()


def test_a_window_starting_mid_chain_reads_the_previous_digest(world: World) -> None:
    world.load()
    start = START + timedelta(hours=7)
    report = world.verify(start=start)
    assert report.findings == [], report.render()
    first_days = {f.digest_key for f in report.files}
    assert all(parse_key(k).delivered_at >= start for k in first_days)  # type: ignore[union-attr,operator]
    assert report.chain_starts == SPEC.accounts * len(SPEC.regions)  # only the second day's starts


# --------------------------------------------------------------------------- (b) missing files


def test_a_file_gone_from_the_bucket_is_missing_and_a_hole_in_completeness(world: World) -> None:
    gone = world.keys(KIND_LOG)[3]
    (world.root / gone).unlink()
    world.load()
    report = world.verify()
    assert kinds_of(report) == {integrity.MISSING: [gone]}
    (finding,) = report.findings
    assert integrity.ABSENT in finding.detail and finding.key == gone
    parsed = parse_key(gone)
    assert parsed is not None and parsed.delivered_at is not None
    assert (finding.account_id, finding.region) == (parsed.account, parsed.region)
    assert gone in report.render()
    rows = integrity.completeness(world.eng, world.mav, START, END, report=report)
    hour = parsed.delivered_at.replace(minute=0).isoformat()
    (hole,) = [r for r in rows if not r["complete"]]
    assert (hole["account_id"], hole["region"], hole["hour"]) == (parsed.account, parsed.region, hour)
    assert (hole["missing"], hole["missing_keys"], hole["loaded"]) == (1, [gone], hole["listed"] - 1)
    # completeness without a report verifies by itself (opening the MAV's source).
    assert integrity.completeness(world.eng, world.mav, START, END) == rows


def test_a_file_in_the_bucket_but_not_in_the_ledger_is_not_yet_loaded(world: World) -> None:
    world.load()
    key = world.keys(KIND_LOG)[5]
    with world.eng.begin() as conn:
        conn.execute(appdb.ledger.delete().where(appdb.ledger.c.key == key))
    (finding,) = world.verify().findings
    assert (finding.kind, finding.key) == (integrity.MISSING, key)
    assert integrity.NOT_YET_LOADED in finding.detail


def test_a_quarantined_listed_file_is_a_finding(world: World) -> None:
    broken = world.keys(KIND_LOG)[2]
    (world.root / broken).write_bytes((world.root / broken).read_bytes()[:40])  # truncated gzip
    world.load()
    (finding,) = world.verify().findings
    assert (finding.kind, finding.key) == (integrity.QUARANTINED, broken)
    assert "gzip" in finding.detail


# --------------------------------------------------------------------------- (c) mismatches


def test_content_changed_before_load_or_a_wrong_ledger_hash_is_a_mismatch(world: World) -> None:
    changed, corrupted = world.keys(KIND_LOG)[1], world.keys(KIND_LOG)[6]

    def edit(doc: dict[str, Any]) -> None:
        doc["Records"][0]["sourceIPAddress"] = "203.0.113.66"  # someone rewrote the file before it was loaded

    world.rewrite(changed, edit)
    world.load()
    with world.eng.begin() as conn:
        conn.execute(appdb.ledger.update().where(appdb.ledger.c.key == corrupted).values(sha256="0" * 64))
    report = world.verify()
    assert kinds_of(report) == {integrity.MISMATCH: sorted([changed, corrupted])}
    assert all("SHA-256" in f.detail for f in report.findings)
    rows = integrity.completeness(world.eng, world.mav, START, END, report=report)
    assert sum(r["mismatched"] for r in rows) == 2 and sum(r["missing"] for r in rows) == 0


def test_files_ledgered_before_hashes_were_kept_are_not_compared(world: World) -> None:
    world.load()
    with world.eng.begin() as conn:
        conn.execute(appdb.ledger.update().where(appdb.ledger.c.kind == KIND_LOG).values(sha256=None))
    report = world.verify()
    assert report.findings == []
    assert {f.status for f in report.files} == {integrity.FILE_UNHASHED}
    assert any("migration 0004" in n for n in report.notes)


# --------------------------------------------------------------------------- (d) chains


def test_an_altered_previous_digest_hash_breaks_the_chain(world: World) -> None:
    target = linked_digest(world)
    successors = [k for k in world.keys(KIND_DIGEST) if world.doc(k)["previousDigestS3Object"] == target]
    world.rewrite(target, lambda doc: doc.update(previousDigestHashValue="f" * 64))
    world.load()
    report = world.verify()
    broken = kinds_of(report)[integrity.CHAIN_BROKEN]
    assert target in broken
    finding = next(f for f in report.findings if f.key == target)
    assert "previousDigestHashValue" in finding.detail
    # Editing the digest changed its content, so the next digest's link to it breaks too.
    assert sorted(broken) == sorted([target, *successors]) and set(kinds_of(report)) == {integrity.CHAIN_BROKEN}


def test_a_deleted_digest_breaks_the_chain_and_a_recorded_one_gone_is_missing(world: World) -> None:
    digests = world.keys(KIND_DIGEST)
    middle = linked_digest(world)
    successor = next((k for k in digests if world.doc(k)["previousDigestS3Object"] == middle), None)
    assert successor is not None
    world.load()
    (world.root / middle).unlink()  # deleted after discover recorded it
    report = world.verify()
    kinds = kinds_of(report)
    assert kinds[integrity.DIGEST_MISSING] == [middle]
    assert kinds[integrity.CHAIN_BROKEN] == [successor]
    assert integrity.ABSENT in next(f for f in report.findings if f.key == successor).detail


# --------------------------------------------------------------------------- (e) signatures


def _aws_string_to_sign(doc: dict[str, Any], text: bytes) -> bytes:
    # As documented by AWS (and done by `aws cloudtrail validate-logs`), independently of the code.
    prev = doc["previousDigestSignature"] if doc["previousDigestSignature"] is not None else "null"
    return (f"{doc['digestEndTime']}\n{doc['digestS3Bucket']}/{doc['digestS3Object']}\n"
            f"{hashlib.sha256(text).hexdigest()}\n{prev}").encode()


@pytest.fixture(scope="module")
def rsa_key() -> Any:
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def sign_all(world: World, key: Any) -> tuple[dict[str, str], dict[str, bytes]]:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    sigs, fingerprints = {}, set()
    for digest in world.keys(KIND_DIGEST):
        text = gzip.decompress((world.root / digest).read_bytes())
        doc = json.loads(text)
        fingerprints.add(doc["digestPublicKeyFingerprint"])
        sigs[digest] = key.sign(_aws_string_to_sign(doc, text), padding.PKCS1v15(), hashes.SHA256()).hex()
    # ListPublicKeys returns the key's DER bytes.
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    return sigs, {fp: der for fp in fingerprints}


def test_signatures_verify_and_tampering_is_found(world: World, rsa_key: Any) -> None:
    sigs, keys = sign_all(world, rsa_key)
    world.load()
    good = world.verify(public_keys=keys, signature_for=sigs.get)
    assert good.findings == [] and good.signatures_verified, good.render()
    assert f"{len(sigs)} of {len(sigs)}" in good.signature_note
    # PEM works as well as DER.
    from cryptography.hazmat.primitives import serialization

    pem = rsa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert world.verify(public_keys={fp: pem for fp in keys}, signature_for=sigs.get).findings == []

    # A digest edited after signing (a log file taken out of it), and a swapped signature.
    edited, swapped = world.keys(KIND_DIGEST)[4], world.keys(KIND_DIGEST)[9]
    world.rewrite(edited, lambda doc: doc["logFiles"].pop())
    sigs[swapped] = sigs[world.keys(KIND_DIGEST)[10]]
    bad = world.verify(public_keys=keys, signature_for=sigs.get)
    assert sorted(kinds_of(bad)[integrity.SIGNATURE_INVALID]) == sorted([edited, swapped])
    assert "does not verify" in next(f for f in bad.findings if f.key == edited).detail
    # An unknown fingerprint cannot be trusted either.
    other = world.verify(public_keys={"0" * 32: keys[next(iter(keys))]}, signature_for=sigs.get)
    assert len(kinds_of(other)[integrity.SIGNATURE_INVALID]) == len(sigs)


def test_without_keys_or_metadata_the_report_says_signatures_were_not_verified(world: World, rsa_key: Any) -> None:
    sigs, keys = sign_all(world, rsa_key)
    world.load()
    empty = world.verify(public_keys={}, signature_for=sigs.get)
    assert not empty.signatures_verified and empty.findings == [] and "no public keys" in empty.signature_note
    no_keys = world.verify(keys_note="no cloudtrail:ListPublicKeys permission for the MAV's key pair in us-east-1")
    assert not no_keys.signatures_verified and "ListPublicKeys permission" in no_keys.signature_note
    assert "NOT verified" in no_keys.render()
    # A folder keeps no S3 metadata: with keys but no signatures, nothing is verified, and it says why.
    no_meta = world.verify(public_keys=keys)
    assert not no_meta.signatures_verified and no_meta.findings == []
    assert "without signature metadata" in no_meta.signature_note and "local folder" in no_meta.signature_note


def test_fetch_public_keys_gives_none_with_the_reason(world: World) -> None:
    from botocore.exceptions import ClientError

    keys, why = integrity.public_keys_or_reason(world.mav, START, END)
    assert keys is None and "local folder" in why
    assert integrity.fetch_public_keys(world.mav, START, END) is None

    s3_mav = Mav(name="s3mav", bucket="b", region="eu-west-1")

    class Denied:
        def list_public_keys(self, **_: Any) -> Any:
            raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "not authorized"}}, "ListPublicKeys")

    keys, why = integrity.public_keys_or_reason(s3_mav, START, END, regions=["eu-west-1"], client_for=lambda r: Denied())
    assert keys is None and "no cloudtrail:ListPublicKeys permission" in why

    class Paged:
        def __init__(self) -> None:
            self.calls: list[dict[str, Any]] = []

        def list_public_keys(self, **kw: Any) -> Any:
            self.calls.append(kw)
            if "NextToken" not in kw:
                return {"PublicKeyList": [{"Fingerprint": "a" * 32, "Value": b"k1"}], "NextToken": "t"}
            return {"PublicKeyList": [{"Fingerprint": "b" * 32, "Value": b"k2"}]}

    client = Paged()
    # Regions default to those of the window's digests in the ledger.
    world.load()
    keys = integrity.fetch_public_keys(s3_mav.model_copy(update={"name": world.mav.name}), START, END,
                                       eng=world.eng, client_for=lambda r: client)
    assert keys == {"a" * 32: b"k1", "b" * 32: b"k2"}
    assert len(client.calls) == 2 * len(SPEC.regions)


def test_fetch_public_keys_on_moto_is_not_implemented() -> None:
    boto3 = pytest.importorskip("boto3")
    moto = pytest.importorskip("moto")
    with moto.mock_aws():
        keys, why = integrity.public_keys_or_reason(
            Mav(name="m", bucket="b"), START, END, regions=["us-east-1"],
            client_for=lambda r: boto3.client("cloudtrail", region_name=r),
        )
    assert keys is None and "not implemented" in why


def test_s3_signature_metadata_is_the_default_for_s3_sources() -> None:
    boto3 = pytest.importorskip("boto3")
    moto = pytest.importorskip("moto")
    small = SynthSpec(end=END_DAY, accounts=1, days=1, files_per_region_day=1, events_per_file=3,
                            regions=("us-east-1",), duplicates=0, insights=False)
    with moto.mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=small.bucket)
        write_to_s3(small, s3, small.bucket)
        source = S3Source(s3, small.bucket)
        digest = next(k for k, _ in generate(small) if "/CloudTrail-Digest/" in k)
        log_key = next(k for k, _ in generate(small) if "/CloudTrail/" in k)
        signature_for = integrity.default_signature_for(source)
        assert signature_for(digest) == digest_signature(digest)
        assert signature_for(log_key) is None
    assert integrity.default_signature_for(LocalSource(Path("/")))("any") is None


# --------------------------------------------------------------------------- (f) alerts


def test_findings_become_deduplicated_alerts_of_the_integrity_rule(world: World) -> None:
    logs = world.keys(KIND_LOG)
    first = parse_key(logs[0])
    same_folder = [k for k in logs if k.rsplit("/", 1)[0] == logs[0].rsplit("/", 1)[0]]
    gone = same_folder[:2]
    for key in gone:
        (world.root / key).unlink()
    world.load()
    report = world.verify()
    assert sorted(kinds_of(report)[integrity.MISSING]) == sorted(gone)
    matches = integrity.findings_to_matches(report, world.mav)
    assert [m.rule.id for m in matches] == [integrity.RULE_ID] * len(gone)
    ev = matches[0].event
    assert ev["event_id"] == f"integrity:missing:{report.findings[0].key}"
    assert ev["event_name"] == "missing" and ev["account_id"] == first.account and ev["principal"] is None  # type: ignore[union-attr]
    assert ev["event_time"].tzinfo is not None
    created = alerts.store(world.eng, matches, mav=world.mav.name, run_id="integrity__1", notify=True)
    assert created
    stored = alerts.query(world.eng, rule=integrity.RULE_ID)
    assert {a["severity"] for a in stored} == {"high"} and {a["event_name"] for a in stored} == {"missing"}
    assert sum(a["count"] for a in stored) == len(gone)
    linked = {e for a in stored for e in alerts.event_ids(world.eng, a["id"])}
    assert linked == {f"integrity:missing:{k}" for k in gone}
    # The next check finds the same gaps: no new alert, same counts.
    again = integrity.findings_to_matches(world.verify(), world.mav.name)
    assert alerts.store(world.eng, again, mav=world.mav.name, run_id="integrity__2", notify=True) == []
    assert [(a["id"], a["count"]) for a in alerts.query(world.eng, rule=integrity.RULE_ID)] == [
        (a["id"], a["count"]) for a in stored
    ]
    # Filtering by kind.
    assert integrity.findings_to_matches(report, world.mav, kinds=[integrity.MISMATCH]) == []


# --------------------------------------------------------------------------- transform's XCom


def test_batch_results_carry_the_hash_and_read_the_older_six_field_form() -> None:
    result = BatchResult(staged=None, outcomes=[Outcome("k", "e", 1, "loaded", 3, "", "ab" * 32)])
    d = result.to_dict()
    assert d["outcomes"] == [["k", "e", 1, "loaded", 3, "", "ab" * 32]]
    assert BatchResult.from_dict(json.loads(json.dumps(d))).outcomes == result.outcomes
    old = {**d, "outcomes": [["k", "e", 1, "quarantined", 0, "bad gzip"]]}
    assert BatchResult.from_dict(old).outcomes == [Outcome("k", "e", 1, "quarantined", 0, "bad gzip", "")]
