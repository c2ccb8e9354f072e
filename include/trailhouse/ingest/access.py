"""Check, action by action, that an S3 key can read a CloudTrail bucket the way Trailhouse needs."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from trailhouse.common import S3_DENIED_CODES, redact_access_keys
from trailhouse.config import queue_url_parts

OK = "ok"
MISSING = "missing"
WARNING = "warning"
SKIPPED = "skipped"

# A MAV in notification mode (`queue_url`) reads and deletes the queue's messages.
QUEUE_ACTIONS = ("sqs:ReceiveMessage", "sqs:DeleteMessage")
# Without these nothing can be loaded; everything else only feeds the setup diagnostics.
# (The queue's are checked only for a MAV that has a queue.)
REQUIRED_ACTIONS = frozenset({"s3:ListBucket", "s3:GetObject", "kms:Decrypt", *QUEUE_ACTIONS})

# (action, client method, error codes that prove the call was authorised but found nothing)
BUCKET_READS: tuple[tuple[str, str, frozenset[str]], ...] = (
    ("s3:GetBucketLocation", "get_bucket_location", frozenset()),
    ("s3:GetBucketAcl", "get_bucket_acl", frozenset()),
    ("s3:GetBucketLogging", "get_bucket_logging", frozenset()),
    ("s3:GetBucketPolicy", "get_bucket_policy", frozenset({"NoSuchBucketPolicy"})),
    ("s3:GetBucketTagging", "get_bucket_tagging", frozenset({"NoSuchTagSet"})),
    ("s3:GetBucketWebsite", "get_bucket_website", frozenset({"NoSuchWebsiteConfiguration"})),
    ("s3:GetBucketNotification", "get_bucket_notification_configuration", frozenset()),
    (
        "s3:GetLifecycleConfiguration",
        "get_bucket_lifecycle_configuration",
        frozenset({"NoSuchLifecycleConfiguration"}),
    ),
)
BUCKET_ACTIONS = tuple(a for a, _, _ in BUCKET_READS) + ("s3:ListBucket",)
OBJECT_ACTIONS = ("s3:GetObject",)
ACCOUNT_ACTIONS = ("s3:ListAllMyBuckets",)
POLICY_ACTIONS = ACCOUNT_ACTIONS + BUCKET_ACTIONS + OBJECT_ACTIONS

# HEAD responses carry no body, so botocore only has the HTTP status as the error code.
_NO_KEY_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
# Codes meaning the key itself was refused: every later call would fail the same way, so
# the check stops instead of reporting eleven misleading "missing" lines.
_CREDENTIAL_CODES = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "TokenRefreshRequired",
        "InvalidClientTokenId",
    }
)
_NAME_ARN_RE = re.compile(r"arn:aws[a-z-]*:(?:s3|iam|sts):[^\s\"']*")
_KMS_RE = re.compile(r"kms:|KMS")

_LIST_PAGE = 1000
# Digest files (CloudTrail-Digest/) sort before CloudTrail/ and can fill whole pages.
_MAX_SAMPLE_PAGES = 5
_MAX_OTHER_BUCKETS = 3
_MAX_BUCKET_PAGES = 10


@dataclass(frozen=True)
class Check:
    action: str
    status: str
    detail: str
    fix: str = ""

    @property
    def required(self) -> bool:
        """Whether Trailhouse cannot load anything without this action (REQUIRED_ACTIONS)."""
        return self.action in REQUIRED_ACTIONS


@dataclass(frozen=True)
class AccessReport:
    bucket: str
    prefix: str
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        """True when no required action is missing (warnings allowed)."""
        return not self.missing_required()

    def missing_required(self) -> list[Check]:
        """The required checks whose action is missing, in check order."""
        return [c for c in self.checks if c.required and c.status == MISSING]

    def warnings(self) -> list[Check]:
        """Non-blocking problems: warnings and missing optional (diagnostic) reads."""
        return [c for c in self.checks if c.status == WARNING or (c.status == MISSING and not c.required)]

    def check(self, action: str) -> Check | None:
        """The check of `action`, or None if the report has none."""
        return next((c for c in self.checks if c.action == action), None)

    def render(self) -> str:
        """The report as a text table with a RESULT line and the fixes to apply."""
        width = max([len(c.action) for c in self.checks] + [6])
        lines = [f"Access check for s3://{self.bucket}/{self.prefix}AWSLogs/", ""]
        lines.append(f"  {'STATUS':<8} {'ACTION':<{width}}  DETAIL")
        for c in self.checks:
            lines.append(f"  {_label(c):<8} {c.action:<{width}}  {c.detail}")
        lines.append("")
        missing = self.missing_required()
        if missing:
            names = ", ".join(c.action for c in missing)
            lines.append(f"RESULT: FAIL, Trailhouse cannot load this bucket: {names} missing")
        elif self.warnings():
            lines.append("RESULT: OK with warnings, Trailhouse can load this bucket")
        else:
            lines.append("RESULT: OK")
        fixes = [c for c in self.checks if c.fix]
        if fixes:
            lines += ["", "Fixes:"]
            for c in fixes:
                kind = "required" if c.required and c.status == MISSING else "recommended"
                lines.append(f"  {c.action} ({kind}): {c.fix}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data: bucket, prefix, ok, missing_required and every check."""
        return {
            "bucket": self.bucket,
            "prefix": self.prefix,
            "ok": self.ok,
            "missing_required": [c.action for c in self.missing_required()],
            "checks": [
                {
                    "action": c.action,
                    "status": c.status,
                    "required": c.required,
                    "detail": c.detail,
                    "fix": c.fix,
                }
                for c in self.checks
            ],
        }


