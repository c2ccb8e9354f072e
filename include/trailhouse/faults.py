"""Fault points for the fault-injection suite: `TRAILHOUSE_FAULT=<point>` kills the process there (SIGKILL)."""

from __future__ import annotations

import os
import signal

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


def point(name: str) -> None:
    """Die here, like a machine losing power, when the environment asks for this point."""
    if settings.load().fault == name:
        for pid in _dies_with:
            os.kill(pid, signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)
