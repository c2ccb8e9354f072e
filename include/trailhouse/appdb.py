"""The app database: the ledger of processed keys and each run's figures (SQLAlchemy + Alembic)."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa

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
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("events", sa.Integer, nullable=False, default=0),
    sa.Column("reason", sa.Text, nullable=False, default=""),
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
        if url not in _MIGRATED:
            from alembic import command

            cfg = _alembic_config(url)
            with eng.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
            _MIGRATED.add(url)
        return eng


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout = 30000")
    cur.execute("PRAGMA journal_mode = WAL")
    cur.close()


def now() -> datetime:
    return datetime.now(timezone.utc)


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


def record_objects(eng: sa.Engine, mav: str, run_id: str, rows: Iterable[dict[str, Any]]) -> int:
    """Upsert ledger rows (key, etag, size, kind, status, events, reason)."""
    rows = [dict(r, mav=mav, run_id=run_id, processed_at=now()) for r in rows]
    if not rows:
        return 0
    with eng.begin() as conn:
        for chunk in _chunks(rows, 500):
            keys = [r["key"] for r in chunk]
            conn.execute(ledger.delete().where(ledger.c.mav == mav, ledger.c.key.in_(keys)))
            conn.execute(ledger.insert(), chunk)
    return len(rows)


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def save_run(eng: sa.Engine, mav: str, run_id: str, **figures: Any) -> None:
    with eng.begin() as conn:
        exists = conn.execute(
            sa.select(runs.c.run_id).where(runs.c.mav == mav, runs.c.run_id == run_id)
        ).first()
        if exists:
            conn.execute(runs.update().where(runs.c.mav == mav, runs.c.run_id == run_id).values(**figures))
        else:
            figures.setdefault("status", "running")
            conn.execute(runs.insert().values(mav=mav, run_id=run_id, **figures))


def get_run(eng: sa.Engine, mav: str, run_id: str) -> dict[str, Any] | None:
    with eng.connect() as conn:
        row = conn.execute(sa.select(runs).where(runs.c.mav == mav, runs.c.run_id == run_id)).mappings().first()
    return dict(row) if row else None


def latest_runs(eng: sa.Engine, mav: str, limit: int = 10) -> list[dict[str, Any]]:
    with eng.connect() as conn:
        q = sa.select(runs).where(runs.c.mav == mav).order_by(runs.c.started_at.desc()).limit(limit)
        return [dict(r) for r in conn.execute(q).mappings()]
