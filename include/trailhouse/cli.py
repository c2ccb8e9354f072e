"""The `trailhouse` command: MAVs, runs, SQL, synthetic data and the demo."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from trailhouse import settings


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    if args.func not in (cmd_airflow, cmd_serve):
        # Airflow's own warnings (deprecations, an empty mapped task) are noise on the
        # terminal of a one-off run; task errors still show. `trailhouse airflow` keeps them.
        os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "ERROR")
    from trailhouse import airflow_env

    # Before anything imports Airflow: every command reads the same Airflow home, database
    # and Fernet key (a connection stored by `mav add` must be found by `mav validate`).
    airflow_env.configure()
    from trailhouse.access import AccessCheckError, AccessDeniedError
    from trailhouse.airflow_env import MissingConnection
    from trailhouse.config import ConfigError
    from trailhouse.discover import LayoutError
    from trailhouse.roles import Forbidden
    from trailhouse.rules import UnsafeCondition
    from trailhouse.source import SourceError

    try:
        return int(args.func(args) or 0)
    except (ConfigError, LayoutError, SourceError, MissingConnection, Forbidden, UnsafeCondition,
            AccessCheckError, AccessDeniedError, LookupError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="trailhouse", description=__doc__)
    sub = p.add_subparsers(metavar="COMMAND")

    mav = sub.add_parser("mav", help="add, list and validate multi-account views").add_subparsers(metavar="ACTION")
    add = mav.add_parser("add", help="register a MAV (a bucket read with one IAM key pair, or a local folder)")
    add.add_argument("name")
    where = add.add_mutually_exclusive_group(required=True)
    where.add_argument("--bucket", help="the aggregate CloudTrail bucket")
    where.add_argument("--path", help="a local folder in the bucket's layout (e.g. after `aws s3 sync`)")
    add.add_argument("--prefix", default="", help="the part of the keys before AWSLogs/")
    add.add_argument("--credentials-csv", type=Path, help="the IAM console's access key .csv (with --bucket)")
    add.add_argument("--endpoint-url", help="an S3-compatible endpoint instead of AWS")
    add.add_argument("--region", default="us-east-1", help="the bucket's region (default us-east-1)")
    add.add_argument("--accounts", default="", help="comma-separated account ids to limit the MAV to")
    add.add_argument("--lookback-hours", type=int, default=24, help="how far back each run re-lists (default 24)")
    add.add_argument("--description", default="")
    add.set_defaults(func=cmd_mav_add)
    ls = mav.add_parser("list", help="list the MAVs and any broken MAV files")
    ls.set_defaults(func=cmd_mav_list)
    val = mav.add_parser("validate", help="print the IAM user's permission report (exit 1 if a required action is missing)")
    val.add_argument("name")
    val.add_argument("--json", action="store_true")
    val.set_defaults(func=cmd_mav_validate)

    run = sub.add_parser("run", help="run a MAV's DAG once through Airflow and print what it did")
    run.add_argument("name")
    run.add_argument("--json", action="store_true", help="print one JSON object")
    run.add_argument("--at", type=_utc, default=None,
                     help="run the hour ending at this UTC time (e.g. 2026-11-27T10:00) instead of the latest")
    run.set_defaults(func=cmd_run)

    bf = sub.add_parser("backfill", help="load a range of history day by day (resumable; never doubles a load)")
    bf.add_argument("name")
    bf.add_argument("--from", dest="first", type=date.fromisoformat, required=True, help="first delivery day (YYYY-MM-DD)")
    bf.add_argument("--to", dest="last", type=date.fromisoformat, required=True, help="last delivery day, inclusive")
    bf.add_argument("--workers", type=int, default=2, help="transform processes (default 2)")
    bf.add_argument("--json", action="store_true")
    bf.set_defaults(func=cmd_backfill)

    st = sub.add_parser("status", help="a MAV's recent runs, their figures and the delivery-to-load lag")
    st.add_argument("name")
    st.add_argument("--runs", type=int, default=10)
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

    sql = sub.add_parser("sql", help="query the warehouse with DuckDB (table: cloudtrail_events)")
    sql.add_argument("query")
    sql.add_argument("--format", choices=("table", "csv", "json"), default="table")
    sql.set_defaults(func=cmd_sql)

    syn = sub.add_parser("synth", help="write a synthetic aggregate CloudTrail bucket")
    dest = syn.add_mutually_exclusive_group(required=True)
    dest.add_argument("--out", type=Path, help="a local folder")
    dest.add_argument("--bucket", help="an S3 bucket (created if missing)")
    syn.add_argument("--endpoint-url")
    syn.add_argument("--seed", type=int, default=7)
    syn.add_argument("--accounts", type=int, default=6)
    syn.add_argument("--days", type=int, default=3)
    syn.add_argument("--end", type=date.fromisoformat, default=None, help="last day (default: yesterday, UTC)")
    syn.add_argument("--events-per-file", type=int, default=40)
    syn.add_argument("--files-per-region-day", type=int, default=8)
    syn.add_argument("--prefix", default="")
    syn.set_defaults(func=cmd_synth)

    demo = sub.add_parser("demo", help="the whole job on a local S3 endpoint with synthetic data")
    demo.set_defaults(func=cmd_demo)

    _rules_parser(sub)
    _alerts_parser(sub)
    _users_parser(sub)

    sv = sub.add_parser("serve", help="start Airflow with trailhouse's web UI at http://localhost:PORT/trailhouse/")
    sv.add_argument("--port", type=int, default=8080, help="the API server's port (default 8080)")
    sv.add_argument("--api-only", action="store_true",
                    help="only Airflow's API server (the UI, no scheduler: MAV DAGs do not run)")
    sv.set_defaults(func=cmd_serve)

    af = sub.add_parser("airflow", help="run an `airflow` command on trailhouse's Airflow home (e.g. standalone)")
    af.add_argument("args", nargs=argparse.REMAINDER)
    af.set_defaults(func=cmd_airflow)
    return p


def _rules_parser(sub: Any) -> None:
    rules = sub.add_parser("rules", help="list, test, try and manage alert rules").add_subparsers(metavar="ACTION")
    ls = rules.add_parser("list", help="every rule with its scope, owner and state")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_rules_list)
    t = rules.add_parser("test", help="run every rule against its own positive and negative examples")
    t.add_argument("ids", nargs="*", help="only these rule ids")
    t.set_defaults(func=cmd_rules_test)
    ev = rules.add_parser("eval", help="which rules match the events of delivery files or JSON lines (no warehouse)")
    ev.add_argument("files", nargs="+", type=Path)
    ev.add_argument("--rule", action="append", default=[], help="only this rule id (repeatable)")
    ev.set_defaults(func=cmd_rules_eval)
    add = rules.add_parser("add", help="create a custom rule (checked: condition and your accounts)")
    add.add_argument("--as", dest="actor", required=True, help="your user name (Airflow's)")
    add.add_argument("--id", required=True)
    add.add_argument("--title", required=True)
    add.add_argument("--severity", required=True, choices=("info", "low", "medium", "high", "critical"))
    add.add_argument("--condition", required=True, help="an SQL boolean expression over cloudtrail_events' columns")
    add.add_argument("--accounts", default="", help="comma-separated account ids (owners: required, their own)")
    add.add_argument("--description", default="")
    add.set_defaults(func=cmd_rules_add)
    upd = rules.add_parser("update", help="change a custom rule")
    upd.add_argument("id")
    upd.add_argument("--as", dest="actor", required=True)
    upd.add_argument("--title")
    upd.add_argument("--severity", choices=("info", "low", "medium", "high", "critical"))
    upd.add_argument("--condition")
    upd.add_argument("--accounts")
    upd.set_defaults(func=cmd_rules_update)
    for name, helptext in (("enable", "switch a rule on"), ("disable", "switch a rule off"), ("delete", "delete a custom rule")):
        p = rules.add_parser(name, help=helptext)
        p.add_argument("id")
        p.add_argument("--as", dest="actor", required=True)
        p.set_defaults(func=cmd_rules_switch, action=name)


def _alerts_parser(sub: Any) -> None:
    al = sub.add_parser("alerts", help="list alerts, acknowledge and resolve them").add_subparsers(metavar="ACTION")
    ls = al.add_parser("list", help="every alert in the deployment, newest first")
    for flag in ("--mav", "--account", "--rule", "--severity", "--status"):
        ls.add_argument(flag)
    ls.add_argument("--limit", type=int, default=50)
    ls.add_argument("--format", choices=("table", "csv", "json"), default="table")
    ls.set_defaults(func=cmd_alerts_list)
    show = al.add_parser("show", help="one alert and the events behind it")
    show.add_argument("id", type=int)
    show.set_defaults(func=cmd_alerts_show)
    for name, status in (("ack", "acknowledged"), ("resolve", "resolved"), ("reopen", "open")):
        p = al.add_parser(name, help=f"mark an alert {status}")
        p.add_argument("id", type=int)
        p.add_argument("--as", dest="actor", required=True)
        p.set_defaults(func=cmd_alerts_status, status=status)


def _users_parser(sub: Any) -> None:
    us = sub.add_parser("users", help="trailhouse roles of Airflow's users").add_subparsers(metavar="ACTION")
    g = us.add_parser("grant", help="make a user a security administrator or the owner of accounts")
    g.add_argument("username")
    who = g.add_mutually_exclusive_group(required=True)
    who.add_argument("--admin", action="store_true")
    who.add_argument("--owner", nargs="+", metavar="ACCOUNT")
    g.set_defaults(func=cmd_users_grant)
    r = us.add_parser("revoke", help="remove a user's role")
    r.add_argument("username")
    r.set_defaults(func=cmd_users_revoke)
    ls = us.add_parser("list", help="users and their roles")
    ls.set_defaults(func=cmd_users_list)


def _eng() -> Any:
    from trailhouse import appdb

    return appdb.engine(settings.load().app_db_url)


def _accounts_arg(text: str | None) -> list[str]:
    return [a.strip() for a in (text or "").split(",") if a.strip()]


# --- rules, alerts, users --------------------------------------------------------------


def cmd_rules_list(args: argparse.Namespace) -> int:
    import sqlalchemy as sa

    from trailhouse import appdb, rulebook

    eng = _eng()
    with eng.connect() as conn:
        last = dict(conn.execute(sa.select(appdb.alerts.c.rule_id, sa.func.max(appdb.alerts.c.last_event_time))
                                 .group_by(appdb.alerts.c.rule_id)).all())
    rows = [(r.id, r.severity, "on" if r.enabled else "off", "built-in" if r.builtin else f"custom ({r.owner})",
             ",".join(r.scope_accounts) or "all", last.get(r.id), r.title) for r in rulebook.all_rules(eng)]
    cols = ["id", "severity", "state", "kind", "scope", "last_hit", "title"]
    if args.json:
        print_rows(cols, rows, "json")
    else:
        print_rows(cols, rows)
    return 0


def cmd_rules_test(args: argparse.Namespace) -> int:
    from trailhouse import rulebook, rules

    selected = [r for r in rulebook.all_rules(_eng()) if not args.ids or r.id in args.ids]
    failed = total = 0
    for rule in selected:
        for res in rules.test_rule(rule):
            total += 1
            if not res.ok:
                failed += 1
                want = "fire" if res.expected else "stay quiet"
                print(f"FAIL {rule.id}: example {res.example!r} should {want}{' - ' + res.error if res.error else ''}")
    without = [r.id for r in selected if r.builtin and not (r.tests.positive and r.tests.negative)]
    for rid in without:
        print(f"FAIL {rid}: a built-in rule needs positive and negative examples")
    print(f"{len(selected)} rules, {total} examples: {total - failed} passed, {failed} failed")
    return 1 if failed or without else 0


def _read_events(paths: list[Path]) -> list[dict[str, Any]]:
    import msgspec

    from trailhouse import records as rec_mod

    events: list[dict[str, Any]] = []
    for path in paths:
        data = path.read_bytes()
        text = rec_mod.decompress(data) if data[:2] == b"\x1f\x8b" else data
        stripped = text.lstrip()
        if stripped.startswith(b"{") and b'"Records"' in stripped[:4096]:
            try:
                events += msgspec.json.decode(text)["Records"]
                continue
            except (msgspec.DecodeError, KeyError, TypeError):
                pass  # not one delivery document: try JSON lines
        if stripped.startswith(b"["):  # a JSON array of events (Stratus Red Team's logs, exports)
            try:
                listed = msgspec.json.decode(text)
            except msgspec.DecodeError as exc:
                raise ValueError(f"{path}: not a JSON array of events ({exc})") from None
            if not all(isinstance(e, dict) for e in listed):
                raise ValueError(f"{path}: a JSON array here holds event objects only")
            events += listed
            continue
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    events.append(msgspec.json.decode(line))
                except msgspec.DecodeError as exc:
                    raise ValueError(f"{path}:{n}: not a JSON event ({exc})") from None
    return events


def cmd_rules_eval(args: argparse.Namespace) -> int:
    from trailhouse import rulebook, rules

    try:
        events = _read_events(args.files)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    selected = [r for r in rulebook.all_rules(_eng(), enabled_only=not args.rule) if not args.rule or r.id in args.rule]
    table = rules.records_table(events, mav="eval")
    con = rules.connect(table)
    # Per event, a threshold rule is listed when the event meets its condition; whether the
    # threshold was crossed across the given events is reported on its own lines below.
    per_event = rules.evaluate(con, [r.model_copy(update={"threshold": None}) for r in selected])
    crossed = rules.evaluate(con, [r for r in selected if r.threshold])
    hits: dict[str, list[str]] = {}
    for m in per_event.matches:
        hits.setdefault(m.event["event_id"], []).append(m.rule.id)
    for event_id in table.column("event_id").to_pylist():
        print(json.dumps({"event_id": event_id, "rules": sorted(set(hits.get(event_id, [])))}))
    by_rule: dict[str, list[str]] = {}
    for m in crossed.matches:
        by_rule.setdefault(m.rule.id, []).append(m.event["event_id"])
    for rule_id, ids in sorted(by_rule.items()):
        print(json.dumps({"threshold_crossed": rule_id, "event_ids": ids}))
    for rule_id, error in {**per_event.errors, **crossed.errors}.items():
        print(f"error: rule {rule_id}: {error}", file=sys.stderr)
    return 0


def _actor(name: str) -> Any:
    from trailhouse import roles

    return roles.actor(_eng(), name)


def cmd_rules_add(args: argparse.Namespace) -> int:
    from trailhouse import rulebook

    rule = rulebook.create_rule(_eng(), _actor(args.actor), rule_id=args.id, title=args.title,
                                condition=args.condition, severity=args.severity,
                                accounts=_accounts_arg(args.accounts), description=args.description)
    print(f"rule {rule.id} saved for {', '.join(rule.scope_accounts) or 'every account'}")
    return 0


def cmd_rules_update(args: argparse.Namespace) -> int:
    from trailhouse import rulebook

    changes = {k: v for k, v in (("title", args.title), ("severity", args.severity), ("condition", args.condition))
               if v is not None}
    if args.accounts is not None:
        changes["accounts"] = _accounts_arg(args.accounts)
    rule = rulebook.update_rule(_eng(), _actor(args.actor), args.id, **changes)
    print(f"rule {rule.id} updated")
    return 0


def cmd_rules_switch(args: argparse.Namespace) -> int:
    from trailhouse import rulebook

    actor = _actor(args.actor)
    if args.action == "delete":
        rulebook.delete_rule(_eng(), actor, args.id)
    else:
        rulebook.set_enabled(_eng(), actor, args.id, args.action == "enable")
    print(f"rule {args.id}: {args.action}d")
    return 0


ALERT_COLUMNS = ["id", "status", "severity", "rule_id", "mav", "account_id", "principal", "source_ip", "event_name",
                 "first_event_time", "count"]


def cmd_alerts_list(args: argparse.Namespace) -> int:
    from trailhouse import alerts

    rows = alerts.query(_eng(), mav=args.mav, account=args.account, rule=args.rule, severity=args.severity,
                        status=args.status, limit=args.limit)
    print_rows(ALERT_COLUMNS, [tuple(r[c] for c in ALERT_COLUMNS) for r in rows], args.format)
    return 0


def cmd_alerts_show(args: argparse.Namespace) -> int:
    from trailhouse import alerts

    eng = _eng()
    alert = alerts.get(eng, args.id)
    for key, value in alert.items():
        print(f"{key:18} {_cell(value)}")
    print("events:")
    for event_id in alerts.event_ids(eng, args.id):
        print(f"  {event_id}")
    return 0


def cmd_alerts_status(args: argparse.Namespace) -> int:
    from trailhouse import alerts

    _actor(args.actor)  # any role may change an alert's status; no role, no access
    alert = alerts.set_status(_eng(), args.id, args.status, by=args.actor)
    print(f"alert {alert['id']} is {alert['status']} (by {alert['status_by']} at {_cell(alert['status_at'])})")
    return 0


def cmd_users_grant(args: argparse.Namespace) -> int:
    from trailhouse import roles

    actor = roles.grant(_eng(), args.username, admin=args.admin, accounts=args.owner or [], by=os.environ.get("USER", "cli"))
    what = "security administrator" if actor.is_admin else f"owner of {', '.join(sorted(actor.accounts))}"
    print(f"{actor.username}: {what}")
    return 0


def cmd_users_revoke(args: argparse.Namespace) -> int:
    from trailhouse import roles

    roles.revoke(_eng(), args.username)
    print(f"{args.username}: no role")
    return 0


def cmd_users_list(args: argparse.Namespace) -> int:
    from trailhouse import roles

    rows = [(r["username"], "admin" if r["is_admin"] else "owner", r["accounts"] or "-", _cell(r["granted_at"]))
            for r in roles.all_roles(_eng())]
    print_rows(["user", "role", "accounts", "granted_at"], rows)
    return 0


# --- mav ---------------------------------------------------------------------------------


def cmd_mav_add(args: argparse.Namespace) -> int:
    from trailhouse import airflow_env
    from trailhouse.config import ConfigError, Mav, read_credentials_csv, save_mav

    cfg = settings.load()
    accounts = [a.strip() for a in args.accounts.split(",") if a.strip()]
    mav = Mav(
        name=args.name,
        bucket=args.bucket,
        path=str(Path(args.path).resolve()) if args.path else None,
        prefix=args.prefix,
        region=args.region,
        endpoint_url=args.endpoint_url,
        accounts=accounts,
        lookback_hours=args.lookback_hours,
        description=args.description,
    )
    if mav.bucket:
        if not args.credentials_csv:
            raise ConfigError("--bucket needs --credentials-csv FILE (the IAM console's access key .csv)")
        key_id, secret = read_credentials_csv(args.credentials_csv)
        assert mav.connection_id
        extra: dict[str, Any] = {"region_name": mav.region}
        if mav.endpoint_url:
            extra["endpoint_url"] = mav.endpoint_url
        airflow_env.store_connection(mav.connection_id, key_id, secret, extra)
    path = save_mav(cfg.mav_dir, mav)
    print(f"MAV {mav.name!r} saved to {path}")
    if mav.connection_id:
        print(f"key pair stored in the Airflow connection {mav.connection_id!r} (not in the YAML)")
    print(f"next: trailhouse mav validate {mav.name} && trailhouse run {mav.name}")
    return 0


def cmd_mav_list(args: argparse.Namespace) -> int:
    from trailhouse.config import ConfigError, load_mav_file

    cfg = settings.load()
    files = sorted(cfg.mav_dir.glob("*.yaml"))
    if not files:
        print(f"no MAVs in {cfg.mav_dir}; add one with `trailhouse mav add`")
    status = 0
    for path in files:
        try:
            mav = load_mav_file(path)
            accounts = ",".join(mav.accounts) or "all accounts"
            print(f"{mav.name:20} {mav.source_label:50} {accounts}")
        except ConfigError as exc:
            print(f"BROKEN {exc}")
            status = 1
    return status


def cmd_mav_validate(args: argparse.Namespace) -> int:
    from trailhouse import access, pipeline
    from trailhouse.config import load_mav

    mav = load_mav(settings.load().mav_dir, args.name)
    if mav.path is not None:
        pipeline.open_source(mav)
        print(f"{mav.name}: local folder {mav.path} is readable")
        return 0
    assert mav.bucket
    report = access.check_access(pipeline.s3_client(mav), mav.bucket, mav.prefix)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.render())
    return 0 if report.ok else 1


# --- run ---------------------------------------------------------------------------------


def _utc(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def run_mav(name: str, *, quiet: bool = False, at: datetime | None = None) -> dict[str, Any]:
    """Run the MAV's DAG once through Airflow (the latest hour plus look-back)."""
    from trailhouse import airflow_env

    airflow_env.configure()
    import warnings

    # Library deprecation chatter from inside Airflow is noise to someone running a MAV.
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    os.environ["TRAILHOUSE_PROGRESS"] = "0" if quiet else "1"
    from trailhouse.config import load_mav

    mav = load_mav(settings.load().mav_dir, name)
    airflow_env.ensure_db()
    from trailhouse import pipeline
    from trailhouse.dag_factory import build_dag

    dag = build_dag(mav, retries=0)
    now = at or datetime.now(UTC)
    _progress(f"running DAG {dag.dag_id} for the hour before {now:%Y-%m-%d %H:00} UTC ...")
    # The logical date carries the seconds so that two runs in one hour are two DAG runs;
    # the timetable still gives each the last complete hour as its data interval.
    dr = dag.test(logical_date=now)
    result = pipeline.summary(mav, dr.run_id)
    failed = [ti.task_id for ti in dr.get_task_instances() if ti.state == "failed"]
    result["dag_run_state"] = str(dr.state)
    result["failed_tasks"] = failed
    result["quarantined"] = pipeline.quarantined(mav, dr.run_id)
    return result


