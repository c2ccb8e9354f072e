"""All rules in force: built-in YAML packs plus custom rules from the app database, with access control."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from trailhouse.alerting.roles import Actor, Forbidden
from trailhouse.alerting.rules import (
    DEFAULT_DEDUP_MINUTES,
    ID_RE,
    SEVERITIES,
    Dedup,
    Rule,
    builtin_rules,
    validate_condition,
)
from trailhouse.db import appdb


def all_rules(eng: sa.Engine, *, enabled_only: bool = False) -> list[Rule]:
    """Built-in rules (with their enable switches) and custom rules."""
    with eng.connect() as conn:
        switches = {r.rule_id: bool(r.enabled) for r in conn.execute(sa.select(appdb.rule_switches))}
        custom = [dict(r) for r in conn.execute(sa.select(appdb.custom_rules)).mappings()]
    rules = [r.model_copy(update={"enabled": switches.get(r.id, r.enabled)}) for r in builtin_rules()]
    rules += [_from_row(row) for row in custom]
    return [r for r in rules if r.enabled] if enabled_only else rules


# Fields of a custom rule kept whole in the `spec` JSON column (as a rule file holds them).
SPEC_FIELDS = ("attack", "references", "tags", "runbook", "tests", "origin")


def _from_row(row: dict[str, Any]) -> Rule:
    fields = [f for f in row["dedup_fields"].split(",") if f] or ["account_id", "principal"]
    spec = json.loads(row["spec"]) if row.get("spec") else {}
    return Rule(
        id=row["id"], title=row["title"], description=row["description"], severity=row["severity"],
        condition=row["condition"], scope_accounts=[a for a in row["scope_accounts"].split(",") if a],
        dedup=Dedup(fields=fields, period_minutes=row["dedup_period_minutes"]), owner=row["owner"],
        enabled=bool(row["enabled"]), builtin=False, **{k: v for k, v in spec.items() if k in SPEC_FIELDS},
    )


def _check_scope(actor: Actor, scope: list[str]) -> list[str]:
    scope = sorted(set(scope))
    if actor.is_admin:
        return scope  # empty: every account
    if not scope:
        raise Forbidden(f"{actor.username} owns accounts {sorted(actor.accounts)}: a rule for every account "
                        "needs a security administrator; name your accounts with --accounts")
    foreign = [a for a in scope if a not in actor.accounts]
    if foreign:
        raise Forbidden(f"{actor.username} may create rules only for their own accounts "
                        f"{sorted(actor.accounts)}; not for {foreign}")
    return scope


def create_rule(eng: sa.Engine, actor: Actor, *, rule_id: str, title: str, condition: str, severity: str,
                accounts: list[str], description: str = "", dedup_fields: list[str] | None = None,
                dedup_period_minutes: int = DEFAULT_DEDUP_MINUTES, spec: dict[str, Any] | None = None) -> Rule:
    """Save a custom rule after checking its condition and the actor's right to its scope.

    `spec` carries the SPEC_FIELDS a rule file would (ATT&CK, references, tags, runbook,
    examples, origin), checked by the same model as built-in rules.
    """
    spec = {k: v for k, v in (spec or {}).items() if v not in (None, "", [], {})}
    if set(spec) - set(SPEC_FIELDS):
        raise ValueError(f"unknown rule fields {sorted(set(spec) - set(SPEC_FIELDS))}")
    if not ID_RE.match(rule_id) or rule_id.startswith(("cis.", "trailhouse.")):
        raise ValueError("custom rule ids are lower-case letters, digits, '.', '-' and may not start with "
                         "'cis.' or 'trailhouse.' (the built-in packs)")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}")
    scope = _check_scope(actor, accounts)
    condition = validate_condition(condition)
    rule = Rule(id=rule_id, title=title, description=description, severity=severity,  # type: ignore[arg-type]
                condition=condition, scope_accounts=scope, owner=actor.username, builtin=False,
                dedup=Dedup(fields=dedup_fields or ["account_id", "principal"], period_minutes=dedup_period_minutes),
                **spec)
    now = appdb.now()
    with eng.begin() as conn:
        if conn.execute(sa.select(appdb.custom_rules.c.id).where(appdb.custom_rules.c.id == rule_id)).first():
            raise ValueError(f"a custom rule {rule_id!r} exists already; change it with `rules update`")
        conn.execute(appdb.custom_rules.insert().values(
            id=rule_id, title=title, description=description, severity=severity, condition=condition,
            scope_accounts=",".join(scope), dedup_fields=",".join(rule.dedup.fields),
            dedup_period_minutes=dedup_period_minutes, owner=actor.username, enabled=True,
            created_at=now, updated_at=now, updated_by=actor.username,
            spec=json.dumps(rule.model_dump(mode="json", include=set(spec))) if spec else None,
        ))
    return rule


def _custom_row(conn: Any, rule_id: str) -> dict[str, Any]:
    row = conn.execute(sa.select(appdb.custom_rules).where(appdb.custom_rules.c.id == rule_id)).mappings().first()
    if row is None:
        raise LookupError(f"no custom rule {rule_id!r}")
    return dict(row)


def _may_change(actor: Actor, row: dict[str, Any]) -> None:
    scope = [a for a in row["scope_accounts"].split(",") if a]
    if actor.is_admin:
        return
    if not scope or any(a not in actor.accounts for a in scope):
        raise Forbidden(f"{actor.username} may change only rules scoped to their own accounts; "
                        f"{row['id']!r} covers {scope or 'every account'}")


def update_rule(eng: sa.Engine, actor: Actor, rule_id: str, **changes: Any) -> Rule:
    """Change a custom rule; the new scope is checked like a new rule's (no widening)."""
    allowed = {"title", "description", "severity", "condition", "accounts", "enabled"}
    unknown = set(changes) - allowed
    if unknown:
        raise ValueError(f"cannot change {sorted(unknown)}")
    with eng.begin() as conn:
        row = _custom_row(conn, rule_id)
        _may_change(actor, row)
        values: dict[str, Any] = {}
        if "accounts" in changes:
            values["scope_accounts"] = ",".join(_check_scope(actor, changes["accounts"]))
        if "condition" in changes:
            values["condition"] = validate_condition(changes["condition"])
        if "severity" in changes and changes["severity"] not in SEVERITIES:
            raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}")
        for key in ("title", "description", "severity", "enabled"):
            if key in changes:
                values[key] = changes[key]
        values.update(updated_at=appdb.now(), updated_by=actor.username)
        conn.execute(appdb.custom_rules.update().where(appdb.custom_rules.c.id == rule_id).values(**values))
        return _from_row(_custom_row(conn, rule_id))