def _label(c: Check) -> str:
    if c.status == MISSING:
        return "MISSING" if c.required else "WARN"
    return {OK: "ok", WARNING: "WARN", SKIPPED: "skipped"}.get(c.status, c.status)


class AccessCheckError(RuntimeError):
    """The check itself could not run (endpoint unreachable, key rejected); says what to do."""


class AccessDeniedError(RuntimeError):
    """A required action is missing; the message names each one and the statement to add."""

    def __init__(self, message: str, missing: tuple[Check, ...] = ()) -> None:
        super().__init__(message)
        self.missing = missing


def recommended_policy(bucket: str) -> dict[str, Any]:
    """The setup guide's policy (docs/iam-policy.json) for one bucket."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "TrailhouseBucketReads",
                "Effect": "Allow",
                "Action": list(BUCKET_ACTIONS),
                "Resource": f"arn:aws:s3:::{bucket}",
            },
            {
                "Sid": "TrailhouseObjectReads",
                "Effect": "Allow",
                "Action": list(OBJECT_ACTIONS),
                "Resource": f"arn:aws:s3:::{bucket}/*",
            },
            {
                "Sid": "TrailhouseListBuckets",
                "Effect": "Allow",
                "Action": list(ACCOUNT_ACTIONS),
                "Resource": "*",
            },
        ],
    }


def _statement(action: str, resource: str) -> dict[str, str]:
    # A Sid of its own: IAM rejects a policy whose statements repeat a Sid, so the fix must
    # not reuse the guide's TrailhouseBucketReads/ObjectReads names.
    service, _, name = action.partition(":")
    sid = "Trailhouse" + ("Kms" if service == "kms" else "") + name
    return {"Sid": sid, "Effect": "Allow", "Action": action, "Resource": resource}


def _statement_fix(action: str, resource: str) -> str:
    statement = json.dumps(_statement(action, resource))
    return f"add this statement to the IAM user's policy (see docs/iam-policy.json): {statement}"


def _scrub(text: str) -> str:
    return redact_access_keys(text)


def _endpoint(s3: Any) -> str:
    meta = getattr(s3, "meta", None)
    url = getattr(meta, "endpoint_url", None) or "the default AWS S3 endpoint"
    parts = urlsplit(url)
    if parts.username or parts.password:  # never echo user:pass@ from a configured URL
        host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
        url = parts._replace(netloc=host).geturl()
    region = getattr(meta, "region_name", None)
    return f"{url} (region {region})" if region else url


@dataclass(frozen=True)
class _Error:
    code: str
    message: str

    @property
    def denied(self) -> bool:
        return self.code in S3_DENIED_CODES

    @property
    def kms(self) -> bool:
        # S3 reports a refused kms:Decrypt as AccessDenied whose message names a kms: action
        # or key ARN; a disabled or deleted key comes back as KMS.* codes. Bucket, key and
        # user ARNs are cut out first so a bucket, object or user named "...kms..." does
        # not pass for a KMS refusal.
        text = _NAME_ARN_RE.sub("", self.message)
        return self.code.startswith("KMS.") or (self.denied and bool(_KMS_RE.search(text)))

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" if self.message else self.code


def _call(s3: Any, op: str, **kwargs: Any) -> tuple[dict[str, Any], _Error | None]:
    """Run one client call; AccessDenied and friends come back as data, not exceptions."""
    try:
        return getattr(s3, op)(**kwargs), None
    except ClientError as exc:
        error = exc.response.get("Error", {})
        # Only Code and Message are used: error bodies such as SignatureDoesNotMatch also
        # carry AWSAccessKeyId and the string-to-sign.
        err = _Error(str(error.get("Code", "Unknown")), _scrub(str(error.get("Message", ""))))
        if err.code in _CREDENTIAL_CODES:
            raise AccessCheckError(
                f"S3 endpoint {_endpoint(s3)} rejected the access key ({err}); check the "
                "access key id and secret configured for Trailhouse's read-only IAM user "
                "(not shown here) and that the key is active; after rotating the key, store the new one "
                "with `trailhouse mav rotate-key <mav> --credentials-csv FILE`"
            ) from None
        return {}, err
    except NoCredentialsError:
        raise AccessCheckError(
            f"no AWS credentials were given to the S3 client for {_endpoint(s3)}; configure "
            "the access key of Trailhouse's read-only IAM user"
        ) from None
    except (BotoConnectionError, HTTPClientError) as exc:
        raise AccessCheckError(
            f"cannot reach S3 endpoint {_endpoint(s3)} ({type(exc).__name__}); check the "
            "endpoint URL, network/proxy settings and that the service is running"
        ) from exc
    except BotoCoreError as exc:
        raise AccessCheckError(
            f"S3 call {op} to {_endpoint(s3)} failed before reaching the bucket "
            f"({type(exc).__name__}: {_scrub(str(exc))})"
        ) from None


def _is_log_key(key: str) -> bool:
    # /CloudTrail/ excludes CloudTrail-Digest/ and CloudTrail-Insight/, which the loader
    # does not need to read for a sample.
    return "/CloudTrail/" in key and key.endswith(".json.gz")


def check_access(s3: Any, bucket: str, prefix: str = "", *, sample_key: str | None = None,
                 queue: tuple[Any, str] | None = None) -> AccessReport:
    """Try every action of docs/iam-policy.json with the client's key and report each one;
    with `queue` (an SQS client and the MAV's queue URL), the queue's actions too."""
    if prefix and not prefix.endswith("/"):
        # CloudTrail writes <prefix>/AWSLogs/..., the slash is implied by the trail setting.
        prefix += "/"
    checks: list[Check] = []

    bucket_names = _check_list_all_my_buckets(s3, bucket, checks)
    for action, op, permitted in BUCKET_READS:
        checks.append(_check_bucket_read(s3, bucket, action, op, permitted))
    found_key, listed = _check_list_bucket(s3, bucket, prefix, checks, want_sample=not sample_key)
    _check_objects(s3, bucket, prefix, sample_key or found_key, listed, checks)
    checks.append(_check_least_privilege(s3, bucket, bucket_names))
    if queue is not None:
        checks += check_queue(*queue)
    return AccessReport(bucket=bucket, prefix=prefix, checks=tuple(checks))


def _check_list_all_my_buckets(s3: Any, bucket: str, checks: list[Check]) -> list[str] | None:
    action = "s3:ListAllMyBuckets"
    names: list[str] = []
    kwargs: dict[str, Any] = {}
    for _ in range(_MAX_BUCKET_PAGES):
        resp, err = _call(s3, "list_buckets", **kwargs)
        if err is not None:
            if names:  # a later page failed: judge on what was seen
                break
            if err.denied:
                checks.append(Check(action, MISSING, f"list_buckets denied ({err})", _statement_fix(action, "*")))
            else:
                checks.append(Check(action, WARNING, f"could not verify: list_buckets failed ({err})"))
            checks.append(
                Check(
                    "bucket-in-own-account",
                    SKIPPED,
                    "needs s3:ListAllMyBuckets to see which account's buckets this key lists",
                )
            )
            return None
        names += [b["Name"] for b in resp.get("Buckets", [])]
        token = resp.get("ContinuationToken")
        if not token:
            break
        kwargs = {"ContinuationToken": token}

    checks.append(Check(action, OK, f"list_buckets returned {len(names)} bucket(s)"))
    if bucket in names:
        checks.append(Check("bucket-in-own-account", OK, f"{bucket} is among this key's account's buckets"))
    else:
        checks.append(
            Check(
                "bucket-in-own-account",
                WARNING,
                f"{bucket} is not among the {len(names)} bucket(s) of this key's account: "
                "ListAllMyBuckets only lists the caller's own account's buckets, so either "
                "the bucket name is wrong or this IAM user lives in another account",
                f"create the read-only IAM user in the AWS account that owns {bucket} (the "
                "log archive account CloudTrail delivers to), attach docs/iam-policy.json "
                "there and use that user's access key",
            )
        )
    return names


def _check_bucket_read(s3: Any, bucket: str, action: str, op: str, permitted: frozenset[str]) -> Check:
    _, err = _call(s3, op, Bucket=bucket)
    if err is None:
        return Check(action, OK, f"{op} succeeded")
    if err.code in permitted:
        return Check(action, OK, f"{op} permitted ({err.code}: nothing configured)")
    if err.denied:
        return Check(
            action,
            MISSING,
            f"{op} denied ({err})",
            _statement_fix(action, f"arn:aws:s3:::{bucket}"),
        )
    if err.code == "NoSuchBucket":
        return Check(action, SKIPPED, f"bucket {bucket} does not exist")
    return Check(action, WARNING, f"could not verify: {op} failed ({err})")


def _check_list_bucket(
    s3: Any, bucket: str, prefix: str, checks: list[Check], *, want_sample: bool
) -> tuple[str | None, bool]:
    """Append the s3:ListBucket check; return (a log key to sample, whether listing worked)."""
    action = "s3:ListBucket"
    list_prefix = prefix + "AWSLogs/"
    where = f"s3://{bucket}/{list_prefix}"
    resp, err = _call(s3, "list_objects_v2", Bucket=bucket, Prefix=list_prefix, MaxKeys=_LIST_PAGE)
    if err is not None:
        if err.denied:
            fix = _statement_fix(action, f"arn:aws:s3:::{bucket}")
            checks.append(Check(action, MISSING, f"list_objects_v2 on {where} denied ({err})", fix))
        elif err.code == "NoSuchBucket":
            checks.append(
                Check(
                    action,
                    MISSING,
                    f"bucket {bucket} does not exist at {_endpoint(s3)} (NoSuchBucket)",
                    "check the bucket name (and endpoint); use the bucket the trail delivers to",
                )
            )
        else:
            checks.append(Check(action, WARNING, f"could not verify: list_objects_v2 on {where} failed ({err})"))
        return None, False

    count = len(resp.get("Contents", []))
    found = None
    pages = 1
    while want_sample:
        found = next((o["Key"] for o in resp.get("Contents", []) if _is_log_key(o["Key"])), None)
        if found or not resp.get("IsTruncated") or pages >= _MAX_SAMPLE_PAGES:
            break
        more, err = _call(
            s3,
            "list_objects_v2",
            Bucket=bucket,
            Prefix=list_prefix,
            MaxKeys=_LIST_PAGE,
            ContinuationToken=resp["NextContinuationToken"],
        )
        if err is not None:
            break
        resp = more
        pages += 1
    more_flag = "+" if resp.get("IsTruncated") else ""
    detail = f"list_objects_v2 on {where} succeeded ({count}{more_flag} key(s) on the first page)"
    checks.append(Check(action, OK, detail))
    return found, True


def _check_objects(s3: Any, bucket: str, prefix: str, key: str | None, listed: bool, checks: list[Check]) -> None:
    """Append s3:GetObject, sse-kms and (for SSE-KMS objects) kms:Decrypt checks."""
    action = "s3:GetObject"
    if key is None:
        why = (
            f"no CloudTrail log object (*.json.gz under a /CloudTrail/ folder) found under "
            f"s3://{bucket}/{prefix}AWSLogs/; nothing to read yet (pass sample_key to choose one)"
            if listed
            else "no object key to try: listing failed (pass sample_key to test reads anyway)"
        )
        checks.append(Check(action, SKIPPED, why))
        checks.append(Check("sse-kms", SKIPPED, "no sample object to inspect"))
        return

    where = f"s3://{bucket}/{key}"
    head, head_err = _call(s3, "head_object", Bucket=bucket, Key=key)
    got, get_err = _call(s3, "get_object", Bucket=bucket, Key=key, Range="bytes=0-0")
    if got.get("Body") is not None:
        got["Body"].close()
    # A zero-byte object cannot serve byte 0, but the 416 still proves the read was allowed.
    readable = get_err is None or get_err.code == "InvalidRange"
    meta = head if head_err is None else got
    sse = meta.get("ServerSideEncryption")
    key_arn = meta.get("SSEKMSKeyId")
    kms_refused = get_err is not None and get_err.kms

    checks.append(_get_object_check(bucket, where, get_err, readable=readable, kms_refused=kms_refused))
    if sse in ("aws:kms", "aws:kms:dsse") or kms_refused:
        checks += _kms_checks(where, key_arn, get_err, readable=readable, kms_refused=kms_refused)
    elif head_err is None:
        checks.append(
            Check(
                "sse-kms",
                SKIPPED,
                f"{where} uses {sse or 'no'} server-side encryption, not SSE-KMS",
            )
        )
    else:
        checks.append(Check("sse-kms", SKIPPED, f"could not inspect {where} ({head_err})"))


def _get_object_check(bucket: str, where: str, get_err: _Error | None, *, readable: bool, kms_refused: bool) -> Check:
    """The s3:GetObject check from the outcome of reading the sample object's first byte."""
    action = "s3:GetObject"
    if readable:
        return Check(action, OK, f"read the first byte of {where}")
    if kms_refused:
        # S3 only consults KMS after s3:GetObject itself was allowed.
        return Check(action, OK, f"s3:GetObject on {where} allowed; decryption refused")
    if get_err is not None and get_err.denied:
        fix = _statement_fix(action, f"arn:aws:s3:::{bucket}/*")
        return Check(action, MISSING, f"get_object of {where} denied ({get_err})", fix)
    if get_err is not None and get_err.code in _NO_KEY_CODES:
        return Check(action, SKIPPED, f"sample object {where} does not exist")
    if get_err is not None and get_err.code == "NoSuchBucket":
        return Check(action, SKIPPED, f"bucket {bucket} does not exist")
    return Check(action, WARNING, f"could not verify: get_object of {where} failed ({get_err})")


def _kms_checks(
    where: str, key_arn: str | None, get_err: _Error | None, *, readable: bool, kms_refused: bool
) -> list[Check]:
    """The sse-kms and kms:Decrypt checks of an SSE-KMS encrypted sample object."""
    key_text = key_arn or "unknown key (head_object was not allowed)"
    checks = [Check("sse-kms", OK, f"{where} is SSE-KMS encrypted with {key_text}")]
    decrypt = "kms:Decrypt"
    if readable:
        checks.append(Check(decrypt, OK, f"decrypted {where} with {key_text}"))
    elif kms_refused:
        resource = key_arn or "arn:aws:kms:REGION:ACCOUNT:key/KEY-ID (the bucket's KMS key)"
        fix = (
            _statement_fix(decrypt, resource)
            + "; the key's key policy must also let this account's IAM policies grant use"
            " of the key (the default key policy does)"
        )
        checks.append(Check(decrypt, MISSING, f"reading {where} failed ({get_err})", fix))
    else:
        checks.append(Check(decrypt, SKIPPED, "cannot test until s3:GetObject works"))
    return checks


def _check_least_privilege(s3: Any, bucket: str, names: list[str] | None) -> Check:
    action = "least-privilege"
    if names is None:
        return Check(action, SKIPPED, "needs s3:ListAllMyBuckets to find other buckets to probe")
    others = [n for n in names if n != bucket][:_MAX_OTHER_BUCKETS]
    if not others:
        return Check(action, SKIPPED, "no other buckets visible to probe")
    readable: list[str] = []
    listable: list[str] = []
    for other in others:
        resp, err = _call(s3, "list_objects_v2", Bucket=other, MaxKeys=1)
        if err is not None:
            continue
        listable.append(other)
        contents = resp.get("Contents", [])
        if contents:
            _, head_err = _call(s3, "head_object", Bucket=other, Key=contents[0]["Key"])
            if head_err is None:
                readable.append(other)
    if not listable:
        return Check(action, OK, f"cannot list or read the other bucket(s) probed: {', '.join(others)}")
    parts = []
    if readable:
        parts.append(f"this key can read objects of bucket(s) {', '.join(readable)}")
    list_only = [b for b in listable if b not in readable]
    if list_only:
        parts.append(f"this key can list bucket(s) {', '.join(list_only)}")
    policy = json.dumps(recommended_policy(bucket))
    fix = (
        f"grant s3:GetObject only on arn:aws:s3:::{bucket}/* and the bucket reads only on "
        f'arn:aws:s3:::{bucket}, and remove broader grants (s3:*, Resource "*", managed '
        f"policies such as AmazonS3ReadOnlyAccess); the whole policy per the setup guide: {policy}"
    )
    return Check(action, WARNING, "; ".join(parts) + f"; it only needs {bucket}", fix)


def queue_arn(queue_url: str, region: str) -> str:
    """The ARN of an SQS queue URL (``https://sqs.<region>.amazonaws.com/<account>/<name>``);
    `region` stands in when the URL is another endpoint's."""
    parts = queue_url_parts(queue_url)
    if parts is None:
        return "*"
    queue_region, account, name = parts
    return f"arn:aws:sqs:{queue_region or region}:{account}:{name}"


# Codes of a DeleteMessage that was authorised but given the check's made-up receipt handle.
_BAD_HANDLE_CODES = frozenset({"ReceiptHandleIsInvalid", "InvalidParameterValue",
                               "AWS.SimpleQueueService.ReceiptHandleIsInvalid"})
_NO_QUEUE_CODES = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})


