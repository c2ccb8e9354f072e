"""Alert notifications: owners.yaml, a per-run outbox of messages, and the channels that deliver them.

Delivery is at-least-once. plan() writes one outbox row per recipient, channel and run (a
unique key makes a retried task plan nothing twice); deliver() claims a due row, sends it, then
records the outcome. A crash (or a lost database connection) between the send and that record
leaves the row pending, and a later deliver() sends the message again once the claim's lease has
run out. So that receivers can drop such a repeat, every message carries an id derived from the
outbox row: the email Message-ID `<trailhouse-{id}-{run hash}@trailhouse>`, the HTTP header
`Idempotency-Key: trailhouse-{id}-{run hash}` for Slack and webhooks, and for SNS the message
attribute `trailhouse_id` (plus MessageDeduplicationId on FIFO topics, where SNS itself drops
repeats within five minutes). Channel secrets (passwords, webhook URLs, key pairs) live only in
Airflow connections: they are read at send time and redacted from any error text that is stored
or logged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import smtplib
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

import sqlalchemy as sa
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from trailhouse import airflow_env, faults
from trailhouse.common import SEVERITY_RANK, chunks, event_link
from trailhouse.config import AccountIds, ConfigError
from trailhouse.db import appdb

log = logging.getLogger(__name__)

BACKOFF = timedelta(seconds=30)
# A claimed row is not due again before this: long enough for any send to finish (SMTP and
# HTTP time out after 10 s), short enough that a crashed deliver() is retried the same hour.
LEASE = timedelta(minutes=5)
TIMEOUT = 10.0
# Keeps a message within every channel's limits (SNS: 256 KB, Slack: 40k characters) when a
# run raises hundreds of alerts; the rest are counted, and all are in the UI.
MAX_LISTED = 100
MAX_ERROR = 2000

CONN_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")
SNS_ARN_RE = re.compile(r"^arn:aws[a-z-]*:sns:([a-z0-9-]+):(\d{12}):([A-Za-z0-9_-]{1,256}(\.fifo)?)$")


class NotifyError(RuntimeError):
    """A message that could not be sent; the text is safe to store (no secrets)."""


# --- owners.yaml --------------------------------------------------------------------------


class _Channel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str
    connection: str

    @field_validator("connection")
    @classmethod
    def _conn_id(cls, v: str) -> str:
        if not CONN_ID_RE.match(v):
            raise ValueError("an Airflow connection id: letters, digits, '_', '.' and '-' (max 200)")
        return v

    @property
    def label(self) -> str:
        """A stable name for this channel: its type, connection and a digest of its destination.

        Derived from the content, not from the position in the file, so reordering channels
        never re-routes an outbox row planned before the edit.
        """
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return f"{self.type}:{self.connection}:{hashlib.sha256(canonical.encode()).hexdigest()[:8]}"


class EmailChannel(_Channel):
    type: Literal["email"]
    to: list[str] = Field(min_length=1)

    @field_validator("to")
    @classmethod
    def _addresses(cls, v: list[str]) -> list[str]:
        bad = [a for a in v if not re.fullmatch(r"[^@\s,<>]+@[^@\s,<>]+", a)]
        if bad:
            raise ValueError(f"not plain email addresses (name@domain): {bad}")
        return sorted(set(v))


class SlackChannel(_Channel):
    type: Literal["slack"]


class WebhookChannel(_Channel):
    type: Literal["webhook"]


class SnsChannel(_Channel):
    type: Literal["sns"]
    topic_arn: str

    @field_validator("topic_arn")
    @classmethod
    def _arn(cls, v: str) -> str:
        if not SNS_ARN_RE.match(v):
            raise ValueError("an SNS topic ARN: arn:aws:sns:REGION:ACCOUNT_ID:TOPIC_NAME")
        return v


Channel = Annotated[EmailChannel | SlackChannel | WebhookChannel | SnsChannel, Field(discriminator="type")]
CHANNEL_TYPES = ("email", "slack", "webhook", "sns")


class Owner(BaseModel):
    """A team that owns accounts (and, through its users, custom rules) and hears of their alerts."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128)
    accounts: AccountIds = Field(default_factory=list)
    users: list[str] = Field(default_factory=list)
    channels: list[Channel] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        # Shown in headers and logs: no line breaks or separators that would garble them.
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9 _.@-]*", v):
            raise ValueError("use letters, digits, spaces, '_', '.', '@' and '-'")
        return v

    @model_validator(mode="after")
    def _distinct_channels(self) -> Owner:
        labels = [c.label for c in self.channels]
        if len(set(labels)) != len(labels):
            raise ValueError("the same channel is listed twice")
        return self


class OwnersFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    owners: list[Owner] = Field(default_factory=list)

    @model_validator(mode="after")
    def _distinct_names(self) -> OwnersFile:
        names = [o.name for o in self.owners]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"owner names must be unique (the outbox addresses owners by name): {repeated}")
        return self


def load_owners(path: Path) -> list[Owner]:
    """The owners of owners.yaml at `path` (Settings.owners_file); none (logged) when the file does not exist."""
    if not path.exists():
        log.warning("no owners file at %s: alerts notify nobody", path)
        return []
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if data is None:
        return []
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with an `owners:` list, got {type(data).__name__}")
    try:
        return OwnersFile.model_validate(data).owners
    except ValidationError as exc:
        problems = "; ".join(_problem(e, data) for e in exc.errors())
        raise ConfigError(f"{path}: {problems}") from None


def _problem(err: Mapping[str, Any], data: Any) -> str:
    """One validation error as `owners[0] (payments-team).channels[1].type: message`."""
    where, node, loc = "", data, list(err["loc"])
    for i, part in enumerate(loc):
        # pydantic puts the union member's tag in the path ("channels.0.email.to"): drop it.
        if part in CHANNEL_TYPES and i > 0 and isinstance(loc[i - 1], int):
            continue
        if isinstance(part, int):
            where += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            if loc[i - 1] == "owners" and isinstance(node, dict) and isinstance(node.get("name"), str):
                where += f" ({node['name']})"
        else:
            where += f".{part}" if where else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind == "union_tag_invalid":
        msg = f"unknown channel type {ctx.get('tag')!r} (use one of: {', '.join(CHANNEL_TYPES)})"
        where += ".type"
    elif kind == "union_tag_not_found":
        msg = f"a channel needs `type:` (one of: {', '.join(CHANNEL_TYPES)})"
    elif kind == "extra_forbidden":
        msg = "unknown field (a typo?)"
    else:
        msg = str(err["msg"]).removeprefix("Value error, ")
    return f"{where or 'owners.yaml'}: {msg}"


def recipients_for(alert: Mapping[str, Any], owners: Sequence[Owner], rule_owner_users: Iterable[str] | None = None
                   ) -> list[Owner]:
    """Owners of the alert's account, plus owners whose users own the alert's (custom) rule.

    rule_owner_users defaults to the alert's own `rule_owner`.
    """
    if rule_owner_users is None:
        rule_owner_users = [alert["rule_owner"]] if alert.get("rule_owner") else []
    users = set(rule_owner_users)
    account = alert.get("account_id")
    return [o for o in owners if (account and account in o.accounts) or users.intersection(o.users)]


# --- planning: the outbox -----------------------------------------------------------------


