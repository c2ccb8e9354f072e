"""Key layouts CloudTrail writes: plain, organization trail, Control Tower, any prefix."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from trailhouse.ingest.layout import KIND_DIGEST, KIND_INSIGHT, KIND_LOG, parse_key

NAME = "111122223333_CloudTrail_us-east-1_20261127T1005Z_AbCdEf0123456789.json.gz"


@pytest.mark.parametrize(
    ("key", "prefix", "org"),
    [
        (f"AWSLogs/111122223333/CloudTrail/us-east-1/2026/11/27/{NAME}", "", None),
        (f"AWSLogs/o-a1b2c3d4e5/111122223333/CloudTrail/us-east-1/2026/11/27/{NAME}", "", "o-a1b2c3d4e5"),
        # Control Tower before landing zone 3.0: the organization id is the prefix.
        (f"o-a1b2c3d4e5/AWSLogs/111122223333/CloudTrail/us-east-1/2026/11/27/{NAME}", "o-a1b2c3d4e5/", None),
        (f"central/logs/AWSLogs/o-a1b2c3d4e5/111122223333/CloudTrail/us-east-1/2026/11/27/{NAME}", "central/logs/", "o-a1b2c3d4e5"),
    ],
)
def test_layouts(key: str, prefix: str, org: str | None) -> None:
    parsed = parse_key(key)
    assert parsed is not None
    assert (parsed.prefix, parsed.org, parsed.account, parsed.kind, parsed.region) == (
        prefix, org, "111122223333", KIND_LOG, "us-east-1")
    assert parsed.day == date(2026, 11, 27)
    assert parsed.delivered_at == datetime(2026, 11, 27, 10, 5, tzinfo=UTC)


def test_digest_and_insight_kinds() -> None:
    digest = parse_key("AWSLogs/111122223333/CloudTrail-Digest/eu-west-1/2026/11/27/"
                       "111122223333_CloudTrail-Digest_eu-west-1_trail_us-east-1_20261127T100512Z.json.gz")
    insight = parse_key(f"AWSLogs/111122223333/CloudTrail-Insight/eu-west-1/2026/11/27/{NAME}")
    assert digest is not None and digest.kind == KIND_DIGEST
    assert digest.delivered_at == datetime(2026, 11, 27, 10, 5, 12, tzinfo=UTC)
    assert insight is not None and insight.kind == KIND_INSIGHT


@pytest.mark.parametrize(
    "key",
    [
        "AWSLogs/11112222333/CloudTrail/us-east-1/2026/11/27/x.json.gz",  # 11-digit account
        "AWSLogs/111122223333/CloudTrail/us-east-1/2026/13/27/x.json.gz",  # month 13
        "AWSLogs/111122223333/Config/us-east-1/2026/11/27/x.json.gz",  # another service's logs
        "AWSLogs/111122223333/CloudTrail/us-east-1/2026/11/27/",  # a folder marker
        "random/file.txt",
    ],
)
def test_not_cloudtrail(key: str) -> None:
    assert parse_key(key) is None
