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
                     "errors": result.errors, "noise": noise(result.matches)})
    runs.sort(key=lambda r: r["connect_s"] + r["evaluate_s"])
    mid = runs[len(runs) // 2]
    return {"events": events.num_rows, "rules": [r.id for r in builtin], **mid, "runs": runs}


def noise(matches: list[Any]) -> dict[str, dict[str, int]]:
    """Per rule: matched events and the alerts they make after dedup (distinct dedup keys)."""
    out: dict[str, dict[str, Any]] = {}
    for m in matches:
        entry = out.setdefault(m.rule.id, {"events": 0, "keys": set()})
        entry["events"] += 1
        entry["keys"].add(m.dedup_hash)
    return {rid: {"events": e["events"], "alerts": len(e["keys"])} for rid, e in out.items()}


NOISIEST = 15


def report(res: dict[str, Any], rss: int, sheet: Sheet) -> None:
    s = "rules"
    per_m = 1_000_000 / res["events"]
    total = res["connect_s"] + res["evaluate_s"]
    sheet.add(s, f"{len(res['rules'])} built-in rules over {res['events']:,} events", total, "s",
              note=f"connect {res['connect_s']:.2f} s + evaluate {res['evaluate_s']:.2f} s; {res['matches']:,} matches; "
                   f"median of {REPEATS}" + (f"; ERRORS {res['errors']}" if res["errors"] else ""))
    sheet.add(s, "rules, per million events", total * per_m, "s/M events")
    sheet.add(s, "rules process peak RSS", rss / MIB, "MiB", note="includes the events table in Arrow")
    per_10k = 10_000 / res["events"]
    by_rule = res["noise"]
    alerts = sum(r["alerts"] for r in by_rule.values())
    sheet.add(s, "alerts per 10,000 events, all rules", alerts * per_10k, "alerts",
              note=f"{alerts:,} alerts after dedup from {res['matches']:,} matches; {len(by_rule)} rules fired")
    for rule_id, r in sorted(by_rule.items(), key=lambda kv: -kv[1]["alerts"])[:NOISIEST]:
        sheet.add(s, f"alerts per 10,000 events: {rule_id}", r["alerts"] * per_10k, "alerts",
                  note=f"{r['alerts']:,} alerts for {r['events']:,} events")
    sheet.details["rules"] = res