def plan(eng: sa.Engine, run_id: str, mav: str, alert_rows: Sequence[Mapping[str, Any]], *, owners_file: Path,
         base_url: str, owners: Sequence[Owner] | None = None, now: datetime | None = None) -> int:
    """Queue one message per recipient and channel for the run's new alerts; returns rows queued.

    Recipients come from `owners` or else the file `owners_file`; messages link to pages under `base_url`.

    Idempotent per run: a row already planned (same run, recipient and channel) is left as it
    is, so a retried task neither duplicates nor rewrites what may already have been sent.
    """
    wanted = [a for a in alert_rows if a.get("notify", True)]
    if not wanted:
        return 0
    owners = load_owners(owners_file) if owners is None else owners
    groups: dict[str, tuple[Owner, list[Mapping[str, Any]]]] = {}
    unrouted = 0
    for alert in wanted:
        found = recipients_for(alert, owners)
        unrouted += not found
        for owner in found:
            groups.setdefault(owner.name, (owner, []))[1].append(alert)
    if unrouted:
        log.warning("%d new alert(s) of run %s match no owner in owners.yaml: nobody is notified of them",
                    unrouted, run_id)
    ts = _utc(now)
    planned = 0
    with eng.begin() as conn:
        # Marked in the same transaction as the outbox rows: an alert is planned exactly
        # once, whichever run (or retry) gets to it after a crash.
        ids_all = [int(a["id"]) for a in alert_rows if a.get("id") is not None]
        for part in chunks(ids_all):
            conn.execute(appdb.alerts.update().where(appdb.alerts.c.id.in_(part))
                         .values(planned_at=ts))
        for name, (owner, alerts) in sorted(groups.items()):
            subject, body = render(mav, run_id, name, alerts, base_url=base_url)
            ids = ",".join(str(i) for i in sorted({int(a["id"]) for a in alerts}))
            for channel in owner.channels:
                planned += _insert_once(conn, {
                    "run_id": run_id, "mav": mav, "recipient": name, "channel": channel.label,
                    "alert_ids": ids, "subject": subject, "body": body, "status": "pending", "attempts": 0,
                    "last_error": "", "next_attempt_at": ts, "created_at": ts,
                })
    log.info("run %s: %d notification(s) queued for %d owner(s)", run_id, planned, len(groups))
    return planned


def _insert_once(conn: sa.Connection, row: dict[str, Any]) -> int:
    """Insert unless uq_notification_once already holds the key; 1 if inserted."""
    table = appdb.notifications
    dialect = conn.dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt: Any = pg_insert(table).values(row).on_conflict_do_nothing(constraint="uq_notification_once")
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(table).values(row).on_conflict_do_nothing(
            index_elements=["run_id", "recipient", "channel"])
    else:
        # Any other database: let the constraint refuse the duplicate inside a savepoint.
        try:
            with conn.begin_nested():
                conn.execute(table.insert().values(row))
            return 1
        except sa.exc.IntegrityError:
            return 0
    return 1 if conn.execute(stmt).rowcount == 1 else 0


def render(mav: str, run_id: str, recipient: str, alerts: Sequence[Mapping[str, Any]], *,
           base_url: str) -> tuple[str, str]:
    """(subject, body) of one owner's message: alert facts and links (under `base_url`) only, never a secret."""
    ordered = sorted(alerts, key=lambda a: (-_rank(a.get("severity")), str(a.get("first_event_time") or ""),
                                            int(a["id"])))
    n = len(ordered)
    highest = str(ordered[0].get("severity") or "unknown").upper()
    subject = f"[trailhouse] {n} new alert{'' if n == 1 else 's'} (highest: {highest}) — {mav}"
    base = base_url.rstrip("/")
    lines = [f"trailhouse raised {n} new alert{'' if n == 1 else 's'} in MAV {mav} (run {run_id}).", ""]
    for i, a in enumerate(ordered[:MAX_LISTED], 1):
        event_id = str(a.get("first_event_id") or "")
        count = int(a.get("count") or 1)
        lines += [
            f"{i}. [{str(a.get('severity') or '').upper()}] {_clean(a.get('title'))}",
            f"   Account:    {_clean(a.get('account_id'))}",
            f"   Rule:       {_clean(a.get('rule_id'))} ({_clean(a.get('title'))})",
            f"   Severity:   {_clean(a.get('severity'))}",
            f"   Principal:  {_clean(a.get('principal'))}",
            f"   Source IP:  {_clean(a.get('source_ip'))}",
            f"   Event:      {_clean(a.get('event_name'))}" + (f" ({count} matching events)" if count > 1 else ""),
            f"   Time:       {_when(a.get('first_event_time'))}",
            f"   Link:       {base}/trailhouse{event_link(event_id)}",
            f"   Alert id:   {int(a['id'])}",
            "",
        ]
    if n > MAX_LISTED:
        lines += [f"... and {n - MAX_LISTED} more alert(s) of this run: see trailhouse ({base}/trailhouse).", ""]
    lines.append(f"You receive this because owners.yaml lists '{recipient}' as an owner of these accounts or rules.")
    return subject, "\n".join(lines) + "\n"


