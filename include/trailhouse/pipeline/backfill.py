"""Load years of history: day by day, batches spread over worker processes, resumable, never doubling a load."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from concurrent.futures import as_completed
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from trailhouse import settings
from trailhouse.config import Mav
from trailhouse.db import appdb
from trailhouse.deployment import Deployment
from trailhouse.pipeline import steps as pipeline
from trailhouse.pipeline.workers import spawn_pool

RUN_PREFIX = "backfill__"


def run_id_for(mav: Mav, day: date) -> str:
    # One deterministic run id per day: a resumed backfill recognises the days it finished,
    # and evaluate_rules treats these runs as backfill (notify only if the MAV says so).
    return f"{RUN_PREFIX}{mav.name}__{day.isoformat()}"


@dataclass
class BackfillResult:
    """The figures of a backfill, summed over its days."""
    days_done: int = 0
    days_skipped: int = 0
    objects_loaded: int = 0
    objects_quarantined: int = 0
    events_loaded: int = 0
    duplicates_dropped: int = 0
    new_alerts: int = 0
    seconds: float = 0.0
    days: list[dict[str, Any]] = field(default_factory=list)


def _transform(cfg: settings.Settings, mav_name: str, run_id: str, batch: dict[str, Any]) -> dict[str, Any]:
    """A batch in a worker process, with the backfill's own settings."""
    dep = Deployment(cfg)
    return pipeline.transform_step(dep, dep.mav(mav_name), run_id, batch)


def backfill(
    dep: Deployment,
    mav: Mav,
    first: date,
    last: date,
    *,
    workers: int = 2,
    say: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr, flush=True),
) -> BackfillResult:
    """Load the delivery days first..last (inclusive) of a MAV.

    Each day is one run: discover that day's folders (no look-back), transform its batches
    in `workers` processes, commit, evaluate rules. Days already finished are skipped, so
    stopping (Ctrl-C) and running the same command again resumes; keys hourly runs already
    loaded are subtracted by the ledger, and the commit, keyed on event_id, drops any overlap.
    """
    if last < first:
        raise ValueError(f"--to {last} is before --from {first}")
    eng = dep.engine
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    result = BackfillResult()
    started = time.monotonic()
    with spawn_pool(workers) as pool:
        for n, day in enumerate(days, 1):
            run_id = run_id_for(mav, day)
            previous = appdb.get_run(eng, mav.name, run_id)
            if previous and previous["status"] == "success":
                result.days_skipped += 1
                say(f"[{n}/{len(days)}] {day}: done earlier, skipped")
                continue
            t0 = time.monotonic()
            start = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
            batches = pipeline.discover_step(dep, mav, run_id, start, start + timedelta(days=1), lookback_hours=0)
            futures = [pool.submit(_transform, dep.settings, mav.name, run_id, b) for b in batches]
            results = []
            for done, fut in enumerate(as_completed(futures), 1):
                results.append(fut.result())
                if len(futures) > 1:
                    say(f"[{n}/{len(days)}] {day}: batch {done}/{len(futures)} transformed")
            summary = pipeline.commit_step(dep, mav, run_id, results)
            evaluation = pipeline.evaluate_step(dep, mav, run_id)
            pipeline.notify_step(dep, mav, run_id, evaluation["new_alerts"])
            secs = time.monotonic() - t0
            result.days_done += 1
            for key in ("objects_loaded", "objects_quarantined", "events_loaded", "duplicates_dropped"):
                setattr(result, key, getattr(result, key) + summary[key])
            result.new_alerts += len(evaluation["new_alerts"])
            result.days.append({"day": day.isoformat(), "seconds": round(secs, 2), **{
                k: summary[k] for k in ("objects_loaded", "objects_quarantined", "events_loaded")}})
            elapsed = time.monotonic() - started
            remaining = len(days) - n
            eta = elapsed / max(1, result.days_done) * remaining
            rate = summary["events_loaded"] / secs if secs else 0
            say(f"[{n}/{len(days)}] {day}: {summary['objects_loaded']:,} files, {summary['events_loaded']:,} events "
                f"in {secs:.1f}s ({rate:,.0f} events/s), {len(evaluation['new_alerts'])} new alerts; "
                f"ETA {timedelta(seconds=int(eta))}")
    result.seconds = time.monotonic() - started
    return result
