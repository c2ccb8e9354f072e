"""`trailhouse run`, `backfill`, `status`, `integrity` and `maintain`: a MAV's loads and their health."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, date, datetime, timedelta
from typing import Any

from trailhouse import output
from trailhouse.cli import context


def register(sub: Any) -> None:
    run = sub.add_parser("run", help="run a MAV's DAG once through Airflow and print what it did")
    run.add_argument("name")
    run.add_argument("--json", action="store_true", help="print one JSON object")
    run.add_argument("--at", type=context.utc_time, default=None,
                     help="run the hour ending at this UTC time (e.g. 2026-11-27T10:00) instead of the latest")
    run.set_defaults(func=cmd_run)

    bf = sub.add_parser("backfill", help="load a range of history day by day (resumable; never doubles a load)")
    bf.add_argument("name")
    bf.add_argument("--from", dest="first", type=date.fromisoformat, required=True, help="first delivery day (YYYY-MM-DD)")
    bf.add_argument("--to", dest="last", type=date.fromisoformat, required=True, help="last delivery day, inclusive")
    bf.add_argument("--workers", type=int, default=2, help="transform processes (default 2)")
    bf.add_argument("--json", action="store_true")
    bf.set_defaults(func=cmd_backfill)

    st = sub.add_parser("status", help="a MAV's recent runs, their figures, the delivery-to-load lag and a verdict "
                                       "(exit 1 when the latest run failed or none started lately)")
    st.add_argument("name")
    st.add_argument("--runs", type=int, default=10)
    st.add_argument("--stale-after", type=float, default=3.0, metavar="HOURS",
                    help="the MAV is stale when its latest run started longer ago than this (default 3)")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)

    ig = sub.add_parser("integrity", help="verify a window against CloudTrail's digest files; per-account, per-hour completeness")
    ig.add_argument("name")
    ig.add_argument("--from", dest="first", type=date.fromisoformat, default=None, help="first day (default: yesterday)")
    ig.add_argument("--to", dest="last", type=date.fromisoformat, default=None, help="last day, inclusive (default: --from)")
    ig.add_argument("--no-alerts", action="store_true", help="report only; do not store findings as alerts")
    ig.add_argument("--all-hours", action="store_true", help="list complete hours too")
    ig.add_argument("--json", action="store_true")
    ig.set_defaults(func=cmd_integrity)

    mt = sub.add_parser("maintain", help="compact small files, apply retention, vacuum (the daily maintenance DAG's work)")
    mt.add_argument("names", nargs="*", help="MAVs (default: all)")
    mt.add_argument("--vacuum-hours", type=int, default=168, help="keep files older versions need for this long")
    mt.set_defaults(func=cmd_maintain)


def cmd_run(args: argparse.Namespace) -> int:
    from trailhouse.pipeline import runs

    result = runs.run_mav(args.dep, args.name, quiet=args.json, at=args.at)
    if args.json:
        keys = ("objects_found", "objects_loaded", "objects_quarantined", "events_loaded", "duplicates_dropped",
                "list_calls", "objects_skipped", "get_calls", "partitions", "run_id", "status", "failed_tasks",
                "rule_problems")
        print(json.dumps({k: result[k] for k in keys}))
    else:
        output.print_summary(result)
    return 1 if result["failed_tasks"] else 0


def cmd_backfill(args: argparse.Namespace) -> int:
    from trailhouse.pipeline import backfill

    mav = args.dep.mav(args.name)
    print(f"backfill of MAV {mav.name}: delivery days {args.first} .. {args.last} with {args.workers} workers "
          f"(notify: {'yes' if mav.notify_backfill else 'no, alerts recorded only'})", file=sys.stderr)
    try:
        result = backfill.backfill(args.dep, mav, args.first, args.last, workers=args.workers)
    except KeyboardInterrupt:
        print("stopped. Run the same command again to resume: finished days are skipped, and the ledger "
              "skips every file already loaded.", file=sys.stderr)
        return 130
    except Exception as exc:
        print(f"error: backfill stopped: {type(exc).__name__}: {exc}\nFix the cause and run the same command "
              "again to resume.", file=sys.stderr)
        return 1
    if args.json:
        from dataclasses import asdict

        print(json.dumps(asdict(result)))
    else:
        print(f"{result.days_done} days loaded, {result.days_skipped} already done: {result.objects_loaded:,} files, "
              f"{result.events_loaded:,} events, {result.duplicates_dropped:,} duplicates dropped, "
              f"{result.objects_quarantined:,} quarantined, {result.new_alerts:,} new alerts in {result.seconds:.1f}s")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    import sqlalchemy as sa

    from trailhouse.db import appdb
    from trailhouse.pipeline import health

    mav = args.dep.mav(args.name)
    eng = args.dep.engine
    runs = appdb.latest_runs(eng, mav.name, args.runs)
    led = appdb.ledger
    lag = health.delivery_lags(eng, mav.name, [runs[0]["run_id"]]).get(runs[0]["run_id"]) if runs else None
    with eng.connect() as conn:
        quarantined = conn.execute(sa.select(sa.func.count()).where(
            led.c.mav == mav.name, led.c.status == "quarantined")).scalar()
        pending = conn.execute(sa.select(sa.func.count()).where(led.c.mav == mav.name, led.c.status == "pending")).scalar()
    state, verdict = _verdict(runs, args.stale_after)
    code = 0 if state == "healthy" else 1
    if args.json:
        problems = appdb.latest_rule_problems(eng, mav=mav.name, run_ids=[r["run_id"] for r in runs], limit=1000)
        print(json.dumps({"mav": mav.name, "state": state, "verdict": verdict, "runs": runs, "lag": lag,
                          "quarantined_total": quarantined, "pending_total": pending, "rule_problems": problems},
                         default=str))
        return code
    cols = ["run_id", "status", "objects_found", "objects_loaded", "objects_quarantined", "events_loaded",
            "duplicates_dropped", "list_calls", "get_calls", "bytes"]
    output.print_rows(cols + ["seconds"], [tuple(r[c] for c in cols) + (output.run_seconds(r),) for r in runs])
    if lag:
        print(f"delivery-to-load lag of the latest run: median {timedelta(seconds=int(lag['median_seconds']))}, "
              f"max {timedelta(seconds=int(lag['max_seconds']))}")
    print(f"objects in quarantine: {quarantined}")
    if pending:
        print(f"objects pending (an earlier transform failed; the next run loads them): {pending}")
    problems = appdb.latest_rule_problems(eng, mav=mav.name, run_ids=[r["run_id"] for r in runs], limit=20)
    for p in problems:
        print(f"rule problem in {p['run_id']}: {p['rule_id']} ({p['kind']}): {p['detail']}")
    print(f"{state}: {verdict}")
    return code


def _verdict(runs: list[dict[str, Any]], stale_after_hours: float) -> tuple[str, str]:
    """('healthy' | 'failing' | 'stale', why) from the MAV's latest runs, newest first."""
    if not runs:
        return "stale", "no run yet: trailhouse run NAME, or start the scheduler (trailhouse serve)"
    latest = runs[0]
    started = latest.get("started_at")
    if started is not None and started.tzinfo is None:
        started = started.replace(tzinfo=UTC)  # SQLite gives naive UTC
    age = datetime.now(UTC) - started if started else None
    ago = f"{timedelta(seconds=int(age.total_seconds()))} ago" if age is not None else "at an unknown time"
    if latest.get("status") == "failed":
        return "failing", f"the latest run {latest['run_id']} ({ago}) failed: {latest.get('message') or 'see its task logs'}"
    if age is None or age > timedelta(hours=stale_after_hours):
        return "stale", (f"the latest run {latest['run_id']} started {ago}, more than {stale_after_hours:g} h: "
                         "is the scheduler running (and the DAG unpaused)?")
    if latest.get("status") != "success":
        return "healthy", f"the latest run {latest['run_id']} started {ago} and is {latest.get('status')}"
    return "healthy", f"the latest run {latest['run_id']} succeeded, started {ago}"


