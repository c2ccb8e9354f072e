"""The app database: the ledger of processed keys and each run's figures (SQLAlchemy + Alembic)."""

from __future__ import annotations

import contextlib
import hashlib
import re
import threading
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from trailhouse import storage
from trailhouse.common import chunks

metadata = sa.MetaData()

ledger = sa.Table(
    "ledger_objects",
    metadata,
    sa.Column("mav", sa.String(128), primary_key=True),
    sa.Column("key", sa.String(1024), primary_key=True),
    sa.Column("etag", sa.String(128), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    # CloudTrail (log file), CloudTrail-Digest, CloudTrail-Insight
    sa.Column("kind", sa.String(32), nullable=False),
    # loaded | quarantined | recorded (digest and Insights files, kept for integrity checks)
    # | pending (its transform failed: the next run loads it again)
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("events", sa.Integer, nullable=False, default=0),
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Column("sha256", sa.String(64)),
    # comma-separated event dates of the key's events (the partitions they went to)
    sa.Column("event_dates", sa.Text),
    # when the rules ran over the key's events (null: not yet; the next evaluation takes it)
    sa.Column("evaluated_at", sa.DateTime(timezone=True)),
    sa.Column("run_id", sa.String(250), nullable=False),
    sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("mav", sa.String(128), primary_key=True),
    sa.Column("run_id", sa.String(250), primary_key=True),
    sa.Column("interval_start", sa.DateTime(timezone=True)),
    sa.Column("interval_end", sa.DateTime(timezone=True)),
    sa.Column("started_at", sa.DateTime(timezone=True)),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("objects_found", sa.Integer, nullable=False, default=0),
    sa.Column("objects_skipped", sa.Integer, nullable=False, default=0),
    sa.Column("objects_loaded", sa.Integer, nullable=False, default=0),
    sa.Column("objects_quarantined", sa.Integer, nullable=False, default=0),
    sa.Column("objects_recorded", sa.Integer, nullable=False, default=0),
    sa.Column("events_loaded", sa.Integer, nullable=False, default=0),
    sa.Column("duplicates_dropped", sa.Integer, nullable=False, default=0),
    sa.Column("list_calls", sa.Integer, nullable=False, default=0),
    sa.Column("get_calls", sa.Integer, nullable=False, default=0),
    sa.Column("bytes", sa.BigInteger, nullable=False, default=0),
    sa.Column("partitions", sa.Text, nullable=False, default=""),
    sa.Column("message", sa.Text, nullable=False, default=""),
)

_MIGRATED: set[str] = set()
_LOCK = threading.Lock()
_ENGINES: dict[str, sa.Engine] = {}


def _alembic_config(url: str) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def engine(url: str) -> sa.Engine:
    """An engine on the app database, migrated to the latest schema on first use."""
    with _LOCK:
        eng = _ENGINES.get(url)
        if eng is None:
            if url.startswith("sqlite:///"):
                Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            eng = sa.create_engine(url, pool_pre_ping=True)
            if url.startswith("sqlite"):
                # Several task processes share the file: wait for a lock instead of failing.
                sa.event.listen(eng, "connect", _sqlite_pragmas)
            _ENGINES[url] = eng
        if url not in _MIGRATED and _at_head(eng):
            _MIGRATED.add(url)  # nothing to do: alembic (~1 s of imports) stays unloaded
        if url not in _MIGRATED:
            from alembic import command

            cfg = _alembic_config(url)
            with _migration_lock(eng), eng.begin() as conn:
                if eng.dialect.name == "postgresql":
                    # Many tasks may first open a fresh database at once: one migrates, the
                    # others wait and then find it at head.
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(7271650105)"))
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
            _MIGRATED.add(url)
        return eng


VERSION_TABLE = "trailhouse_alembic_version"  # migrations/env.py keeps alembic's state there


def head_revision() -> str | None:
    """The newest migration's revision id, read from the migration files (None if not one head)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (Path(__file__).with_name("migrations") / "versions").glob("*.py"):
        text = path.read_text()
        revisions.update(re.findall(r'^revision\s*=\s*"([^"]+)"', text, re.M))
        parents.update(re.findall(r'^down_revision\s*=\s*"([^"]+)"', text, re.M))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _at_head(eng: sa.Engine) -> bool:
    """Whether the database is already migrated to head_revision()."""
    head = head_revision()
    try:
        with eng.connect() as conn:
            current = conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    except sa.exc.DBAPIError:  # a new database: no version table yet
        return False
    return head is not None and current == [head]


@contextlib.contextmanager
def _migration_lock(eng: sa.Engine) -> Iterator[None]:
    if eng.dialect.name != "sqlite" or not eng.url.database:
        yield
        return
    path = Path(eng.url.database)
    with storage.file_lock(path.with_name(f".{path.name}.migrate.lock")):
        yield


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout = 30000")
    cur.execute("PRAGMA journal_mode = WAL")
    cur.close()


@contextlib.contextmanager
def writer_lock(eng: sa.Engine, name: str = "cloudtrail_events") -> Iterator[None]:
    """Held while a commit writes the warehouse table: one writer at a time, on any machine.

    PostgreSQL: a session advisory lock (every worker of a cluster shares the database).
    SQLite means one machine: a file lock beside the database file (so a warehouse shared by
    workers on several machines needs the PostgreSQL app database).
    """
    if eng.dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        # Autocommit: the session holds the lock without an open transaction, so no
        # idle-in-transaction timeout can end it halfway through a commit.
        with eng.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": key})
            try:
                yield
            finally:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
        return
    db_path = Path(eng.url.database or "trailhouse.db")
    with storage.file_lock(db_path.with_name(f".{db_path.name}.{name}.lock")):
        yield


def now() -> datetime:
    return datetime.now(UTC)


def ledgered(eng: sa.Engine, mav: str, prefix: str) -> dict[str, tuple[str, str]]:
    """{key: (etag, status)} of the MAV's ledger entries under a key prefix."""
    # A range on the primary key instead of LIKE: prefixes contain '_' and an index range
    # scan stays cheap however long the history.
    upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    q = sa.select(ledger.c.key, ledger.c.etag, ledger.c.status).where(
        ledger.c.mav == mav, ledger.c.key >= prefix, ledger.c.key < upper
    )
    with eng.connect() as conn:
        return {k: (e, s) for k, e, s in conn.execute(q)}


def record_objects(eng: sa.Engine, mav: str, run_id: str, rows: Iterable[dict[str, Any]],
                   *, figures: dict[str, Any] | None = None) -> int:
    """Upsert ledger rows (key, etag, size, kind, status, events, reason, ...).

    With `figures`, the run's figures are saved in the same transaction: a crash leaves
    both or neither, never a ledger whose run says it loaded nothing.
    """
    rows = [dict(r, mav=mav, run_id=run_id, processed_at=now()) for r in rows]
    with eng.begin() as conn:
        for chunk in chunks(rows, 500):
            keys = [r["key"] for r in chunk]
            conn.execute(ledger.delete().where(ledger.c.mav == mav, ledger.c.key.in_(keys)))
            conn.execute(ledger.insert(), chunk)
        if figures is not None:
            _save_run(conn, mav, run_id, figures)
    return len(rows)


def save_run(eng: sa.Engine, mav: str, run_id: str, **figures: Any) -> None:
    with eng.begin() as conn:
        _save_run(conn, mav, run_id, figures)


def _save_run(conn: Any, mav: str, run_id: str, figures: dict[str, Any]) -> None:
    exists = conn.execute(sa.select(runs.c.run_id).where(runs.c.mav == mav, runs.c.run_id == run_id)).first()
    if exists:
        conn.execute(runs.update().where(runs.c.mav == mav, runs.c.run_id == run_id).values(**figures))
    else:
        conn.execute(runs.insert().values(mav=mav, run_id=run_id, **{"status": "running", **figures}))


def get_run(eng: sa.Engine, mav: str, run_id: str) -> dict[str, Any] | None:
    with eng.connect() as conn:
        row = conn.execute(sa.select(runs).where(runs.c.mav == mav, runs.c.run_id == run_id)).mappings().first()
    return dict(row) if row else None


def latest_runs(eng: sa.Engine, mav: str, limit: int = 10) -> list[dict[str, Any]]:
    with eng.connect() as conn:
        q = sa.select(runs).where(runs.c.mav == mav).order_by(runs.c.started_at.desc()).limit(limit)
        return [dict(r) for r in conn.execute(q).mappings()]


# --- discovery's memory (migration 0007) -----------------------------------------------

# One row per MAV: when its last full scan of the account and region folders ran, and for
# which source, prefix and accounts filter (a changed MAV file invalidates the memory).
discovery_scans = sa.Table(
    "discovery_scans",
    metadata,
    sa.Column("mav", sa.String(128), primary_key=True),
    sa.Column("scope", sa.Text, nullable=False),
    sa.Column("scanned_at", sa.DateTime(timezone=True), nullable=False),
)

# The streams (account x kind x region folders) that scan found.
discovery_streams = sa.Table(
    "discovery_streams",
    metadata,
    sa.Column("mav", sa.String(128), primary_key=True),
    # e.g. AWSLogs/o-abc/111122223333/CloudTrail/us-east-1/
    sa.Column("prefix", sa.String(1024), primary_key=True),
    # the account folder, e.g. AWSLogs/o-abc/111122223333/
    sa.Column("base", sa.String(1024), nullable=False),
    sa.Column("account", sa.String(12), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("region", sa.String(64), nullable=False),
    # set on a stream the scan found for the first time: the previous scan's time, from
    # which runs list it until the next scan (null: the run's look-back is enough)
    sa.Column("since", sa.DateTime(timezone=True)),
)

# Keys read from the MAV's notification queue, kept until the ledger holds them: the queue's
# messages are deleted once their keys are here, so a crash loses nothing.
discovery_inbox = sa.Table(
    "discovery_inbox",
    metadata,
    sa.Column("mav", sa.String(128), primary_key=True),
    sa.Column("key", sa.String(1024), primary_key=True),
    # from an S3 event notification (CloudTrail's own notification has neither)
    sa.Column("etag", sa.String(128)),
    sa.Column("size", sa.BigInteger),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
)


def _utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes: they were written as UTC."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


utc = _utc  # for the modules that read this database's times


def last_scan(eng: sa.Engine, mav: str) -> tuple[str, datetime] | None:
    """(scope, scanned_at) of the MAV's last full discovery scan, or None."""
    with eng.connect() as conn:
        row = conn.execute(sa.select(discovery_scans.c.scope, discovery_scans.c.scanned_at)
                           .where(discovery_scans.c.mav == mav)).first()
    return (row[0], _utc(row[1])) if row else None  # type: ignore[return-value]


def remembered_streams(eng: sa.Engine, mav: str) -> list[dict[str, Any]]:
    """The streams of the MAV's last scan: prefix, base, account, kind, region, since."""
    with eng.connect() as conn:
        rows = conn.execute(sa.select(discovery_streams).where(discovery_streams.c.mav == mav)
                            .order_by(discovery_streams.c.prefix)).mappings()
        return [{**{k: v for k, v in r.items() if k != "mav"}, "since": _utc(r["since"])} for r in rows]


def _serialize(conn: Any, name: str) -> None:
    """On PostgreSQL, one transaction at a time per name (held to its end): two runs replacing
    the same rows at once would otherwise both insert them. SQLite serialises writers anyway."""
    if conn.dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


def remember_streams(eng: sa.Engine, mav: str, scope: str, scanned_at: datetime,
                     streams: Iterable[dict[str, Any]]) -> None:
    """Replace the MAV's remembered streams and scan time in one transaction."""
    rows = [dict(s, mav=mav) for s in streams]
    with eng.begin() as conn:
        _serialize(conn, f"discovery_streams:{mav}")
        conn.execute(discovery_streams.delete().where(discovery_streams.c.mav == mav))
        conn.execute(discovery_scans.delete().where(discovery_scans.c.mav == mav))
        for chunk in chunks(rows, 500):
            conn.execute(discovery_streams.insert(), chunk)
        conn.execute(discovery_scans.insert().values(mav=mav, scope=scope, scanned_at=scanned_at))


def inbox_add(eng: sa.Engine, mav: str, rows: Iterable[dict[str, Any]]) -> int:
    """Upsert keys read from the queue (key, etag, size); returns how many."""
    rows = list({r["key"]: dict(r, mav=mav, received_at=now()) for r in rows}.values())
    with eng.begin() as conn:
        _serialize(conn, f"discovery_inbox:{mav}")
        for chunk in chunks(rows, 500):
            keys = [r["key"] for r in chunk]
            conn.execute(discovery_inbox.delete().where(discovery_inbox.c.mav == mav, discovery_inbox.c.key.in_(keys)))
            conn.execute(discovery_inbox.insert(), chunk)
    return len(rows)


def inbox(eng: sa.Engine, mav: str) -> list[dict[str, Any]]:
    """The MAV's inbox rows (key, etag, size), by key."""
    q = (sa.select(discovery_inbox.c.key, discovery_inbox.c.etag, discovery_inbox.c.size)
         .where(discovery_inbox.c.mav == mav).order_by(discovery_inbox.c.key))
    with eng.connect() as conn:
        return [dict(r) for r in conn.execute(q).mappings()]


def inbox_drop(eng: sa.Engine, mav: str, keys: Iterable[str]) -> None:
    """Remove keys from the MAV's inbox (loaded, or gone from the bucket)."""
    with eng.begin() as conn:
        for chunk in chunks(list(keys), 500):
            conn.execute(discovery_inbox.delete().where(discovery_inbox.c.mav == mav, discovery_inbox.c.key.in_(chunk)))


def pending_objects(eng: sa.Engine, mav: str) -> list[tuple[str, str, int]]:
    """(key, etag, size) of the MAV's ledger entries left `pending` by a failed transform."""
    q = sa.select(ledger.c.key, ledger.c.etag, ledger.c.size).where(ledger.c.mav == mav, ledger.c.status == "pending")
    with eng.connect() as conn:
        return [(k, e, int(n)) for k, e, n in conn.execute(q.order_by(ledger.c.key))]


def ledger_entries(eng: sa.Engine, mav: str, keys: Iterable[str]) -> dict[str, tuple[str, str]]:
    """{key: (etag, status)} of the given keys that the MAV's ledger holds."""
    out: dict[str, tuple[str, str]] = {}
    with eng.connect() as conn:
        for chunk in chunks(list(keys), 500):
            q = sa.select(ledger.c.key, ledger.c.etag, ledger.c.status).where(ledger.c.mav == mav,
                                                                               ledger.c.key.in_(chunk))
            out.update({k: (e, s) for k, e, s in conn.execute(q)})
    return out


# --- rules, alerts, roles (migration 0002) ----------------------------------------------

custom_rules = sa.Table(
    "custom_rules",
    metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("title", sa.String(256), nullable=False),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("condition", sa.Text, nullable=False),
    # comma-separated account ids; "" = every account (security administrators only)
    sa.Column("scope_accounts", sa.Text, nullable=False, default=""),
    sa.Column("dedup_fields", sa.Text, nullable=False, default=""),
    sa.Column("dedup_period_minutes", sa.Integer, nullable=False, default=60),
    sa.Column("owner", sa.String(256), nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False, default=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_by", sa.String(256), nullable=False),
    # JSON: attack, references, tags, runbook, tests, origin (see rulebook.SPEC_FIELDS)
    sa.Column("spec", sa.Text, nullable=True),
)

rule_switches = sa.Table(
    "rule_switches",
    metadata,
    sa.Column("rule_id", sa.String(128), primary_key=True),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("updated_by", sa.String(256), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("rule_id", sa.String(128), nullable=False),
    sa.Column("dedup_hash", sa.String(64), nullable=False),
    sa.Column("dedup_key", sa.Text, nullable=False),
    sa.Column("title", sa.String(256), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("mav", sa.String(128), nullable=False),
    sa.Column("account_id", sa.String(12)),
    sa.Column("principal", sa.Text),
    sa.Column("source_ip", sa.String(256)),
    sa.Column("event_name", sa.String(256)),
    sa.Column("first_event_id", sa.String(128), nullable=False),
    sa.Column("first_event_time", sa.DateTime(timezone=True)),
    sa.Column("last_event_time", sa.DateTime(timezone=True)),
    sa.Column("period_start", sa.DateTime(timezone=True)),
    sa.Column("count", sa.Integer, nullable=False, default=1),
    # open | acknowledged | resolved
    sa.Column("status", sa.String(16), nullable=False, default="open"),
    sa.Column("status_by", sa.String(256)),
    sa.Column("status_at", sa.DateTime(timezone=True)),
    sa.Column("run_id", sa.String(250), nullable=False),
    # False for alerts of backfilled history when the MAV says not to notify them
    sa.Column("notify", sa.Boolean, nullable=False, default=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    # when the alert went into the notification outbox (null: not yet)
    sa.Column("planned_at", sa.DateTime(timezone=True)),
    sa.UniqueConstraint("rule_id", "dedup_hash", name="uq_alert_dedup"),
)

alert_events = sa.Table(
    "alert_events",
    metadata,
    sa.Column("alert_id", sa.Integer, sa.ForeignKey("alerts.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("event_id", sa.String(128), primary_key=True),
    sa.Column("event_time", sa.DateTime(timezone=True)),
    sa.Column("event_date", sa.Date),
    sa.Column("account_id", sa.String(12)),
)

user_roles = sa.Table(
    "user_roles",
    metadata,
    sa.Column("username", sa.String(256), primary_key=True),
    sa.Column("is_admin", sa.Boolean, nullable=False, default=False),
    sa.Column("accounts", sa.Text, nullable=False, default=""),
    sa.Column("granted_by", sa.String(256), nullable=False),
    sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False),
)


# --- notification outbox (migration 0003) --------------------------------------------------

notifications = sa.Table(
    "notifications",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(250), nullable=False),
    sa.Column("mav", sa.String(128), nullable=False),
    # the owner's name in owners.yaml
    sa.Column("recipient", sa.String(256), nullable=False),
    # a stable label of one of the owner's channels, e.g. "email:trailhouse_smtp:3f2a9c1e"
    sa.Column("channel", sa.String(256), nullable=False),
    # comma-separated, sorted alert ids
    sa.Column("alert_ids", sa.Text, nullable=False, default=""),
    sa.Column("subject", sa.Text, nullable=False),
    # the rendered message: alert facts only, never a channel secret
    sa.Column("body", sa.Text, nullable=False),
    # pending | sent | failed
    sa.Column("status", sa.String(16), nullable=False, default="pending"),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("last_error", sa.Text, nullable=False, default=""),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("sent_at", sa.DateTime(timezone=True)),
    sa.UniqueConstraint("run_id", "recipient", "channel", name="uq_notification_once"),
    sa.Index("ix_notifications_due", "status", "next_attempt_at"),
)


# --- rule problems (migration 0008) ----------------------------------------------------------

# Per run, each rule the evaluation stopped at its time budget, skipped on a failure or a
# refused stored condition, or whose matches it cut at the cap (alerting.rules.Problem):
# its owner and the administrators see them on the rule's page and in `trailhouse rules problems`.
rule_problems = sa.Table(
    "rule_problems",
    metadata,
    sa.Column("mav", sa.String(128), primary_key=True),
    sa.Column("run_id", sa.String(250), primary_key=True),
    sa.Column("rule_id", sa.String(128), primary_key=True),
    # timeout | error | refused | truncated
    sa.Column("kind", sa.String(16), nullable=False),
    # names the rule's columns and the limit, never a value of an event
    sa.Column("detail", sa.Text, nullable=False),
    # the custom rule's owner when it happened (null: a built-in rule)
    sa.Column("owner", sa.String(256)),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_rule_problems_rule", "rule_id", "recorded_at"),
)


def record_rule_problems(eng: sa.Engine, mav: str, run_id: str, problems: Iterable[dict[str, Any]]) -> int:
    """Replace the run's rule problems with `problems` (rule_id, kind, detail, owner): a retried
    evaluation records what its own attempt found, once."""
    rows = [dict(p, mav=mav, run_id=run_id, recorded_at=now()) for p in problems]
    rp = rule_problems
    with eng.begin() as conn:
        conn.execute(rp.delete().where(rp.c.mav == mav, rp.c.run_id == run_id))
        for chunk in chunks(rows, 500):
            conn.execute(rp.insert(), chunk)
    return len(rows)


def latest_rule_problems(eng: sa.Engine, *, rule_id: str | None = None, mav: str | None = None,
                         run_ids: Iterable[str] | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """Recorded rule problems, newest first: of one rule, one MAV and/or some runs."""
    rp = rule_problems
    q = sa.select(rp).order_by(rp.c.recorded_at.desc(), rp.c.rule_id).limit(limit)
    if rule_id is not None:
        q = q.where(rp.c.rule_id == rule_id)
    if mav is not None:
        q = q.where(rp.c.mav == mav)
    if run_ids is not None:
        q = q.where(rp.c.run_id.in_(list(run_ids)))
    with eng.connect() as conn:
        return [{**r, "recorded_at": _utc(r["recorded_at"])} for r in conn.execute(q).mappings()]


# --- baselines of new_term rules (migration 0011) ----------------------------------------------

# Per MAV and baseline (a new_term rule's id and a digest of its condition and fields: see
# alerting.rules.Rule.baseline_id), the first and last sighting of each combination of the
# rule's field values among the events its condition picks. Updated from each run's events
# alone (alerting.baselines.Store.record), never by reading the history.
baselines = sa.Table(
    "baselines",
    metadata,
    sa.Column("baseline", sa.String(160), primary_key=True),
    sa.Column("mav", sa.String(128), primary_key=True),
    # the fields' values as text, joined by U+001F (alerting.rules.KEY_SEPARATOR)
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
    sa.Column("first_event_id", sa.String(128), nullable=False),
    sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_baselines_first_seen", "baseline", "mav", "first_seen"),
)
