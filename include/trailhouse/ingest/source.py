"""Read access to a MAV's logs: an S3 bucket, or a local folder in the same layout."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from trailhouse.common import S3_DENIED_CODES, redact_access_keys


@dataclass(frozen=True)
class ObjectInfo:
    """One object of the source: its key, ETag and size (the ledger's identity for a file)."""
    key: str
    etag: str
    size: int


class SourceError(RuntimeError):
    """The source cannot be read; the message says why and what to do.

    From S3, `code` is the S3 error code (or the botocore exception's name) and `response`
    botocore's error response as a ClientError carries it, so a caller can still tell a
    NoSuchKey apart from other failures.
    """

    def __init__(self, message: str, *, code: str | None = None, response: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.response: dict[str, Any] = response or {}


# S3 error codes of a refused request (HEAD responses carry only the HTTP status).
# Codes meaning the key pair itself was refused, whatever the bucket and action.
_CREDENTIAL_CODES = frozenset({"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken",
                               "TokenRefreshRequired", "InvalidClientTokenId"})


def _scrub(text: str) -> str:
    return redact_access_keys(text)


def _endpoint(client: Any) -> str:
    url = getattr(getattr(client, "meta", None), "endpoint_url", None) or "the default AWS S3 endpoint"
    parts = urlsplit(url)
    if parts.username or parts.password:  # never echo user:pass@ from a configured URL
        url = parts._replace(netloc=(parts.hostname or "") + (f":{parts.port}" if parts.port else "")).geturl()
    return url


def _s3_error(client: Any, call: str, url: str, exc: Exception) -> SourceError:
    """A botocore failure of a LIST or GET, after botocore's own retries, as a SourceError.

    Only the error's code and message are used (never the request, its signature or the key
    pair); a refusal names the IAM action it needs, so it is never mistaken for throttling.
    """
    from botocore.exceptions import ClientError

    where = f"S3 {call} {url} (endpoint {_endpoint(client)})"
    if not isinstance(exc, ClientError):  # connection refused / reset, timeouts, ...
        return SourceError(
            f"{where} failed after botocore's retries: {type(exc).__name__}: {_scrub(str(exc))}; check that "
            "the endpoint is reachable from this worker (network, proxy, the MAV's endpoint_url), then re-run",
            code=type(exc).__name__,
        )
    error = exc.response.get("Error", {})
    meta = exc.response.get("ResponseMetadata", {})
    code = str(error.get("Code") or meta.get("HTTPStatusCode") or "Unknown")
    message = _scrub(str(error.get("Message") or ""))
    what = f"{code} ({message})" if message else code

    def fail(text: str) -> SourceError:
        return SourceError(text, code=code, response=exc.response)

    if code in _CREDENTIAL_CODES:
        return fail(
            f"{where} was refused: {what}; S3 rejected the access key: check the key pair in the MAV's "
            "connection (not shown here) and that the key is active, then run `trailhouse mav validate <mav>`"
        )
    if code in S3_DENIED_CODES:
        action = "s3:ListBucket on the bucket" if call == "LIST" else (
            "s3:GetObject on the objects (and kms:Decrypt on the bucket's KMS key if the logs use SSE-KMS)")
        return fail(
            f"{where} was refused: {what}; the MAV's IAM user is missing {action}. "
            "Run `trailhouse mav validate <mav>` for the permission report and the policy statement to add"
        )
    retries = int(meta.get("RetryAttempts") or 0)
    status = int(meta.get("HTTPStatusCode") or 0)
    if retries or status >= 500 or status == 429:
        return fail(
            f"{where} failed after {retries} {'retry' if retries == 1 else 'retries'}: {what}; check the "
            "endpoint and the bucket's request rate (other readers of the bucket, fewer download threads), "
            "then re-run"
        )
    if code == "NoSuchBucket":
        return fail(f"{where} failed: {what}; check the MAV's bucket name, region and endpoint")
    if code == "NoSuchKey":
        return fail(f"{where} failed: {what}; the object was deleted after it was listed; re-run to list again")
    return fail(f"{where} failed: {what} (HTTP {status or '?'})")


class Source(Protocol):
    """Where delivery files are read from (an S3 bucket or a local folder): listing and reading,
    with the calls counted for the run's figures.
    """
    list_calls: int
    get_calls: int

    def list_folders(self, prefix: str) -> list[str]: ...
    def list_objects(self, prefix: str, start_after: str = "", stop_at: str = "") -> list[ObjectInfo]: ...
    def get(self, key: str) -> bytes: ...
    def describe(self) -> str: ...


class _Counter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.list_calls = 0
        self.get_calls = 0

    def _count(self, list_calls: int = 0, get_calls: int = 0) -> None:
        with self._lock:
            self.list_calls += list_calls
            self.get_calls += get_calls


class S3Source(_Counter):
    """A bucket read with LIST (delimiter for folders, plain for a day) and GET calls."""

    def __init__(self, client: Any, bucket: str) -> None:
        super().__init__()
        self.client = client
        self.bucket = bucket

    def describe(self) -> str:
        return f"s3://{self.bucket}"

    def list_folders(self, prefix: str) -> list[str]:
        folders: list[str] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "Delimiter": "/"}
            if token:
                kwargs["ContinuationToken"] = token
            page = self._list(kwargs)
            folders.extend(p["Prefix"] for p in page.get("CommonPrefixes", []))
            if not page.get("IsTruncated"):
                return folders
            token = page["NextContinuationToken"]

    def list_objects(self, prefix: str, start_after: str = "", stop_at: str = "") -> list[ObjectInfo]:
        """The objects under `prefix` whose keys sort after `start_after` and before `stop_at`
        (when given); paging stops at the first page that reaches `stop_at`.
        """
        objects: list[ObjectInfo] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
            if start_after:
                kwargs["StartAfter"] = start_after
            if token:
                kwargs["ContinuationToken"] = token
            page = self._list(kwargs)
            for obj in page.get("Contents", []):
                if stop_at and obj["Key"] >= stop_at:
                    return objects
                objects.append(ObjectInfo(obj["Key"], obj["ETag"].strip('"'), int(obj["Size"])))
            if not page.get("IsTruncated"):
                return objects
            token = page["NextContinuationToken"]

    def _list(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            page = self.client.list_objects_v2(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise _s3_error(self.client, "LIST", f"s3://{self.bucket}/{kwargs['Prefix']}", exc) from exc
        self._count(list_calls=1)
        return page

    def get(self, key: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        self._count(get_calls=1)
        url = f"s3://{self.bucket}/{key}"
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        except (ClientError, BotoCoreError) as exc:
            raise _s3_error(self.client, "GET", url, exc) from exc
        try:
            return body.read()
        except BotoCoreError as exc:
            # botocore retries a request, not the reading of a response body already under way.
            raise SourceError(
                f"S3 GET {url}: reading the object failed ({type(exc).__name__}: {_scrub(str(exc))}); "
                "a broken download is not retried by the S3 client, the task's retry reads it again",
                code=type(exc).__name__,
            ) from exc
        finally:
            body.close()


class LocalSource(_Counter):
    """A folder holding a bucket's keys as paths, e.g. after `aws s3 sync s3://bucket DIR`."""

    def __init__(self, root: str | Path) -> None:
        super().__init__()
        self.root = Path(root)
        if not self.root.is_dir():
            raise SourceError(
                f"local MAV folder {self.root} does not exist or is not a folder; "
                "point --path at the folder that holds AWSLogs/ (or its prefix folders)"
            )

    def describe(self) -> str:
        return str(self.root)

    def list_folders(self, prefix: str) -> list[str]:
        self._count(list_calls=1)
        folder = self.root / prefix
        if not folder.is_dir():
            return []
        return sorted(f"{prefix}{e.name}/" for e in os.scandir(folder) if e.is_dir())

    def list_objects(self, prefix: str, start_after: str = "", stop_at: str = "") -> list[ObjectInfo]:
        """As S3Source.list_objects (one call, whatever the number of files)."""
        self._count(list_calls=1)
        folder = self.root / prefix
        if not folder.is_dir():
            return []
        objects = []
        for dirpath, dirs, files in os.walk(folder):
            if start_after or stop_at:
                # Walk only the folders that can hold a key in range (day folders sort by date),
                # so that listing a window costs the same whatever the history kept.
                rel = Path(dirpath).relative_to(self.root).as_posix()
                base = "" if rel == "." else rel + "/"
                dirs[:] = [d for d in dirs if _may_hold_keys(base + d + "/", start_after, stop_at)]
            for name in files:
                path = Path(dirpath) / name
                key = path.relative_to(self.root).as_posix()
                if key <= start_after or (stop_at and key >= stop_at):
                    continue
                st = path.stat()
                # mtime and size stand in for S3's ETag: a rewritten file is seen as new.
                objects.append(ObjectInfo(key, f"{st.st_mtime_ns:x}-{st.st_size:x}", st.st_size))
        return sorted(objects, key=lambda o: o.key)

    def get(self, key: str) -> bytes:
        self._count(get_calls=1)
        return (self.root / key).read_bytes()


def _may_hold_keys(folder: str, start_after: str, stop_at: str) -> bool:
    """Whether a key under `folder` (ending in "/") can sort after `start_after` and before `stop_at`."""
    if stop_at and folder >= stop_at:
        return False
    # Every key under the folder starts with it: all sort before start_after unless
    # start_after itself lies inside the folder or the folder sorts after it.
    return not start_after or folder > start_after or start_after.startswith(folder)