def _progress(msg: str) -> None:
    if os.environ.get("TRAILHOUSE_PROGRESS", "1") == "1":
        print(msg, file=sys.stderr, flush=True)


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
    if s["failed_tasks"]:
        print(f"  FAILED tasks: {', '.join(s['failed_tasks'])}")
        if s.get("message"):
            print(f"  why: {s['message']}")
    elif s["objects_found"] and not s["objects_loaded"] and not s["objects_quarantined"]:
        print("  nothing new: every object in the window was already loaded")
    elif not s["objects_found"]:
        print("  nothing new: no delivery files in the window")


def cmd_run(args: argparse.Namespace) -> int:
    result = run_mav(args.name, quiet=args.json, at=args.at)
    if args.json:
        keys = ("objects_found", "objects_loaded", "objects_quarantined", "events_loaded", "duplicates_dropped",
                "list_calls", "objects_skipped", "get_calls", "partitions", "run_id", "status", "failed_tasks")
        print(json.dumps({k: result[k] for k in keys}))
    else:
        print_summary(result)
    return 1 if result["failed_tasks"] else 0


def cmd_backfill(args: argparse.Namespace) -> int:
    from trailhouse import airflow_env, backfill
    from trailhouse.config import load_mav

    airflow_env.configure()
    mav = load_mav(settings.load().mav_dir, args.name)
    print(f"backfill of MAV {mav.name}: delivery days {args.first} .. {args.last} with {args.workers} workers "
          f"(notify: {'yes' if mav.notify_backfill else 'no, alerts recorded only'})", file=sys.stderr)
    try:
        result = backfill.backfill(mav, args.first, args.last, workers=args.workers)
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
    import statistics

    import sqlalchemy as sa

    from trailhouse import appdb
    from trailhouse.config import load_mav
    from trailhouse.layout import parse_key

    mav = load_mav(settings.load().mav_dir, args.name)
    eng = _eng()
    runs = appdb.latest_runs(eng, mav.name, args.runs)
    led = appdb.ledger
    lags: list[float] = []
    if runs:
        with eng.connect() as conn:
            rows = conn.execute(sa.select(led.c.key, led.c.processed_at).where(
                led.c.mav == mav.name, led.c.run_id == runs[0]["run_id"], led.c.status == "loaded")).all()
        for key, processed in rows:
            parsed = parse_key(key)
            if parsed and parsed.delivered_at:
                when = processed if processed.tzinfo else processed.replace(tzinfo=UTC)
                lags.append((when - parsed.delivered_at).total_seconds())
    with eng.connect() as conn:
        quarantined = conn.execute(sa.select(sa.func.count()).where(
            led.c.mav == mav.name, led.c.status == "quarantined")).scalar()
    lag = ({"median_seconds": statistics.median(lags), "max_seconds": max(lags)} if lags else None)
    if args.json:
        print(json.dumps({"mav": mav.name, "runs": runs, "lag": lag, "quarantined_total": quarantined}, default=str))
        return 0
    cols = ["run_id", "status", "objects_found", "objects_loaded", "objects_quarantined", "events_loaded",
            "duplicates_dropped", "list_calls", "get_calls", "bytes"]
    print_rows(cols + ["seconds"], [tuple(r[c] for c in cols) + (_seconds(r),) for r in runs])
    if lag:
        print(f"delivery-to-load lag of the latest run: median {timedelta(seconds=int(lag['median_seconds']))}, "
              f"max {timedelta(seconds=int(lag['max_seconds']))}")
    print(f"objects in quarantine: {quarantined}")
    return 0


