"""trailhouse.ingest.access against a moto server that enforces IAM policies, plus KMS edge cases."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT / "include") not in sys.path:  # the package lives in include/, as Airflow sees it
    sys.path.insert(0, str(ROOT / "include"))

from trailhouse.ingest.access import (  # noqa: E402
    POLICY_ACTIONS,
    AccessCheckError,
    AccessDeniedError,
    AccessReport,
    check_access,
    recommended_policy,
    require,
)

BUCKET = "ct-bucket"
OTHER = "other-bucket"
LOG_KEY = "AWSLogs/111122223333/CloudTrail/us-east-1/2026/11/27/x.json.gz"
# Sorts after LOG_KEY so the default sample stays the plain object.
KMS_KEY = "AWSLogs/111122223333/CloudTrail/us-east-1/2026/11/27/y-kms.json.gz"
KMS_ARN = "arn:aws:kms:us-east-1:123456789012:key/0e3c3f7a-1111-2222-3333-444455556666"
REGION = "us-east-1"
ADMIN = ("testing", "testing")  # any key works while moto is not enforcing yet


def _policy(actions_out: frozenset[str] = frozenset()) -> dict[str, Any]:
    text = (ROOT / "docs" / "iam-policy.json").read_text()
    policy = json.loads(text.replace("arn:aws:s3:::BUCKET", f"arn:aws:s3:::{BUCKET}"))
    for stmt in policy["Statement"]:
        stmt["Action"] = [a for a in stmt["Action"] if a not in actions_out]
    policy["Statement"] = [s for s in policy["Statement"] if s["Action"]]
    return policy


OVERPRIV = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
}
QUEUE = "trailhouse-queue"
QUEUE_ARN = f"arn:aws:sqs:{REGION}:123456789012:{QUEUE}"


def _queue_policy(actions: list[str]) -> dict[str, Any]:
    policy = _policy()
    policy["Statement"].append({"Sid": "TrailhouseQueue", "Effect": "Allow", "Action": actions, "Resource": QUEUE_ARN})
    return policy


USERS = {
    "good": _policy(),
    "queue-good": _queue_policy(["sqs:ReceiveMessage", "sqs:DeleteMessage"]),
    "queue-no-delete": _queue_policy(["sqs:ReceiveMessage"]),
    "restricted": _policy(frozenset({"s3:GetObject", "s3:GetBucketLogging"})),
    "overpriv": OVERPRIV,
    # One user per documented action, lacking only that one: proves moto enforces each
    # action separately and that the check attributes a denial to the right name.
    **{f"no-{a.split(':')[1]}": _policy(frozenset({a})) for a in POLICY_ACTIONS},
}

# Admin-phase requests, run in order before moto starts enforcing. moto counts every
# authorisable request (S3 and IAM alike) and enforces from request N+1 on, so N is the
# length of this list; the fixture then proves enforcement is on.
SETUP: list[tuple[str, str, dict[str, Any]]] = [
    ("s3", "create_bucket", {"Bucket": BUCKET}),
    ("s3", "put_object", {"Bucket": BUCKET, "Key": LOG_KEY, "Body": b"\x1f\x8b log"}),
    (
        "s3",
        "put_object",
        {
            "Bucket": BUCKET,
            "Key": KMS_KEY,
            "Body": b"\x1f\x8b kms",
            "ServerSideEncryption": "aws:kms",
            "SSEKMSKeyId": KMS_ARN,
        },
    ),
    ("s3", "create_bucket", {"Bucket": OTHER}),
    ("s3", "put_object", {"Bucket": OTHER, "Key": "payroll.csv", "Body": b"secret data"}),
    ("sqs", "create_queue", {"QueueName": QUEUE}),
]
for _name, _doc in USERS.items():
    SETUP += [
        ("iam", "create_user", {"UserName": _name}),
        (
            "iam",
            "put_user_policy",
            {"UserName": _name, "PolicyName": "trailhouse", "PolicyDocument": json.dumps(_doc)},
        ),
        ("iam", "create_access_key", {"UserName": _name}),
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _client(service: str, endpoint: str, key: tuple[str, str], **config: Any) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=key[0],
        aws_secret_access_key=key[1],
        config=Config(**config) if config else None,
    )


@pytest.fixture(scope="module")
def moto() -> Iterator[tuple[str, dict[str, tuple[str, str]]]]:
    """A moto server, seeded as admin, then enforcing; yields (endpoint, user -> key pair)."""
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(len(SETUP))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                # /moto-api/ is not an authorisable action, so polling spends no count.
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.05)

        clients = {s: _client(s, endpoint, ADMIN) for s in ("s3", "iam", "sqs")}
        keys: dict[str, tuple[str, str]] = {}
        for service, op, kwargs in SETUP:
            resp = getattr(clients[service], op)(**kwargs)
            if op == "create_access_key":
                ak = resp["AccessKey"]
                keys[ak["UserName"]] = (ak["AccessKeyId"], ak["SecretAccessKey"])

        # If the count were off, every test below would silently run unauthenticated.
        probe = _client("s3", endpoint, ("AKIAIOSFODNN7EXAMPLE", "not-a-real-secret"))
        with pytest.raises(ClientError) as info:
            probe.list_buckets()
        assert info.value.response["Error"]["Code"] == "InvalidAccessKeyId"

        yield endpoint, keys
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def reports(moto: tuple[str, dict[str, tuple[str, str]]]) -> dict[str, AccessReport]:
    endpoint, keys = moto
    return {
        name: check_access(_client("s3", endpoint, keys[name]), BUCKET) for name in ("good", "restricted", "overpriv")
    }


def _secrets(moto: tuple[str, dict[str, tuple[str, str]]]) -> list[str]:
    return [part for key in moto[1].values() for part in key]


def test_docs_policy_is_the_one_the_check_expects() -> None:
    assert _policy() == recommended_policy(BUCKET)
    sids = {s["Sid"]: s for s in _policy()["Statement"]}
    assert sids["TrailhouseObjectReads"]["Resource"] == f"arn:aws:s3:::{BUCKET}/*"
    assert sids["TrailhouseBucketReads"]["Resource"] == f"arn:aws:s3:::{BUCKET}"
    assert sids["TrailhouseListBuckets"] == {
        "Sid": "TrailhouseListBuckets",
        "Effect": "Allow",
        "Action": ["s3:ListAllMyBuckets"],
        "Resource": "*",
    }
    assert len(POLICY_ACTIONS) == 11


def test_good_user_passes_every_check(reports: dict[str, AccessReport]) -> None:
    report = reports["good"]
    assert report.ok, report.render()
    assert report.warnings() == []
    for action in POLICY_ACTIONS:
        check = report.check(action)
        assert check is not None, action
        assert check.status == "ok", check
    assert report.check("bucket-in-own-account").status == "ok"
    assert report.check("least-privilege").status == "ok"
    assert LOG_KEY in report.check("s3:GetObject").detail
    # A plain object: no kms:Decrypt to test.
    assert report.check("sse-kms").status == "skipped"
    assert report.check("kms:Decrypt") is None
    require(report)
    assert "RESULT: OK" in report.render()


def test_good_user_on_sse_kms_object(moto: tuple[str, dict[str, tuple[str, str]]]) -> None:
    endpoint, keys = moto
    report = check_access(_client("s3", endpoint, keys["good"]), BUCKET, sample_key=KMS_KEY)
    assert report.check("sse-kms").status == "ok"
    assert KMS_ARN in report.check("sse-kms").detail
    # moto serves SSE-KMS objects without consulting KMS, so Decrypt always looks granted
    # here; the refusal path is covered by test_kms_decrypt_refused below.
    assert report.check("kms:Decrypt").status == "ok"
    assert report.ok


@pytest.mark.parametrize("action", POLICY_ACTIONS)
def test_each_action_is_checked_by_name(action: str, moto: tuple[str, dict[str, tuple[str, str]]]) -> None:
    endpoint, keys = moto
    s3 = _client("s3", endpoint, keys[f"no-{action.split(':')[1]}"])
    # A given sample keeps s3:GetObject testable when s3:ListBucket is the one taken away.
    report = check_access(s3, BUCKET, sample_key=LOG_KEY)
    statuses = {a: report.check(a).status for a in POLICY_ACTIONS}
    assert statuses == {a: "missing" if a == action else "ok" for a in POLICY_ACTIONS}
    assert report.ok is (action not in ("s3:ListBucket", "s3:GetObject"))
    assert action in report.check(action).fix


def test_restricted_user_is_refused_with_the_statement_to_add(
    reports: dict[str, AccessReport], moto: tuple[str, dict[str, tuple[str, str]]]
) -> None:
    report = reports["restricted"]
    assert not report.ok
    assert [c.action for c in report.missing_required()] == ["s3:GetObject"]
    logging = report.check("s3:GetBucketLogging")
    assert logging.status == "missing"
    assert not logging.required
    assert logging in report.warnings()
    assert "s3:GetBucketLogging" in logging.fix
    assert report.check("s3:ListBucket").status == "ok"
    assert report.check("s3:GetBucketAcl").status == "ok"

    with pytest.raises(AccessDeniedError) as info:
        require(report)
    message = str(info.value)
    assert "s3:GetObject" in message
    statement = {
        "Sid": "TrailhouseGetObject",
        "Effect": "Allow",
        "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{BUCKET}/*",
    }
    assert json.dumps(statement) in message
    # The optional read is not a reason to fail the run.
    assert "GetBucketLogging" not in message
    for secret in _secrets(moto):
        assert secret not in message
        assert secret not in repr(info.value)

    text = report.render()
    assert "MISSING  s3:GetObject" in text
    assert "WARN     s3:GetBucketLogging" in text
    assert "RESULT: FAIL" in text


def test_overprivileged_user_gets_a_least_privilege_warning(
    reports: dict[str, AccessReport],
) -> None:
    report = reports["overpriv"]
    assert report.ok
    check = report.check("least-privilege")
    assert check.status == "warning"
    assert OTHER in check.detail
    assert "can read objects" in check.detail
    assert f"arn:aws:s3:::{BUCKET}/*" in check.fix
    assert check in report.warnings()
    require(report)


def test_no_secret_in_any_output(
    reports: dict[str, AccessReport], moto: tuple[str, dict[str, tuple[str, str]]]
) -> None:
    outputs = []
    for report in reports.values():
        outputs += [report.render(), json.dumps(report.to_dict()), repr(report), str(report)]
        try:
            require(report)
        except AccessDeniedError as exc:
            outputs += [str(exc), repr(exc)]
    blob = "\n".join(outputs)
    for secret in _secrets(moto):
        assert secret not in blob


def test_to_dict_is_json_safe(reports: dict[str, AccessReport]) -> None:
    data = json.loads(json.dumps(reports["restricted"].to_dict()))
    assert data["ok"] is False
    assert data["missing_required"] == ["s3:GetObject"]
    by_action = {c["action"]: c for c in data["checks"]}
    assert by_action["s3:GetBucketLogging"]["status"] == "missing"
    assert by_action["s3:GetBucketLogging"]["required"] is False
    assert by_action["s3:GetObject"]["required"] is True


def test_missing_bucket_is_named(moto: tuple[str, dict[str, tuple[str, str]]]) -> None:
    endpoint, keys = moto
    # s3:* on *: moto authorises before looking the bucket up, so only this user gets to
    # see NoSuchBucket (the scoped users get AccessDenied, as AWS would tell a stranger).
    report = check_access(_client("s3", endpoint, keys["overpriv"]), "no-such-bucket")
    assert not report.ok
    listing = report.check("s3:ListBucket")
    assert listing.status == "missing"
    assert "does not exist" in listing.detail
    assert report.check("bucket-in-own-account").status == "warning"


def test_rejected_key_raises_without_echoing_it(
    moto: tuple[str, dict[str, tuple[str, str]]],
) -> None:
    endpoint, keys = moto
    key_id = keys["good"][0]
    wrong = (key_id, "wrong-secret-wrong-secret-wrong-secret00")
    with pytest.raises(AccessCheckError) as info:
        check_access(_client("s3", endpoint, wrong), BUCKET)
    text = f"{info.value} {info.value!r}"
    assert "SignatureDoesNotMatch" in text
    assert key_id not in text
    assert wrong[1] not in text


def test_unreachable_endpoint_is_named() -> None:
    endpoint = f"http://127.0.0.1:{_free_port()}"
    s3 = _client("s3", endpoint, ADMIN, retries={"max_attempts": 0}, connect_timeout=1)
    with pytest.raises(AccessCheckError, match="cannot reach S3 endpoint") as info:
        check_access(s3, BUCKET)
    assert endpoint in str(info.value)


class _FakeS3:
    """Answers like S3 does for a key allowed by S3 but refused by KMS (moto cannot)."""

    def __init__(self, answers: dict[str, Callable[..., Any] | Exception]) -> None:
        self._answers = answers

    def __getattr__(self, op: str) -> Callable[..., Any]:
        def call(**kwargs: Any) -> Any:
            answer = self._answers.get(op, {})
            if isinstance(answer, Exception):
                raise answer
            return answer(**kwargs) if callable(answer) else answer

        return call


def test_kms_decrypt_refused() -> None:
    refused = ClientError(
        {
            "Error": {
                "Code": "AccessDenied",
                "Message": "User: arn:aws:iam::123456789012:user/trailhouse is not authorized "
                f"to perform: kms:Decrypt on resource: {KMS_ARN} because no identity-based "
                "policy allows the kms:Decrypt action",
            }
        },
        "GetObject",
    )
    s3 = _FakeS3(
        {
            "list_buckets": {"Buckets": [{"Name": BUCKET}]},
            "list_objects_v2": {"Contents": [{"Key": KMS_KEY}], "IsTruncated": False},
            "head_object": {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": KMS_ARN},
            "get_object": refused,
        }
    )
    report = check_access(s3, BUCKET)
    assert not report.ok
    assert report.check("s3:GetObject").status == "ok"
    decrypt = report.check("kms:Decrypt")
    assert decrypt.status == "missing"
    assert decrypt.required
    assert KMS_ARN in decrypt.fix
    with pytest.raises(AccessDeniedError, match="kms:Decrypt"):
        require(report)


def test_s3_denial_of_a_kms_named_object_is_not_a_kms_refusal() -> None:
    arn = f"arn:aws:s3:::{BUCKET}/{KMS_KEY}"
    refused = ClientError(
        {
            "Error": {
                "Code": "AccessDenied",
                "Message": "User: arn:aws:iam::123456789012:user/kms-reader is not authorized "
                f'to perform: s3:GetObject on resource: "{arn}" because no identity-based '
                "policy allows the s3:GetObject action",
            }
        },
        "GetObject",
    )
    s3 = _FakeS3(
        {
            "list_buckets": {"Buckets": [{"Name": BUCKET}]},
            "list_objects_v2": {"Contents": [{"Key": KMS_KEY}], "IsTruncated": False},
            "head_object": ClientError({"Error": {"Code": "403", "Message": "Forbidden"}}, "Head"),
            "get_object": refused,
        }
    )
    report = check_access(s3, BUCKET)
    assert [c.action for c in report.missing_required()] == ["s3:GetObject"]
    assert report.check("kms:Decrypt") is None


def test_empty_bucket_skips_get_object() -> None:
    s3 = _FakeS3(
        {
            "list_buckets": {"Buckets": [{"Name": BUCKET}]},
            "list_objects_v2": {"Contents": [], "IsTruncated": False},
        }
    )
    report = check_access(s3, BUCKET, "trails")
    assert report.prefix == "trails/"
    assert report.check("s3:GetObject").status == "skipped"
    assert "s3://ct-bucket/trails/AWSLogs/" in report.check("s3:GetObject").detail
    assert report.ok


@pytest.mark.parametrize(("user", "missing"), [("queue-good", []), ("queue-no-delete", ["sqs:DeleteMessage"]),
                                               ("good", ["sqs:ReceiveMessage", "sqs:DeleteMessage"])])
def test_a_mav_with_a_queue_is_checked_for_reading_and_deleting_its_messages(
        user: str, missing: list[str], moto: tuple[str, dict[str, tuple[str, str]]]) -> None:
    endpoint, keys = moto
    url = f"{endpoint}/123456789012/{QUEUE}"
    report = check_access(_client("s3", endpoint, keys[user]), BUCKET, queue=(_client("sqs", endpoint, keys[user]), url))
    assert [c.action for c in report.missing_required()] == missing
    assert {c.action for c in report.checks} >= {"sqs:ReceiveMessage", "sqs:DeleteMessage"}
    for c in report.missing_required():
        assert QUEUE_ARN in c.fix and c.action in c.fix
    with_no_queue = check_access(_client("s3", endpoint, keys[user]), BUCKET)
    assert with_no_queue.ok and with_no_queue.check("sqs:ReceiveMessage") is None
