"""Domain config: MAVs as validated YAML files (never holding a secret) and credential CSVs."""

from __future__ import annotations

import csv
import io
import re
from datetime import date
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


class ConfigError(ValueError):
    """A MAV file or a credentials file that cannot be used; the message says how to fix it."""


def _quoted(v: Any) -> Any:
    if isinstance(v, list) and any(isinstance(a, int) for a in v):
        raise ValueError("account ids are 12 digits written as quoted strings ('012345678901'): "
                         "YAML reads unquoted ones as numbers and drops leading zeros")
    return v


def _account_ids(v: list[str]) -> list[str]:
    bad = [a for a in v if not re.fullmatch(r"\d{12}", a)]
    if bad:
        raise ValueError(f"account ids are 12 digits (keep leading zeros; quote them in YAML): {bad}")
    return sorted(set(v))


# A list of AWS account ids as YAML files hold them: quoted, 12 digits, leading zeros kept.
AccountIds = Annotated[list[str], BeforeValidator(_quoted), AfterValidator(_account_ids)]


# An SQS queue URL: https://sqs.<region>.amazonaws.com/<account>/<name> (or another endpoint's host).
_QUEUE_URL_RE = re.compile(r"^https?://(?:sqs\.([a-z0-9-]+)\.amazonaws\.com|[^/]+)/(\d{12})/([^/?]+)")


def queue_url_parts(url: str) -> tuple[str | None, str, str] | None:
    """(region, or None for another endpoint's host; account; queue name) of an SQS queue URL, or None."""
    m = _QUEUE_URL_RE.match(url)
    if m is None or "/" in url[m.end():]:
        return None
    return m.group(1), m.group(2), m.group(3)


def _no_credentials_in_url(url: str, name: str) -> None:
    """Refuse a URL that carries a secret: MAV files are plain text and never hold one."""
    parts = urlsplit(url)
    if "@" in parts.netloc:
        raise ValueError(f"`{name}` must not hold credentials (user:password@host): the key pair goes in "
                         "`trailhouse mav add --credentials-csv FILE`, which keeps it in the MAV's Airflow connection")
    if parts.query or parts.fragment:
        raise ValueError(f"`{name}` must not carry a query or fragment (signed URLs hold credentials); give the "
                         "endpoint's base URL only")