def cmd_integrity(args: argparse.Namespace) -> int:
    from trailhouse import pipeline
    from trailhouse.config import load_mav

    mav = load_mav(settings.load().mav_dir, args.name)
    first = args.first or datetime.now(UTC).date() - timedelta(days=1)
    last = args.last or first
    start = datetime.combine(first, datetime.min.time(), tzinfo=UTC)
    end = datetime.combine(last + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    out = pipeline.integrity_step(mav, start, end, alert=not args.no_alerts)
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
            print_rows(cols, [tuple(r.get(c) for c in cols) for r in rows])
        if out["new_alerts"]:
            print(f"{len(out['new_alerts'])} new alerts (rule trailhouse.integrity-gap)")
    return 0 if report.ok else 1


def cmd_maintain(args: argparse.Namespace) -> int:
    from trailhouse import maintenance
    from trailhouse.config import load_mav, load_mavs

    cfg = settings.load()
    mavs = [load_mav(cfg.mav_dir, n) for n in args.names] if args.names else load_mavs(cfg.mav_dir)
    for mav in mavs:
        out = maintenance.maintain(mav, vacuum_hours=args.vacuum_hours)
        c = out["compaction"]
        line = (f"{mav.name}: compacted {c['partitions']} partitions ({c['files_before']} -> {c['files_after']} files), "
                f"{out['files_vacuumed']} old files vacuumed")
        if "retention" in out:
            r = out["retention"]
            line += f"; retention: {r['events_deleted']:,} events before {r['cutoff']} deleted, {r['ledger_keys_pruned']:,} ledger keys pruned"
        print(line)
    return 0


def _seconds(run: dict[str, Any]) -> str:
    if run.get("started_at") and run.get("finished_at"):
        return f"{(run['finished_at'] - run['started_at']).total_seconds():.1f}"
    return ""


# --- sql ---------------------------------------------------------------------------------


def run_sql(query: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    from trailhouse import alerts
    from trailhouse.warehouse import Warehouse

    con = Warehouse(settings.load().warehouse_uri).duckdb()
    for name, table in alerts.arrow_tables(_eng()).items():
        con.register(name, table)
    rel = con.execute(query)
    cols = [d[0] for d in rel.description] if rel.description else []
    return cols, rel.fetchall()


def cmd_sql(args: argparse.Namespace) -> int:
    import duckdb

    try:
        cols, rows = run_sql(args.query)
    except duckdb.Error as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_rows(cols, rows, args.format)
    return 0


def _cell(v: Any) -> Any:
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    return v


def print_rows(cols: list[str], rows: list[tuple[Any, ...]], fmt: str = "table") -> None:
    if fmt == "json":
        for r in rows:
            print(json.dumps({c: _cell(v) for c, v in zip(cols, r, strict=True)}, default=str))
    elif fmt == "csv":
        import csv

        w = csv.writer(sys.stdout)
        w.writerow(cols)
        w.writerows([[_cell(v) for v in r] for r in rows])
    else:
        text = [[("" if v is None else str(_cell(v))) for v in r] for r in rows]
        widths = [max([len(c)] + [len(r[i]) for r in text]) for i, c in enumerate(cols)]
        print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
        print("  ".join("-" * w for w in widths))
        for r in text:
            print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))
        print(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")


# --- synth and demo ----------------------------------------------------------------------


def _spec(args: argparse.Namespace, bucket: str = "trailhouse-demo") -> Any:
    from trailhouse.synth import SynthSpec

    end = args.end or (datetime.now(UTC).date() - timedelta(days=1))
    return SynthSpec(
        seed=args.seed, accounts=args.accounts, days=args.days, end=end, events_per_file=args.events_per_file,
        files_per_region_day=args.files_per_region_day, prefix=args.prefix, bucket=bucket,
    )


def s3_admin_client(endpoint_url: str | None) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=endpoint_url, region_name="us-east-1")