def _rank(severity: Any) -> int:
    return SEVERITY_RANK.get(str(severity or "").lower(), -1)


def _clean(value: Any) -> str:
    # Principals and IPs come from CloudTrail records: keep them to one line each.
    text = "" if value is None else str(value)
    return re.sub(r"[\x00-\x1f\x7f]+", " ", text).strip() or "-"


def _when(value: Any) -> str:
    if isinstance(value, datetime):
        value = value if value.tzinfo else value.replace(tzinfo=UTC)
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return _clean(value)


def _utc(ts: datetime | None) -> datetime:
    # SQLite keeps timestamps as naive text: compare everything in UTC.
    if ts is None:
        return appdb.now()
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


# --- delivery -----------------------------------------------------------------------------


def deliver(eng: sa.Engine, *, owners_file: Path, run_id: str | None = None, now: datetime | None = None,
            max_attempts: int = 5, owners: Sequence[Owner] | None = None) -> dict[str, int]:
    """Send every due pending row (of one run, or of all); returns {sent, retrying, failed}.

    Each row's owner and channel are looked up in `owners` or else the file `owners_file`.

    A failed send is retried after 30 s × 2^(attempts before it) — 30 s, 1 min, 2 min, 4 min —
    at the next deliver() after that time; the row is `failed` after max_attempts.
    """
    ts = _utc(now)
    counts = {"sent": 0, "retrying": 0, "failed": 0}
    t = appdb.notifications
    q = sa.select(t).where(t.c.status == "pending", t.c.next_attempt_at <= ts).order_by(t.c.id)
    if run_id is not None:
        q = q.where(t.c.run_id == run_id)
    with eng.connect() as conn:
        due = [dict(r) for r in conn.execute(q).mappings()]
    if not due:
        return counts
    config_error = ""
    try:
        by_name = {o.name: o for o in (load_owners(owners_file) if owners is None else owners)}
    except ConfigError as exc:  # every due row fails this attempt, visibly, until the file is fixed
        by_name, config_error = {}, str(exc)
    for row in due:
        if not _claim(eng, row, ts):
            continue  # another deliver() has it
        attempts = row["attempts"] + 1
        if row["attempts"] >= max_attempts:
            # The previous attempt claimed the row and never reported back (it died mid-send).
            _update(eng, row["id"], status="failed", attempts=row["attempts"],
                    last_error=f"gave up after {row['attempts']} attempts; the last one did not finish")
            counts["failed"] += 1
            continue
        secrets: list[str] = []
        try:
            notifier = _notifier_for(row, by_name, config_error, secrets, owners_file)
            secrets += notifier.secrets
            notifier.send(row["subject"], row["body"], message_id(row),
                          alert_ids=[int(i) for i in row["alert_ids"].split(",") if i])
            faults.point("notify.after_send")
        except Exception as exc:  # any failure of a channel is recorded, then retried
            error = _redact(f"{type(exc).__name__}: {exc}", secrets)
            if attempts >= max_attempts:
                _update(eng, row["id"], status="failed", last_error=error)
                counts["failed"] += 1
                log.error("notification %s to %s via %s failed for good after %d attempts: %s",
                          row["id"], row["recipient"], row["channel"], attempts, error)
            else:
                _update(eng, row["id"], last_error=error, next_attempt_at=ts + BACKOFF * 2 ** row["attempts"])
                counts["retrying"] += 1
                log.warning("notification %s to %s via %s failed (attempt %d of %d), will retry: %s",
                            row["id"], row["recipient"], row["channel"], attempts, max_attempts, error)
        else:
            _update(eng, row["id"], status="sent", sent_at=ts, last_error="")
            counts["sent"] += 1
            log.info("notification %s sent to %s via %s", row["id"], row["recipient"], row["channel"])
    return counts


