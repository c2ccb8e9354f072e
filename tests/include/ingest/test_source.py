"""LocalSource lists a key range like S3 does (StartAfter, stop), walking only the folders that can hold it."""

from __future__ import annotations

from pathlib import Path

import pytest

from trailhouse.ingest.source import LocalSource

STREAM = "AWSLogs/111122223333/CloudTrail/eu-west-1/"


def _write_history(root: Path) -> list[str]:
    keys = []
    for year, month, days in ((2025, 12, (30, 31)), (2026, 1, (1, 2, 9, 10)), (2026, 2, (1,))):
        for day in days:
            for n in range(2):
                key = f"{STREAM}{year}/{month:02d}/{day:02d}/file-{n}.json.gz"
                (root / key).parent.mkdir(parents=True, exist_ok=True)
                (root / key).write_bytes(b"x")
                keys.append(key)
    (root / "AWSLogs/other.txt").write_bytes(b"y")  # outside the stream
    return sorted(keys)


@pytest.mark.parametrize(("start_after", "stop_at"), [
    ("", ""),
    (f"{STREAM}2026/01/01/", f"{STREAM}2026/01/03/"),
    (f"{STREAM}2025/12/31/", f"{STREAM}2026/01/02/"),
    (f"{STREAM}2026/01/09/file-0.json.gz", ""),
    ("", f"{STREAM}2026/01/01/"),
    (f"{STREAM}2026/01/10/", f"{STREAM}2026/02/02/"),
    (f"{STREAM}2027/", ""),
])
def test_a_range_lists_exactly_the_keys_in_it(tmp_path: Path, start_after: str, stop_at: str) -> None:
    keys = _write_history(tmp_path)
    want = [k for k in keys if k > start_after and (not stop_at or k < stop_at)]
    got = LocalSource(str(tmp_path)).list_objects(STREAM, start_after=start_after, stop_at=stop_at)
    assert [o.key for o in got] == want


def test_listing_from_the_root_prefix_keeps_the_range(tmp_path: Path) -> None:
    keys = _write_history(tmp_path)
    start, stop = f"{STREAM}2026/01/02/", f"{STREAM}2026/01/10/"
    got = LocalSource(str(tmp_path)).list_objects("", start_after=start, stop_at=stop)
    assert [o.key for o in got] == [k for k in keys if start < k < stop]