def cmd_synth(args: argparse.Namespace) -> int:
    from trailhouse import synth

    if args.out:
        summary = synth.write_to_dir(_spec(args), args.out)
        where = str(args.out)
    else:
        client = s3_admin_client(args.endpoint_url)
        try:
            client.create_bucket(Bucket=args.bucket)
        except client.exceptions.BucketAlreadyOwnedByYou:
            pass
        summary = synth.write_to_s3(_spec(args, args.bucket), client, args.bucket)
        where = f"s3://{args.bucket}"
    print(f"wrote {summary.objects:,} objects ({summary.log_files:,} log files, {summary.digest_files:,} digests, "
          f"{summary.insight_files:,} Insights files), {summary.events:,} events "
          f"({summary.unique_events:,} unique) for {len(summary.accounts)} accounts to {where}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from trailhouse import demo

    return demo.main()


def cmd_airflow(args: argparse.Namespace) -> int:
    from trailhouse import airflow_env

    airflow_env.configure()
    if args.args[:1] != ["version"]:
        airflow_env.ensure_db()
    bindir = str(Path(sys.executable).parent)
    # `airflow standalone` starts its parts as `airflow ...` subprocesses: they must be found.
    os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    os.execvp(os.path.join(bindir, "airflow"), ["airflow", *args.args])


def cmd_serve(args: argparse.Namespace) -> int:
    """Airflow on trailhouse's home with the plugin: `airflow standalone`, or `airflow api-server` alone."""
    from trailhouse import airflow_env

    home = airflow_env.configure()
    airflow_env.ensure_db()
    bindir = str(Path(sys.executable).parent)
    # `airflow standalone` starts its parts as `airflow ...` subprocesses: they must be found.
    os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    os.environ["AIRFLOW__API__PORT"] = str(args.port)
    passwords = os.environ.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE") or str(
        home / "simple_auth_manager_passwords.json.generated")
    print(f"trailhouse: the web UI will be at http://localhost:{args.port}/trailhouse/\n"
          f"  log in with an Airflow user (simple auth manager: `admin`, its password is printed once and kept in "
          f"{passwords});\n  give users a trailhouse role first: trailhouse users grant admin --admin",
          file=sys.stderr, flush=True)
    command = ["airflow", "api-server", "--port", str(args.port)] if args.api_only else ["airflow", "standalone"]
    os.execvp(os.path.join(bindir, "airflow"), command)


if __name__ == "__main__":
    sys.exit(main())