def _claim(eng: sa.Engine, row: Mapping[str, Any], ts: datetime) -> bool:
    """Take the row for this deliver(): count the attempt and push it out of reach for LEASE."""
    t = appdb.notifications
    with eng.begin() as conn:
        res = conn.execute(
            t.update()
            .where(t.c.id == row["id"], t.c.status == "pending", t.c.attempts == row["attempts"],
                   t.c.next_attempt_at <= ts)
            .values(attempts=row["attempts"] + 1, next_attempt_at=ts + LEASE)
        )
    return res.rowcount == 1


def _update(eng: sa.Engine, row_id: int, **values: Any) -> None:
    if "last_error" in values:
        values["last_error"] = values["last_error"][:MAX_ERROR]
    with eng.begin() as conn:
        conn.execute(appdb.notifications.update().where(appdb.notifications.c.id == row_id).values(**values))


def message_id(row: Mapping[str, Any]) -> str:
    """The message's deterministic id: the same on every attempt, unique across runs and databases."""
    run_hash = hashlib.sha256(f"{row['mav']}\0{row['run_id']}".encode()).hexdigest()[:12]
    return f"trailhouse-{row['id']}-{run_hash}"


def outbox_status(eng: sa.Engine, run_id: str | None = None, *, limit: int = 200) -> list[dict[str, Any]]:
    """The newest outbox rows (of one run, or of all), as dicts with UTC timestamps."""
    t = appdb.notifications
    q = sa.select(t).order_by(t.c.id.desc()).limit(limit)
    if run_id is not None:
        q = q.where(t.c.run_id == run_id)
    with eng.connect() as conn:
        rows = [dict(r) for r in conn.execute(q).mappings()]
    for r in rows:
        for k in ("next_attempt_at", "created_at", "sent_at"):
            if isinstance(r[k], datetime) and r[k].tzinfo is None:
                r[k] = r[k].replace(tzinfo=UTC)
    return rows


# --- channels -----------------------------------------------------------------------------


class Notifier(Protocol):
    secrets: list[str]

    def send(self, subject: str, body: str, message_id: str, *, alert_ids: Sequence[int] = ()) -> None: ...


def _notifier_for(row: Mapping[str, Any], by_name: Mapping[str, Owner], config_error: str,
                  secrets: list[str], owners_file: Path) -> Notifier:
    """The notifier of a row's channel; `secrets` receives the connection's secrets as soon as it is read."""
    if config_error:
        raise NotifyError(config_error)
    owner = by_name.get(row["recipient"])
    if owner is None:
        raise NotifyError(f"owner {row['recipient']!r} is no longer in {owners_file}")
    channel = next((c for c in owner.channels if c.label == row["channel"]), None)
    if channel is None:
        raise NotifyError(f"owner {row['recipient']!r} no longer has the channel {row['channel']} in {owners_file}")
    conn = _connection(channel.connection)
    extra = _extra(conn)
    secrets += [s for s in (conn.password, conn.host if _is_url(conn.host) else None) if s]
    secrets += [str(v) for k, v in extra.items() if re.search(r"secret|token|password|key", k, re.I) and v]
    if isinstance(channel, EmailChannel):
        if not conn.host:
            raise NotifyError(f"connection {channel.connection!r} has no host (the SMTP server)")
        return EmailNotifier(host=conn.host, port=conn.port, login=conn.login or None, password=conn.password or None,
                             sender=str(extra.get("from") or conn.login or "trailhouse@localhost"), to=channel.to,
                             starttls=_flag(extra.get("starttls")), use_ssl=_flag(extra.get("ssl")))
    if isinstance(channel, SlackChannel | WebhookChannel):
        url = _url_of(conn, channel.connection)
        if isinstance(channel, SlackChannel):
            return SlackNotifier(url=url)
        # A URL in the host leaves the password free for a bearer token.
        token = conn.password if conn.password and conn.password != url else None
        return WebhookNotifier(url=url, token=token)
    arn = SNS_ARN_RE.match(channel.topic_arn)
    region = extra.get("region_name") or (arn.group(1) if arn else None)
    return SnsNotifier(topic_arn=channel.topic_arn, access_key_id=conn.login or None,
                       secret_access_key=conn.password or None, region_name=str(region),
                       endpoint_url=extra.get("endpoint_url") or None)


