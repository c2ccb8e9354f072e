"""Read access to a MAV's logs: an S3 bucket, or a local folder in the same layout."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    etag: str
    size: int


class SourceError(RuntimeError):
    """The source cannot be read; the message says why and what to do."""


class Source(Protocol):
    list_calls: int
    get_calls: int

    def list_folders(self, prefix: str) -> list[str]: ...
    def list_objects(self, prefix: str) -> list[ObjectInfo]: ...
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
            page = self.client.list_objects_v2(**kwargs)
            self._count(list_calls=1)
            folders.extend(p["Prefix"] for p in page.get("CommonPrefixes", []))
            if not page.get("IsTruncated"):
                return folders
            token = page["NextContinuationToken"]

    def list_objects(self, prefix: str) -> list[ObjectInfo]:
        objects: list[ObjectInfo] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
            if token:
                kwargs["ContinuationToken"] = token
            page = self.client.list_objects_v2(**kwargs)
            self._count(list_calls=1)
            for obj in page.get("Contents", []):
                objects.append(ObjectInfo(obj["Key"], obj["ETag"].strip('"'), int(obj["Size"])))
            if not page.get("IsTruncated"):
                return objects
            token = page["NextContinuationToken"]

    def get(self, key: str) -> bytes:
        self._count(get_calls=1)
        body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        try:
            return body.read()
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

    def list_objects(self, prefix: str) -> list[ObjectInfo]:
        self._count(list_calls=1)
        folder = self.root / prefix
        if not folder.is_dir():
            return []
        objects = []
        for dirpath, _dirs, files in os.walk(folder):
            for name in files:
                path = Path(dirpath) / name
                st = path.stat()
                key = path.relative_to(self.root).as_posix()
                # mtime and size stand in for S3's ETag: a rewritten file is seen as new.
                objects.append(ObjectInfo(key, f"{st.st_mtime_ns:x}-{st.st_size:x}", st.st_size))
        return sorted(objects, key=lambda o: o.key)

    def get(self, key: str) -> bytes:
        self._count(get_calls=1)
        return (self.root / key).read_bytes()
