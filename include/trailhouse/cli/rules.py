"""`trailhouse rules`: list, test, try and manage alert rules."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from trailhouse import output
from trailhouse.cli import context
from trailhouse.common import SEVERITIES

PROBLEM_DAYS = 7  # `rules list` shows a rule's latest problem of this many days


def register(sub: Any) -> None:
    rules = sub.add_parser("rules", help="list, test, try and manage alert rules").add_subparsers(metavar="ACTION")
    ls = rules.add_parser("list", help="every rule with its scope, owner and state")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_rules_list)
    pr = rules.add_parser("problems", help="rules stopped at their time budget, failed, refused or cut at the "
                                           "match cap in recent runs")
    pr.add_argument("--as", dest="actor", help="only the problems this user is shown (their rules; administrators: all)")
    pr.add_argument("--rule", help="only this rule id")
    pr.add_argument("--limit", type=int, default=50)
    pr.add_argument("--json", action="store_true")
    pr.set_defaults(func=cmd_rules_problems)
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
    add.add_argument("--severity", required=True, choices=SEVERITIES)
    add.add_argument("--condition", required=True, help="an SQL boolean expression over cloudtrail_events' columns")
    add.add_argument("--accounts", default="", help="comma-separated account ids (owners: required, their own)")
    add.add_argument("--description", default="")
    add.set_defaults(func=cmd_rules_add)
    upd = rules.add_parser("update", help="change a custom rule")
    upd.add_argument("id")
    upd.add_argument("--as", dest="actor", required=True)
    upd.add_argument("--title")
    upd.add_argument("--severity", choices=SEVERITIES)
    upd.add_argument("--condition")
    upd.add_argument("--accounts")
    upd.set_defaults(func=cmd_rules_update)
    for name, helptext in (("enable", "switch a rule on"), ("disable", "switch a rule off"), ("delete", "delete a custom rule")):
        p = rules.add_parser(name, help=helptext)
        p.add_argument("id")
        p.add_argument("--as", dest="actor", required=True)
        p.set_defaults(func=cmd_rules_switch, action=name)
    cov = rules.add_parser("coverage", help="the ATT&CK tactic x technique matrix with the rules behind each cell")
    cov.add_argument("--navigator", type=Path, metavar="FILE", help="also write an ATT&CK Navigator layer (JSON)")
    cov.add_argument("--covered", action="store_true", help="only techniques some rule detects")
    cov.add_argument("--json", action="store_true")
    cov.set_defaults(func=cmd_rules_coverage)
    sig = rules.add_parser("import-sigma", help="convert Sigma rules (aws/cloudtrail) into trailhouse rules")
    sig.add_argument("paths", nargs="+", type=Path, help="Sigma .yml files or folders of them")
    sig.add_argument("--as", dest="actor", help="store them as custom rules of this user (Airflow user name)")
    sig.add_argument("--accounts", default="", help="comma-separated account ids to scope them to (owners: required)")
    sig.add_argument("--out", type=Path, metavar="DIR", help="write rule files to DIR instead of storing them")
    sig.set_defaults(func=cmd_rules_import_sigma)
    new = rules.add_parser("new", help="write a built-in rule skeleton (sql/rules/ID.yaml) that passes its own examples")
    new.add_argument("id", help="trailhouse.<kebab-name>")
    new.add_argument("--event-source", default="ec2.amazonaws.com", help="the service (default ec2.amazonaws.com)")
    new.add_argument("--event-name", default="ModifyInstanceAttribute", help="the API call to detect")
    new.add_argument("--dir", type=Path, default=None, help="where to write it (default: sql/rules)")
    new.set_defaults(func=cmd_rules_new)


def cmd_rules_list(args: argparse.Namespace) -> int:
    import sqlalchemy as sa

    from trailhouse.alerting import rulebook
    from trailhouse.db import appdb

    eng = args.dep.engine
    with eng.connect() as conn:
        last = dict(conn.execute(sa.select(appdb.alerts.c.rule_id, sa.func.max(appdb.alerts.c.last_event_time))
                                 .group_by(appdb.alerts.c.rule_id)).all())
    since = appdb.now() - timedelta(days=PROBLEM_DAYS)
    problem: dict[str, str] = {}
    for p in appdb.latest_rule_problems(eng, limit=10_000):
        if p["recorded_at"] >= since:
            problem.setdefault(p["rule_id"], p["kind"])
    rows = [(r.id, r.severity, "on" if r.enabled else "off", "built-in" if r.builtin else f"custom ({r.owner})",
             ",".join(r.scope_accounts) or "all", last.get(r.id), problem.get(r.id, ""), r.title)
            for r in rulebook.all_rules(eng)]
    cols = ["id", "severity", "state", "kind", "scope", "last_hit", "problem", "title"]
    if args.json:
        output.print_rows(cols, rows, "json")
    else:
        output.print_rows(cols, rows)
    return 0


def cmd_rules_problems(args: argparse.Namespace) -> int:
    from trailhouse.alerting import rulebook

    actor = context.actor(args.dep, args.actor) if args.actor else None
    found = rulebook.rule_problems(args.dep.engine, actor, rule_id=args.rule, limit=args.limit)
    cols = ["recorded_at", "mav", "run_id", "rule_id", "kind", "detail"]
    if found or args.json:
        output.print_rows(cols, [tuple(p[c] for c in cols) for p in found], "json" if args.json else "table")
    else:
        print("no rule problems recorded" + (f" that {args.actor} is shown" if actor else ""))
    return 0


def cmd_rules_test(args: argparse.Namespace) -> int:
    from trailhouse.alerting import rulebook, rules

    selected = [r for r in rulebook.all_rules(args.dep.engine) if not args.ids or r.id in args.ids]
    failed = total = 0
    for res in rules.test_rules(selected):
        total += 1
        if not res.ok:
            failed += 1
            want = "fire" if res.expected else "stay quiet"
            print(f"FAIL {res.rule_id}: example {res.example!r} should {want}{' - ' + res.error if res.error else ''}")
    without = [r.id for r in selected if r.builtin and not (r.tests.positive and r.tests.negative)]
    for rid in without:
        print(f"FAIL {rid}: a built-in rule needs positive and negative examples")
    print(f"{len(selected)} rules, {total} examples: {total - failed} passed, {failed} failed")
    return 1 if failed or without else 0


def cmd_rules_eval(args: argparse.Namespace) -> int:
    from trailhouse.alerting import rulebook, rules
    from trailhouse.ingest import records

    try:
        events = [e for path in args.files for e in records.event_file(path)]
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    selected = [r for r in rulebook.all_rules(args.dep.engine, enabled_only=not args.rule) if not args.rule or r.id in args.rule]
    table = rules.records_table(events, mav="eval")
    con = rules.connect(table)
    limits = rules.Limits.of(args.dep.settings)
    # Per event, a threshold rule is listed when the event meets its condition; whether the
    # threshold was crossed across the given events is reported on its own lines below.
    per_event = rules.evaluate(con, [r.model_copy(update={"threshold": None}) for r in selected], limits)
    crossed = rules.evaluate(con, [r for r in selected if r.threshold], limits)
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
    for rule_id, problem in {**per_event.problems, **crossed.problems}.items():
        label = "warning" if problem.kind == rules.TRUNCATED else "error"
        print(f"{label}: rule {rule_id}: {problem.kind}: {problem.detail}", file=sys.stderr)
    return 0


def cmd_rules_add(args: argparse.Namespace) -> int:
    from trailhouse.alerting import rulebook

    rule = rulebook.create_rule(args.dep.engine, context.actor(args.dep, args.actor), rule_id=args.id, title=args.title,
                                condition=args.condition, severity=args.severity,
                                accounts=context.accounts_arg(args.accounts), description=args.description)
    print(f"rule {rule.id} saved for {', '.join(rule.scope_accounts) or 'every account'}")
    return 0


def cmd_rules_update(args: argparse.Namespace) -> int:
    from trailhouse.alerting import rulebook

    changes = {k: v for k, v in (("title", args.title), ("severity", args.severity), ("condition", args.condition))
               if v is not None}
    if args.accounts is not None:
        changes["accounts"] = context.accounts_arg(args.accounts)
    rule = rulebook.update_rule(args.dep.engine, context.actor(args.dep, args.actor), args.id, **changes)
    print(f"rule {rule.id} updated")
    return 0


def cmd_rules_switch(args: argparse.Namespace) -> int:
    from trailhouse.alerting import rulebook

    actor = context.actor(args.dep, args.actor)
    if args.action == "delete":
        rulebook.delete_rule(args.dep.engine, actor, args.id)
    else:
        rulebook.set_enabled(args.dep.engine, actor, args.id, args.action == "enable")
    print(f"rule {args.id}: {args.action}d")
    return 0


def cmd_rules_coverage(args: argparse.Namespace) -> int:
    from trailhouse.alerting import coverage, rulebook

    rules = rulebook.all_rules(args.dep.engine)
    cov = coverage.coverage(rules)
    counts = cov.counts()
    if args.navigator:
        args.navigator.write_text(json.dumps(coverage.navigator_layer(cov), indent=2) + "\n")
    if args.json:
        print(json.dumps({"counts": counts, "cells": [
            {"tactic": c.tactic, "technique": c.technique, "name": c.name, "status": c.status, "rules": c.rules}
            for c in cov.cells if c.rules or not args.covered]}, indent=2))
        return 0
    print(f"ATT&CK coverage of {len(rules)} rules: {counts[coverage.TESTED]} techniques tested (a real log in the "
          f"suite fires them), {counts[coverage.RULE_ONLY]} rule only, {counts[coverage.NONE]} none")
    for short, name, cells in cov.by_tactic():
        shown = [c for c in cells if c.rules or not args.covered]
        if not shown:
            continue
        print(f"\n{name} ({short})")
        for c in shown:
            print(f"  {c.technique:10} {c.name[:58]:58} {c.status:9}  {', '.join(c.rules) or '-'}")
    if args.navigator:
        print(f"\nATT&CK Navigator layer written to {args.navigator}")
    return 0


RULE_SKELETON = """\
id: {id}
title: {event_name} called  # TODO: what happened, in a few words
description: |
  TODO: what this means, why it matters, what is excluded and why.