def _connection(conn_id: str) -> Any:
    try:
        return airflow_env.get_connection(conn_id)
    except LookupError as exc:
        raise NotifyError(f"no Airflow connection {conn_id!r}; add it with `airflow connections add "
                          f"{conn_id} ...` (see owners.yaml's channel types)") from exc


def _extra(conn: Any) -> dict[str, Any]:
    try:
        extra = conn.extra_dejson
    except Exception:  # malformed extra: treat as empty rather than echo it in an error
        return {}
    return extra if isinstance(extra, dict) else {}


def _flag(value: Any) -> bool:
    return value is True or str(value).strip().lower() in ("true", "1", "yes", "on")


def _is_url(value: Any) -> bool:
    return isinstance(value, str) and value.lower().startswith(("http://", "https://"))


def _url_of(conn: Any, conn_id: str) -> str:
    for candidate in (conn.password, conn.host):
        if _is_url(candidate):
            return str(candidate)
    raise NotifyError(f"connection {conn_id!r} holds no http(s) URL in its password or host")


class EmailNotifier:
    """One email to all of a channel's addresses, over SMTP, SMTPS or SMTP with STARTTLS."""

    def __init__(self, *, host: str, port: int | None = None, login: str | None = None, password: str | None = None,
                 sender: str, to: Sequence[str], starttls: bool = False, use_ssl: bool = False,
                 timeout: float = TIMEOUT) -> None:
        self.host, self.login, self.password, self.sender, self.to = host, login, password, sender, list(to)
        self.port = port or (465 if use_ssl else 587 if starttls else 25)
        self.starttls, self.use_ssl, self.timeout = starttls, use_ssl, timeout
        self.secrets = [password] if password else []

    def send(self, subject: str, body: str, message_id: str, *, alert_ids: Sequence[int] = ()) -> None:
        msg = EmailMessage()
        msg["Subject"] = subject
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.to)
        msg["Date"] = formatdate(usegmt=True)
        msg["Message-ID"] = f"<{message_id}@trailhouse>"
        msg.set_content(body)
        context = ssl.create_default_context()
        smtp: smtplib.SMTP
        if self.use_ssl:
            smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        with smtp:
            if self.starttls:
                smtp.starttls(context=context)
            if self.login:
                smtp.login(self.login, self.password or "")
            refused = smtp.send_message(msg, from_addr=self.sender, to_addrs=self.to)
        if refused:
            # The others have it: retrying would send them a second copy.
            log.warning("the SMTP server refused %d of %d recipients of message %s: %s",
                        len(refused), len(self.to), message_id, sorted(refused))


class _HttpNotifier:
    def __init__(self, *, url: str, timeout: float = TIMEOUT) -> None:
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise NotifyError("the endpoint URL must be http(s)")
        self.url, self.timeout = url, timeout
        self.secrets = [url]

    def _post(self, payload: dict[str, Any], message_id: str, headers: Mapping[str, str] | None = None) -> None:
        req = urllib.request.Request(self.url, data=json.dumps(payload).encode(), method="POST", headers={
            "Content-Type": "application/json", "User-Agent": "trailhouse", "Idempotency-Key": message_id,
            **(headers or {})})
        try:
            with _OPENER.open(req, timeout=self.timeout) as resp:
                status = resp.status
        except urllib.error.HTTPError as exc:
            detail = exc.read(300).decode("utf-8", "replace").strip()
            raise NotifyError(f"HTTP {exc.code} from the endpoint" + (f": {detail}" if detail else "")) from None
        except urllib.error.URLError as exc:
            raise NotifyError(f"cannot reach the endpoint: {exc.reason}") from None
        if not 200 <= status < 300:
            raise NotifyError(f"HTTP {status} from the endpoint")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # urllib turns a redirected POST into a GET without the message, then reports success:
    # a redirect is a failure here (and fixing the URL is the cure).
    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


