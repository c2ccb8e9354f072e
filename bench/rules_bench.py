"""Section 6: all built-in rules over the ingested events: the engine alone, and evaluate_step
(the DAG's evaluate_rules task) after a run that loaded them all."""

from __future__ import annotations

import os
import time
from pathlib import Path
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


def evaluate_step_run(uri: str, work: str) -> dict[str, Any]:
    """Runs in its own process: pipeline.evaluate_step over every event of the warehouse at
    `uri`, with a ledger that says one run loaded them all (each key with its event dates, as
    commit_step records them) in a fresh app database: the product path, from reading the
    pending events to storing the alerts."""
    from bench.ingest import MAV_NAME
    from trailhouse.config import Mav
    from trailhouse.db import appdb
    from trailhouse.deployment import Deployment
    from trailhouse.ingest.transform import LOADED
    from trailhouse.pipeline import steps
    from trailhouse.warehouse.table import Warehouse

    db_url = f"sqlite:///{Path(work) / 'app-evaluate.db'}"
    os.environ.update({"TRAILHOUSE_WAREHOUSE": uri, "TRAILHOUSE_DB_URL": db_url})
    con = Warehouse(uri).duckdb()
    loaded = con.sql("SELECT source_key, string_agg(DISTINCT CAST(event_date AS VARCHAR), ',') "
                     "FROM cloudtrail_events WHERE mav = $mav GROUP BY 1", params={"mav": MAV_NAME}).fetchall()
    con.close()
    eng = appdb.engine(db_url)
    appdb.record_objects(eng, MAV_NAME, "bench-load", (
        {"key": key, "etag": "", "size": 0, "kind": "CloudTrail", "status": LOADED, "events": 0, "event_dates": dates}
        for key, dates in loaded))
    dep = Deployment()
    t0, c0 = time.perf_counter(), time.process_time()
    out = steps.evaluate_step(dep, Mav(name=MAV_NAME, path=work), "bench__evaluate")
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"seconds": seconds, "cpu_s": cpu, "events": out["events"], "matches": out["matches"],
            "new_alerts": len(out["new_alerts"]), "errors": out["rule_errors"], "keys": len(loaded)}


def noise(matches: list[Any]) -> dict[str, dict[str, int]]:
    """Per rule: matched events and the alerts they make after dedup (distinct dedup keys)."""
    out: dict[str, dict[str, Any]] = {}
    for m in matches:
        entry = out.setdefault(m.rule.id, {"events": 0, "keys": set()})
        entry["events"] += 1
        entry["keys"].add(m.dedup_hash)
    return {rid: {"events": e["events"], "alerts": len(e["keys"])} for rid, e in out.items()}


NOISIEST = 15


def report(res: dict[str, Any], rss: int, sheet: Sheet, step: tuple[dict[str, Any], int] | None = None) -> None:
    s = "rules"
    per_m = 1_000_000 / res["events"]
    total = res["connect_s"] + res["evaluate_s"]
    sheet.add(s, f"{len(res['rules'])} built-in rules over {res['events']:,} events", total, "s",
              note=f"engine alone: connect {res['connect_s']:.2f} s + evaluate {res['evaluate_s']:.2f} s; "
                   f"{res['matches']:,} matches; median of {REPEATS}" + (f"; ERRORS {res['errors']}" if res["errors"] else ""))
    sheet.add(s, "rules, per million events", total * per_m, "s/M events")
    sheet.add(s, "rules process peak RSS", rss / MIB, "MiB", note="includes the events table in Arrow")
    if step is not None:
        got, step_rss = step
        sheet.add(s, f"evaluate_step over a loaded run of {got['events']:,} events", got["seconds"], "s",
                  ratio=f"{got['seconds'] / total:.2f}x engine alone",
                  note=f"the evaluate_rules task: pending events from the ledger's {got['keys']:,} keys, history, "
                       f"rules, alerts stored; {got['cpu_s']:.1f} CPU-s; {got['matches']:,} matches, "
                       f"{got['new_alerts']:,} new alerts" + (f"; ERRORS {got['errors']}" if got["errors"] else ""))
        sheet.add(s, "evaluate_step process peak RSS", step_rss / MIB, "MiB", note="target < 1 GiB")
        res["evaluate_step"] = got
    per_10k = 10_000 / res["events"]
    by_rule = res["noise"]
    alerts = sum(r["alerts"] for r in by_rule.values())
    sheet.add(s, "alerts per 10,000 events, all rules", alerts * per_10k, "alerts",
              note=f"{alerts:,} alerts after dedup from {res['matches']:,} matches; {len(by_rule)} rules fired")
    for rule_id, r in sorted(by_rule.items(), key=lambda kv: -kv[1]["alerts"])[:NOISIEST]:
        sheet.add(s, f"alerts per 10,000 events: {rule_id}", r["alerts"] * per_10k, "alerts",
                  note=f"{r['alerts']:,} alerts for {r['events']:,} events")
    sheet.details["rules"] = res
