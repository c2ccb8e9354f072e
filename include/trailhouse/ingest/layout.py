"""Where CloudTrail puts its files in a bucket, and what a key tells about its content."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime

# AWSLogs/[o-org/]<account>/<kind>/<region>/YYYY/MM/DD/<file>; anything before AWSLogs/
# is the trail's prefix (Control Tower puts the organisation id there instead of after
# AWSLogs/, which this covers too).
KEY_RE = re.compile(
    r"^(?P<prefix>(?:.*/)?)AWSLogs/(?:(?P<org>o-[a-z0-9]{10,32})/)?(?P<account>\d{12})/"
    r"(?P<kind>CloudTrail|CloudTrail-Digest|CloudTrail-Insight)/(?P<region>[a-z0-9-]+)/"
    r"(?P<year>\d{4})/(?P<month>\d\d)/(?P<day>\d\d)/(?P<name>[^/]+)$"
)
# <account>_CloudTrail_<region>_YYYYMMDDTHHMMZ_<id>.json.gz (digests add seconds).
NAME_TIME_RE = re.compile(r"_(\d{8}T\d{4}(?:\d\d)?Z)[_.]")

KIND_LOG = "CloudTrail"
KIND_DIGEST = "CloudTrail-Digest"
KIND_INSIGHT = "CloudTrail-Insight"
KINDS = (KIND_LOG, KIND_DIGEST, KIND_INSIGHT)


@dataclass(frozen=True)
class LogKey:
    """One S3 key of a CloudTrail delivery, parsed: its folder prefix, organisation, account,
    kind (log, digest, insight), region, day folder and file name.
    """
    key: str
    prefix: str
    org: str | None
    account: str
    kind: str
    region: str
    day: date
    name: str

    @property
    def delivered_at(self) -> datetime | None:
        """The delivery time CloudTrail writes into the file name (None if it is not there)."""
        m = NAME_TIME_RE.search(self.name)
        if not m:
            return None
        text = m.group(1)
        fmt = "%Y%m%dT%H%M%SZ" if len(text) == 16 else "%Y%m%dT%H%MZ"
        return datetime.strptime(text, fmt).replace(tzinfo=UTC)


def parse_key(key: str) -> LogKey | None:
    """Parse a bucket key; None when it is not in CloudTrail's layout."""
    m = KEY_RE.match(key)
    if not m:
        return None
    try:
        day = date(int(m["year"]), int(m["month"]), int(m["day"]))
    except ValueError:
        return None
    return LogKey(
        key=key,
        prefix=m["prefix"],
        org=m["org"],
        account=m["account"],
        kind=m["kind"],
        region=m["region"],
        day=day,
        name=m["name"],
    )


def day_prefix(base: str, kind: str, region: str, day: date) -> str:
    """The folder CloudTrail delivers one day's files of one account and region into.

    `base` is the account folder, e.g. ``"AWSLogs/o-abc/111122223333/"``.
    """
    return f"{base}{kind}/{region}/{day:%Y/%m/%d}/"


def is_account_folder(name: str) -> bool:
    return len(name) == 12 and name.isdigit()


def is_org_folder(name: str) -> bool:
    return re.fullmatch(r"o-[a-z0-9]{10,32}", name) is not None
