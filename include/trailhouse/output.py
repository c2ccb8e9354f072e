"""Terminal output of the CLI and the demo: tables, CSV and JSON rows, a run's summary."""

from __future__ import annotations

import json
import sys
from datetime import date, datetime
from typing import Any


def cell(v: Any) -> Any:
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    return v


def print_rows(cols: list[str], rows: list[tuple[Any, ...]], fmt: str = "table") -> None:
    if fmt == "json":
        for r in rows:
            print(json.dumps({c: cell(v) for c, v in zip(cols, r, strict=True)}, default=str))
    elif fmt == "csv":
        import csv

        w = csv.writer(sys.stdout)
        w.writerow(cols)
        w.writerows([[cell(v) for v in r] for r in rows])
    else:
        text: list[list[str]] = [[("" if v is None else str(cell(v))) for v in r] for r in rows]
        widths = [max([len(c)] + [len(r[i]) for r in text]) for i, c in enumerate(cols)]
        print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
        print("  ".join("-" * w for w in widths))
        for line in text:
            print("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)))
        print(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")


def print_summary(s: dict[str, Any]) -> None:
    print(f"MAV {s['mav']}  run {s['run_id']}  ({s['dag_run_state']})")
    if s.get("interval_start"):
        print(f"  interval            {s['interval_start']} .. {s['interval_end']} (plus look-back)")
    rows = [
        ("objects found", s["objects_found"]),
        ("objects loaded", s["objects_loaded"]),
        ("objects skipped (already loaded)", s["objects_skipped"]),
        ("objects quarantined", s["objects_quarantined"]),
        ("digest/Insights files recorded", s["objects_recorded"]),
        ("events loaded", s["events_loaded"]),
        ("duplicates dropped", s["duplicates_dropped"]),
        ("partitions written", len(s["partitions"])),
        ("LIST calls", s["list_calls"]),
        ("GET calls", s["get_calls"]),
    ]
    for label, value in rows:
        print(f"  {label:34} {value:>10,}")
    if s["partitions"]:
        print(f"  partitions: {', '.join('event_date=' + p for p in s['partitions'])}")
    for q in s.get("quarantined", []):
        print(f"  quarantined {q['key']}: {q['reason']}")
    for rp in s.get("rule_problems", []):
        print(f"  rule {rp['rule_id']} {'cut short' if rp['kind'] == 'truncated' else 'SKIPPED'} ({rp['kind']}): "
              f"{rp['detail']}")
    if s["failed_tasks"]:
        print(f"  FAILED tasks: {', '.join(s['failed_tasks'])}")
        if s.get("message"):
            print(f"  why: {s['message']}")
    elif s["objects_found"] and not s["objects_loaded"] and not s["objects_quarantined"]:
        print("  nothing new: every object in the window was already loaded")
    elif not s["objects_found"]:
        print("  nothing new: no delivery files in the window")


def run_seconds(run: dict[str, Any]) -> str:
    if run.get("started_at") and run.get("finished_at"):
        return f"{(run['finished_at'] - run['started_at']).total_seconds():.1f}"
    return ""
