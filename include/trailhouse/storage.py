"""Local paths and object-store URIs (s3://...) behind one small interface, for staging and the table."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def resolve(uri: str) -> tuple[Any, str]:
    """(pyarrow filesystem, path on it) for a local path or a URI such as s3://bucket/prefix.

    Object-store credentials and endpoint come from the environment (AWS_ACCESS_KEY_ID,
    AWS_ENDPOINT_URL, ...), as for the Delta writer, so both see the same store.
    """
    import pyarrow.fs as pafs

    if "://" in uri:
        return pafs.FileSystem.from_uri(uri)
    return pafs.LocalFileSystem(), uri


def is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def makedirs(uri: str) -> None:
    if is_remote(uri):
        return  # object stores have no folders; creating markers would only leave litter
    fs, path = resolve(uri)
    fs.create_dir(path, recursive=True)


def remove_file(uri: str) -> None:
    import pyarrow.fs as pafs

    fs, path = resolve(uri)
    if fs.get_file_info(path).type != pafs.FileType.NotFound:
        fs.delete_file(path)


def fsspec_for(uri: str) -> Any:
    """The pyarrow filesystem of `uri` as an fsspec filesystem answering to its scheme (for DuckDB)."""
    from fsspec.implementations.arrow import ArrowFSWrapper

    scheme = uri.split("://", 1)[0]

    class SchemeFS(ArrowFSWrapper):  # DuckDB routes paths to a filesystem by its protocol
        protocol = scheme

        @classmethod
        def _strip_protocol(cls, path: Any) -> Any:
            return path.split("://", 1)[1] if isinstance(path, str) and "://" in path else path

    return SchemeFS(resolve(uri)[0])


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock between processes of one machine (flock on `path`, created if needed)."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