def cmd_integrity(args: argparse.Namespace) -> int:
    from trailhouse.pipeline import steps as pipeline

    mav = args.dep.mav(args.name)
    first = args.first or datetime.now(UTC).date() - timedelta(days=1)
    last = args.last or first
    start = datetime.combine(first, datetime.min.time(), tzinfo=UTC)
    end = datetime.combine(last + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    out = pipeline.integrity_step(args.dep, mav, start, end, alert=not args.no_alerts)
    report, table = out["report"], out["completeness"]
    if args.json:
        print(json.dumps({"report": report.to_dict(), "completeness": table, "new_alerts": out["new_alerts"]},
                         default=str))
    else:
        print(report.render())
        rows = [r for r in table if args.all_hours or not r["complete"]]
        cols = ["account_id", "region", "hour", "listed", "loaded", "missing", "mismatched", "quarantined"]
        print(f"\ncompleteness: {sum(r['complete'] for r in table)} of {len(table)} account-hours complete")
        if rows:
            output.print_rows(cols, [tuple(r.get(c) for c in cols) for r in rows])
        if out["new_alerts"]:
            print(f"{len(out['new_alerts'])} new alerts (rule trailhouse.integrity-gap)")
    return 0 if report.ok else 1


def cmd_maintain(args: argparse.Namespace) -> int:
    from trailhouse.config import load_mav, load_mavs
    from trailhouse.pipeline import maintenance

    cfg = args.dep.settings
    mavs = [load_mav(cfg.mav_dir, n) for n in args.names] if args.names else load_mavs(cfg.mav_dir)
    for mav in mavs:
        out = maintenance.maintain(args.dep, mav, vacuum_hours=args.vacuum_hours)
        c = out["compaction"]
        line = (f"{mav.name}: compacted {c['partitions']} partitions ({c['files_before']} -> {c['files_after']} files), "
                f"{out['files_vacuumed']} old files vacuumed")
        if "retention" in out:
            r = out["retention"]
            line += f"; retention: {r['events_deleted']:,} events before {r['cutoff']} deleted, {r['ledger_keys_pruned']:,} ledger keys pruned"
        print(line)
    return 0