class SlackNotifier(_HttpNotifier):
    """A Slack incoming webhook: POST {"text": ...}."""

    def send(self, subject: str, body: str, message_id: str, *, alert_ids: Sequence[int] = ()) -> None:
        # Slack reads <...> as links and mentions (<!channel>): escape its three control characters.
        text = f"*{subject}*\n{body}".replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        self._post({"text": text}, message_id)


class WebhookNotifier(_HttpNotifier):
    """Any HTTPS endpoint: POST {"subject", "body", "alerts", "id"} as JSON."""

    def __init__(self, *, url: str, token: str | None = None, timeout: float = TIMEOUT) -> None:
        super().__init__(url=url, timeout=timeout)
        self.token = token
        if token:
            self.secrets.append(token)

    def send(self, subject: str, body: str, message_id: str, *, alert_ids: Sequence[int] = ()) -> None:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self._post({"subject": subject, "body": body, "alerts": list(alert_ids), "id": message_id}, message_id,
                   headers)


class SnsNotifier:
    """An SNS topic, published to with the connection's key pair (or the default credentials)."""

    def __init__(self, *, topic_arn: str, access_key_id: str | None = None, secret_access_key: str | None = None,
                 region_name: str | None = None, endpoint_url: str | None = None) -> None:
        self.topic_arn, self.region_name, self.endpoint_url = topic_arn, region_name, endpoint_url
        self.access_key_id, self.secret_access_key = access_key_id, secret_access_key
        self.secrets = [secret_access_key] if secret_access_key else []

    def send(self, subject: str, body: str, message_id: str, *, alert_ids: Sequence[int] = ()) -> None:
        import boto3
        from botocore.config import Config

        client = boto3.client(
            "sns", region_name=self.region_name, endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key_id, aws_secret_access_key=self.secret_access_key,
            config=Config(connect_timeout=TIMEOUT, read_timeout=TIMEOUT, retries={"max_attempts": 2}),
        )
        params: dict[str, Any] = {
            "TopicArn": self.topic_arn,
            # SNS subjects are ASCII, one line, under 100 characters.
            "Subject": subject.replace("—", "-").encode("ascii", "replace").decode()[:99],
            "Message": body,
            "MessageAttributes": {"trailhouse_id": {"DataType": "String", "StringValue": message_id}},
        }
        if self.topic_arn.endswith(".fifo"):
            params["MessageGroupId"] = "trailhouse"
            params["MessageDeduplicationId"] = message_id
        client.publish(**params)


def _redact(text: str, secrets: Iterable[str | None]) -> str:
    """Error text with every form of the given secrets, and any URL's path and user info, masked."""
    forms: dict[str, str] = {}
    for secret in secrets:
        if not secret or len(secret) < 3:
            continue
        for form in (secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote(secret), secret.strip()):
            forms[form] = "***"
        if _is_url(secret):
            parts = urllib.parse.urlsplit(secret)
            # The whole URL keeps its host: the error should still say which endpoint failed.
            forms[secret] = f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}/***"
            for form in (parts.path, parts.query, parts.netloc if "@" in parts.netloc else ""):
                forms.setdefault(form, "***")
            # A webhook's token is one path segment or query value: mask it wherever it turns up alone.
            for form in [seg for seg in parts.path.split("/") if len(seg) >= 6] + [
                    v for _, v in urllib.parse.parse_qsl(parts.query) if len(v) >= 6]:
                forms.setdefault(form, "***")
    for form in sorted((f for f in forms if f and f != "/"), key=len, reverse=True):
        text = text.replace(form, forms[form])
    # Belt and braces for URLs no connection told us about (a redirect target, a proxy).
    text = re.sub(r"(?i)(https?://)[^/\s'\"@]*@", r"\1***@", text)
    text = re.sub(r"(?i)(https?://[^/\s'\"]+)/[^\s'\"]*", r"\1/***", text)
    return text