def check_queue(sqs: Any, queue_url: str) -> list[Check]:
    """sqs:ReceiveMessage and sqs:DeleteMessage on the MAV's queue, without consuming a message.

    The receive uses a visibility timeout of 0 (a message it gets is visible again at once;
    its receive count still goes up by one); the delete uses a made-up receipt handle, which
    an authorised call rejects as invalid.
    """
    resource = queue_arn(queue_url, str(getattr(getattr(sqs, "meta", None), "region_name", None) or "*"))
    _, err = _call(sqs, "receive_message", QueueUrl=queue_url, MaxNumberOfMessages=1, VisibilityTimeout=0,
                   WaitTimeSeconds=0)
    checks = [_queue_check("sqs:ReceiveMessage", queue_url, resource, err)]
    _, err = _call(sqs, "delete_message", QueueUrl=queue_url, ReceiptHandle="trailhouse-permission-check")
    checks.append(_queue_check("sqs:DeleteMessage", queue_url, resource,
                               None if err is not None and err.code in _BAD_HANDLE_CODES else err))
    return checks


def _queue_check(action: str, queue_url: str, resource: str, err: _Error | None) -> Check:
    if err is None:
        return Check(action, OK, f"allowed on {queue_url}")
    if err.code in _NO_QUEUE_CODES:
        return Check(action, MISSING, f"the queue {queue_url} does not exist ({err})",
                     "check the MAV's queue_url (copy it from the SQS console) and its region")
    if err.denied or "AccessDenied" in err.code:
        return Check(action, MISSING, f"refused on {queue_url} ({err}); notification mode cannot read the queue",
                     _statement_fix(action, resource))
    return Check(action, MISSING, f"{action.split(':')[1]} on {queue_url} failed: {err}",
                 "check the queue URL, region and endpoint, then run `trailhouse mav validate` again")


def require(report: AccessReport) -> None:
    """Raise AccessDeniedError unless every required action works."""
    missing = report.missing_required()
    if not missing:
        return
    lines = [
        f"the access key cannot read s3://{report.bucket}/{report.prefix}: missing "
        + ", ".join(c.action for c in missing)
    ]
    for c in missing:
        lines.append(f"- {c.action}: {c.detail}")
        if c.fix:
            lines.append(f"  fix: {c.fix}")
    raise AccessDeniedError("\n".join(lines), tuple(missing))
