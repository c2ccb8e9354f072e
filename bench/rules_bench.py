"""Section 6: all built-in rules over the ingested events, as evaluate_step runs them."""

from __future__ import annotations

import time
from typing import Any

from bench.common import MIB, Sheet

REPEATS = 3


def evaluate_all(uri: str) -> dict[str, Any]:
    """Runs in its own process: connect(events, history=events) then evaluate(builtin_rules())."""
    from trailhouse.alerting import rules
    from trailhouse.warehouse.table import Warehouse

    events = Warehouse(uri).dataset().to_table()
    builtin = rules.builtin_rules()
    runs = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        # The hour's events are also the threshold rules' history (the look-back window
        # overlaps the run), as pipeline.history_for returns them.
        con = rules.connect(events, events)
        t1 = time.perf_counter()
        result = rules.evaluate(con, builtin)
        t2 = time.perf_counter()
        con.close()
        runs.append({"connect_s": t1 - t0, "evaluate_s": t2 - t1, "matches": len(result.matches),
                     "errors": result.errors})
    runs.sort(key=lambda r: r["connect_s"] + r["evaluate_s"])
    mid = runs[len(runs) // 2]
    return {"events": events.num_rows, "rules": [r.id for r in builtin], **mid, "runs": runs}


def report(res: dict[str, Any], rss: int, sheet: Sheet) -> None:
    s = "rules"
    per_m = 1_000_000 / res["events"]
    total = res["connect_s"] + res["evaluate_s"]
    sheet.add(s, f"{len(res['rules'])} built-in rules over {res['events']:,} events", total, "s",
              note=f"connect {res['connect_s']:.2f} s + evaluate {res['evaluate_s']:.2f} s; {res['matches']:,} matches; "
                   f"median of {REPEATS}" + (f"; ERRORS {res['errors']}" if res["errors"] else ""))
    sheet.add(s, "rules, per million events", total * per_m, "s/M events")
    sheet.add(s, "rules process peak RSS", rss / MIB, "MiB", note="includes the events table in Arrow")
    sheet.details["rules"] = res
