"""`trailhouse alerts`: list alerts, acknowledge and resolve them."""

from __future__ import annotations

import argparse
from typing import Any

from trailhouse import output
from trailhouse.cli import context

ALERT_COLUMNS = ["id", "status", "severity", "rule_id", "mav", "account_id", "principal", "source_ip", "event_name",
                 "first_event_time", "count"]


def register(sub: Any) -> None:
    al = sub.add_parser("alerts", help="list alerts, acknowledge and resolve them").add_subparsers(metavar="ACTION")
    ls = al.add_parser("list", help="every alert in the deployment, newest first")
    from trailhouse.common import ALERT_STATUSES, SEVERITIES

    for flag in ("--mav", "--account", "--rule"):
        ls.add_argument(flag)
    ls.add_argument("--severity", choices=SEVERITIES)
    ls.add_argument("--status", choices=ALERT_STATUSES)
    ls.add_argument("--limit", type=int, default=50)
    ls.add_argument("--format", choices=("table", "csv", "json"), default="table")
    ls.set_defaults(func=cmd_alerts_list)
    show = al.add_parser("show", help="one alert and the events behind it")
    show.add_argument("id", type=int)
    show.set_defaults(func=cmd_alerts_show)
    for name, status in (("ack", "acknowledged"), ("resolve", "resolved"), ("reopen", "open")):
        p = al.add_parser(name, help=f"mark an alert {status}")
        p.add_argument("id", type=int)
        p.add_argument("--as", dest="actor", required=True,
                       help="the trailhouse user acting: an owner of the alert's account, or an administrator")
        p.set_defaults(func=cmd_alerts_status, status=status)


def cmd_alerts_list(args: argparse.Namespace) -> int:
    from trailhouse.alerting import alerts

    if args.rule:
        _known_rule(args.dep, args.rule)
    rows = alerts.query(args.dep.engine, mav=args.mav, account=args.account, rule=args.rule, severity=args.severity,
                        status=args.status, limit=args.limit)
    output.print_rows(ALERT_COLUMNS, [tuple(r[c] for c in ALERT_COLUMNS) for r in rows], args.format)
    return 0


def cmd_alerts_show(args: argparse.Namespace) -> int:
    from trailhouse.alerting import alerts

    eng = args.dep.engine
    alert = alerts.get(eng, args.id)
    for key, value in alert.items():
        print(f"{key:18} {output.cell(value)}")
    print("events:")
    for event_id in alerts.event_ids(eng, args.id):
        print(f"  {event_id}")
    return 0


def cmd_alerts_status(args: argparse.Namespace) -> int:
    from trailhouse.alerting import alerts

    # Owners change only alerts of their own accounts, administrators any; no role, no access.
    actor = context.actor(args.dep, args.actor)
    alert = alerts.set_status(args.dep.engine, args.id, args.status, actor=actor)
    print(f"alert {alert['id']} is {alert['status']} (by {alert['status_by']} at {output.cell(alert['status_at'])})")
    return 0


def _known_rule(dep: Any, rule_id: str) -> None:
    """A --rule the deployment has never known is a typo: say so, with the nearest ids, not 0 rows."""
    import difflib

    import sqlalchemy as sa

    from trailhouse.alerting import rulebook
    from trailhouse.config import ConfigError
    from trailhouse.db import appdb

    known = {r.id for r in rulebook.all_rules(dep.engine)}
    if rule_id in known:
        return
    with dep.engine.connect() as conn:  # a deleted custom rule's alerts stay listable
        known |= set(conn.execute(sa.select(appdb.alerts.c.rule_id).distinct()).scalars())
    if rule_id not in known:
        near = difflib.get_close_matches(rule_id, sorted(known), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(near)}?" if near else "; trailhouse rules list shows the ids"
        raise ConfigError(f"no rule {rule_id!r}{hint}")
