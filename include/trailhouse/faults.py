"""Fault points for the fault suites: `TRAILHOUSE_FAULT=<point>` kills the process there (SIGKILL);
`<point>:drop-db` and `<point>:fill-disk` make the environment fail there instead."""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

from trailhouse import settings

# Every place a crash could leave state half-written, in the order a run reaches them.
POINTS = (
    "transform.after_download",  # an object fetched, nothing parsed or staged
    "transform.before_stage",  # rows parsed, the staged Parquet file not yet closed
    "commit.before_delta_commit",  # staged files complete, the Delta table untouched
    "commit.after_delta_commit",  # events committed to the table, keys not yet in the ledger
    "commit.after_ledger",  # ledger written, the run's figures not yet
    "evaluate.after_store",  # alerts stored, the task's result not yet returned
    "notify.after_plan",  # outbox rows planned, nothing sent
    "notify.after_send",  # a message accepted by the SMTP server, not yet marked sent
)


# Processes that die with this one at a fault: a transform worker takes its task's process
# with it, as a power loss would (pipeline.workers sets it in each worker).
_dies_with: list[int] = []


def die_with(pid: int) -> None:
    """Let a fault in this process kill process `pid` too (a worker and the task it serves)."""
    _dies_with.append(pid)


# What a fault does at its point: `TRAILHOUSE_FAULT=<point>` (or `<point>:kill`) kills the process;
# the other actions make the environment fail under the run, which then carries on and meets it.
ACTIONS = ("kill", "drop-db", "fill-disk")
_FILL_DISK_LIMIT = 256 * 1024 * 1024  # fill-disk refuses any filesystem bigger than this


def point(name: str) -> None:
    """Act here when the environment asks for this point: by default die like a machine losing
    power; `:drop-db` makes PostgreSQL drop every connection to the app database (what a
    restart does to its clients); `:fill-disk` fills the warehouse's (small) filesystem.
    """
    fault = settings.load().fault
    if not fault:
        return
    where, _, action = fault.partition(":")
    if where != name:
        return
    if action in ("", "kill"):
        for pid in _dies_with:
            os.kill(pid, signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "drop-db":
        _drop_app_db_connections()
    elif action == "fill-disk":
        fill_disk(Path(settings.load().warehouse_uri))
    else:
        raise ValueError(f"TRAILHOUSE_FAULT={fault!r}: unknown action {action!r} (one of {', '.join(ACTIONS)})")


def _drop_app_db_connections() -> None:
    import sqlalchemy as sa

    url = settings.load().app_db_url
    if not url.startswith("postgresql"):
        raise ValueError("the drop-db fault needs the app database on PostgreSQL")
    eng = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with eng.connect() as conn:
        conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE datname = current_database() AND pid <> pg_backend_pid()"))
        conn.commit()
    eng.dispose()


def fill_disk(folder: Path) -> Path:
    """Write `folder/.fill-disk` until its filesystem has no space left; returns the file to delete.

    Refuses a filesystem larger than 256 MiB: this is for a small dedicated mount, never a real disk.
    """
    st = os.statvfs(folder)
    if st.f_blocks * st.f_frsize > _FILL_DISK_LIMIT:
        raise ValueError(f"fill-disk refuses {folder}: its filesystem is larger than 256 MiB")
    filler = folder / ".fill-disk"
    chunk = b"\0" * (64 * 1024)
    with filler.open("ab", buffering=0) as f:
        try:
            while True:
                f.write(chunk)  # unbuffered: a short write, then ENOSPC
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
    return filler