severity: medium  # info | low | medium | high | critical: high only for what is very likely malicious
references:
  - https://docs.aws.amazon.com/  # TODO: the API reference of {event_name}
tags: []
attack:  # tactic shortname + technique id from include/trailhouse/alerting/attack.py
  - {{tactic: defense-evasion, technique: T1562}}
runbook: |
  TODO: what an analyst checks next when it fires.
condition: |
  event_source = '{event_source}'
  AND event_name_base = '{event_name}'
  AND error_code IS NULL
tests:
  positive:
    - name: {event_name} succeeds
      event: {{eventSource: {event_source}, eventName: {event_name}, readOnly: false}}
  negative:
    - name: {event_name} refused
      event: {{eventSource: {event_source}, eventName: {event_name}, readOnly: false, errorCode: AccessDenied}}
"""


def cmd_rules_new(args: argparse.Namespace) -> int:
    from trailhouse.alerting import rules

    if not args.id.startswith("trailhouse.") or not rules.ID_RE.match(args.id):
        raise ValueError("built-in rule ids are trailhouse.<kebab-name>: lower-case letters, digits, '.' and '-'")
    folder = args.dir or rules.RULES_DIR
    path = folder / f"{args.id}.yaml"
    if path.exists():
        raise ValueError(f"{path} exists already: edit it, or pick another id")
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(RULE_SKELETON.format(id=args.id, event_source=args.event_source, event_name=args.event_name))
    rule = rules.load_rule_file(path)  # the skeleton is a valid rule...
    failing = [r.example for r in rules.test_rule(rule) if not r.ok]  # ...that passes its own examples
    if failing:
        raise ValueError(f"{path}: the skeleton's examples fail ({failing}): check --event-source/--event-name")
    print(f"wrote {path}: fill in the TODOs, then run `trailhouse rules test {args.id}`")
    return 0


def cmd_rules_import_sigma(args: argparse.Namespace) -> int:
    from trailhouse.alerting import rulebook, sigma

    if bool(args.out) == bool(args.actor):
        raise ValueError("say where the rules go: --as USER (stored as that user's custom rules) or --out DIR")
    result = sigma.convert_paths(args.paths)
    for where, reason in result.refused:
        print(f"refused {where}: {reason}", file=sys.stderr)
    stored: list[str] = []
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        for rule in result.rules:
            (args.out / f"{rule.id}.yaml").write_text(sigma.rule_yaml(rule))
            stored.append(rule.id)
    else:
        actor = context.actor(args.dep, args.actor)
        for rule in result.rules:
            try:
                rulebook.create_rule(
                    args.dep.engine, actor, rule_id=rule.id, title=rule.title, condition=rule.condition,
                    severity=rule.severity, accounts=context.accounts_arg(args.accounts),
                    description=rule.description, dedup_fields=rule.dedup.fields,
                    dedup_period_minutes=rule.dedup.period_minutes,
                    spec=rule.model_dump(include=set(rulebook.SPEC_FIELDS)))
            except ValueError as exc:  # an id taken by an earlier import: say so, import the rest
                print(f"refused {rule.id}: {exc}", file=sys.stderr)
                continue
            stored.append(rule.id)
    where = f"written to {args.out}" if args.out else f"stored as custom rules of {args.actor}"
    print(f"{len(stored)} Sigma rules {where}, {len(result.refused)} refused")
    for rule_id in stored:
        print(f"  {rule_id}")
    return 1 if result.refused or len(stored) < len(result.rules) else 0