class Mav(BaseModel):
    """A multi-account view: accounts whose CloudTrail sits in one bucket, read with one key."""

    model_config = ConfigDict(extra="forbid")

    name: str
    bucket: str | None = None
    path: str | None = None
    prefix: str = ""
    region: str = "us-east-1"
    endpoint_url: str | None = None
    accounts: AccountIds = Field(default_factory=list)
    connection_id: str | None = None
    lookback_hours: int = Field(default=24, ge=1, le=24 * 31)
    schedule: str = "0 * * * *"
    # CloudTrail launched in November 2013: no history is older, so backfills never hit it.
    start_date: date = date(2013, 11, 1)
    description: str = ""
    # Alerts on backfilled history are always recorded; notifying them is opt-in, since a
    # year of old findings in one burst of messages helps nobody.
    notify_backfill: bool = False
    # Days of events kept in the warehouse (None: forever); enforced by `trailhouse maintain`.
    retention_days: int | None = Field(default=None, ge=1)
    # Notification mode: an SQS queue that CloudTrail's SNS topic (or the bucket's S3 event
    # notifications) feeds; hourly runs read it instead of listing the bucket.
    queue_url: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError("use lower-case letters, digits, '-' and '_', starting with a letter (max 63)")
        return v

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint_url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        _no_credentials_in_url(v, "endpoint_url")
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("`endpoint_url` is an http(s) URL such as https://s3.eu-west-1.amazonaws.com")
        return v

    @field_validator("queue_url")
    @classmethod
    def _queue_url(cls, v: str | None) -> str | None:
        if v is not None:
            _no_credentials_in_url(v, "queue_url")
        return v

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        v = v.strip("/")
        return f"{v}/" if v else ""

    @model_validator(mode="after")
    def _source(self) -> Mav:
        if (self.bucket is None) == (self.path is None):
            raise ValueError("set exactly one of `bucket` (S3) or `path` (a local folder)")
        if self.queue_url is not None and self.bucket is None:
            raise ValueError("`queue_url` needs `bucket`: notification mode reads S3 notifications of a bucket")
        if self.queue_url is not None and queue_url_parts(self.queue_url) is None:
            raise ValueError(f"`queue_url` {self.queue_url!r} is not an SQS queue URL; copy it from the SQS "
                             "console, e.g. https://sqs.us-east-1.amazonaws.com/111122223333/trailhouse-cloudtrail")
        if self.bucket is not None and not self.connection_id:
            self.connection_id = f"trailhouse_{self.name}"
        return self

    @property
    def dag_id(self) -> str:
        return f"trailhouse_mav_{self.name}"

    @property
    def source_label(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.bucket else f"{self.path}/{self.prefix}"


def mav_file(mav_dir: Path, name: str) -> Path:
    return mav_dir / f"{name}.yaml"


def _problems(exc: ValidationError) -> str:
    """What is wrong, field by field, without the values given (which may hold a secret)."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'mav'}: {e['msg']}" for e in exc.errors())


def make_mav(**fields: Any) -> Mav:
    """A MAV from settings a person gave (the CLI's flags); ConfigError names what is wrong."""
    try:
        return Mav(**fields)
    except ValidationError as exc:
        raise ConfigError(f"MAV {fields.get('name')!r}: {_problems(exc)}") from None


def load_mav_file(path: Path) -> Mav:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of MAV settings, got {type(data).__name__}")
    data.setdefault("name", path.stem)
    try:
        mav = Mav.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_problems(exc)}") from None
    if mav.name != path.stem:
        raise ConfigError(f"{path}: name {mav.name!r} must match the file name {path.stem!r}")
    return mav


def load_mav(mav_dir: Path, name: str) -> Mav:
    path = mav_file(mav_dir, name)
    if not path.exists():
        known = ", ".join(p.stem for p in mav_files(mav_dir)) or "none"
        raise ConfigError(f"no MAV named {name!r} in {mav_dir} (known: {known}); add it with `trailhouse mav add`")
    return load_mav_file(path)


def mav_files(mav_dir: Path) -> list[Path]:
    """The MAV files of the folder, by name (none when the folder does not exist yet)."""
    return sorted(mav_dir.glob("*.yaml")) if mav_dir.is_dir() else []


def scan_mavs(mav_dir: Path) -> list[tuple[Path, Mav | ConfigError]]:
    """Every MAV file with its MAV, or the ConfigError that keeps a broken file from loading."""
    out: list[tuple[Path, Mav | ConfigError]] = []
    for path in mav_files(mav_dir):
        try:
            out.append((path, load_mav_file(path)))
        except ConfigError as exc:
            out.append((path, exc))
    return out


def load_mavs(mav_dir: Path) -> list[Mav]:
    """Every MAV in the folder; a broken file raises ConfigError naming it."""
    return [load_mav_file(p) for p in mav_files(mav_dir)]


def save_mav(mav_dir: Path, mav: Mav) -> Path:
    mav_dir.mkdir(parents=True, exist_ok=True)
    path = mav_file(mav_dir, mav.name)
    data: dict[str, Any] = mav.model_dump(mode="json", exclude_defaults=False)
    data = {k: v for k, v in data.items() if v not in (None, "", [])}
    path.write_text("# trailhouse MAV: no secrets here; the key pair is in the Airflow connection named below.\n"
                    + yaml.safe_dump(data, sort_keys=False))
    return path


# The column names of the IAM console's two .csv files (access key, new user), lower-case.
_IAM_CSV_COLUMNS = frozenset({"user name", "password", "access key id", "secret access key", "console login link"})


def read_credentials_csv(path: Path) -> tuple[str, str]:
    """(access key id, secret) from the IAM console's "Download .csv" file, either form."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"cannot read credentials file {path}: {exc.strerror}") from None
    try:
        rows = list(csv.DictReader(io.StringIO(text)))
    except csv.Error as exc:  # e.g. a NUL byte: the message names the line, never its text
        raise ConfigError(f"{path}: not a CSV file ({exc}); download the access key's .csv from the IAM "
                          "console again") from None
    if not rows:
        raise ConfigError(f"{path}: no rows; download the access key's .csv from the IAM console again")
    # (a row with more values than the header has them under the key None: not a column)
    norm = {k.strip().lower(): v.strip() for k, v in rows[0].items() if isinstance(k, str) and isinstance(v, str)}
    key_id = norm.get("access key id", "")
    secret = norm.get("secret access key", "")
    if not key_id or not secret:
        # Only header names the IAM console writes are shown: a file without its header row
        # has the key id and secret where the names should be.
        known = [k for k in norm if k in _IAM_CSV_COLUMNS]
        others = sum(1 for k in norm if k and k not in _IAM_CSV_COLUMNS)
        found = ", ".join(repr(k) for k in known) or "none of the IAM console's column names"
        if others:
            found += f", and {others} other column{'s' if others > 1 else ''} (not shown: they may hold the key)"
        raise ConfigError(
            f"{path}: expected a header row with the columns 'Access key ID' and 'Secret access key' (the IAM "
            f"console's access key .csv, or the new-user .csv with 'User name' and 'Password'); found {found}. "
            f"Download the .csv from the IAM console again, or add the line `Access key ID,Secret access key` "
            f"above the key"
        )
    if not re.fullmatch(r"(AKIA|ASIA)[A-Z0-9]{12,}", key_id):
        raise ConfigError(f"{path}: the 'Access key ID' column does not hold an AWS access key id (AKIA... or "
                          "ASIA...); download the access key's .csv from the IAM console again")
    if not secret.isprintable() or any(c.isspace() for c in secret):
        raise ConfigError(f"{path}: the 'Secret access key' column holds spaces or control characters; download "
                          "the access key's .csv from the IAM console again")
    return key_id, secret