def delete_rule(eng: sa.Engine, actor: Actor, rule_id: str) -> None:
    with eng.begin() as conn:
        _may_change(actor, _custom_row(conn, rule_id))
        conn.execute(appdb.custom_rules.delete().where(appdb.custom_rules.c.id == rule_id))


def set_enabled(eng: sa.Engine, actor: Actor, rule_id: str, enabled: bool) -> None:
    """Enable or disable a rule: built-in ones by administrators only."""
    if any(r.id == rule_id for r in builtin_rules()):
        if not actor.is_admin:
            raise Forbidden("built-in rules are switched on and off by security administrators")
        with eng.begin() as conn:
            conn.execute(appdb.rule_switches.delete().where(appdb.rule_switches.c.rule_id == rule_id))
            conn.execute(appdb.rule_switches.insert().values(rule_id=rule_id, enabled=enabled,
                                                             updated_by=actor.username, updated_at=appdb.now()))
        return
    update_rule(eng, actor, rule_id, enabled=enabled)


def sees_problems(actor: Actor, rule: Rule) -> bool:
    """Who is shown a rule's problems (stopped, failed, refused, cut short): security
    administrators, and for a custom rule its owner and whoever may change it."""
    if actor.is_admin:
        return True
    if rule.builtin:
        return False
    return rule.owner == actor.username or (bool(rule.scope_accounts) and set(rule.scope_accounts) <= actor.accounts)


def rule_problems(eng: sa.Engine, actor: Actor | None, *, rule_id: str | None = None,
                  limit: int = 50) -> list[dict[str, Any]]:
    """The recorded problems of rules, newest first; with an actor, only those of rules they are shown
    (a rule deleted since: its owner and administrators)."""
    rows = appdb.latest_rule_problems(eng, rule_id=rule_id, limit=limit if actor is None else max(limit, 1000))
    if actor is None or actor.is_admin:
        return rows[:limit]
    by_id = {r.id: r for r in all_rules(eng)}

    def shown(row: dict[str, Any]) -> bool:
        rule = by_id.get(row["rule_id"])
        return sees_problems(actor, rule) if rule is not None else row["owner"] == actor.username

    return [r for r in rows if shown(r)][:limit]
