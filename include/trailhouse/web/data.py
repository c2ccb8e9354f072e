"""What the pages and the JSON API show, computed once for both: alerts, rules, previews, MAV status."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from trailhouse.alerting import rulebook, rules
from trailhouse.db import appdb
from trailhouse.deployment import Deployment
from trailhouse.pipeline import health
from trailhouse.web import search
from trailhouse.web.auth import Caller

ALERT_EVENTS_SHOWN = 200
PREVIEW_HOURS = 24
PREVIEW_MAX_ROWS = 200_000
PREVIEW_SHOWN = 50
# Blob columns are read for a preview only when the condition names them.
BLOB_COLUMNS = frozenset({"resources", "request_parameters", "response_elements", "additional_event_data",
                          "service_event_details", "extra_fields"})
MAX_TEXT = {"title": 256, "description": 4000}


def no_nul(**values: str | None) -> None:
    """PostgreSQL refuses NUL characters in text: say so instead of failing."""
    for name, value in values.items():
        if value and "\x00" in value:
            raise ValueError(f"{name}: contains a NUL character")


def split_accounts(text: str | None) -> list[str]:
    return [a for a in re.split(r"[\s,;]+", text or "") if a]


# --- alerts ---------------------------------------------------------------------------------


def alert_events(dep: Deployment, caller: Caller, alert_id: int) -> dict[str, Any]:
    """The events behind an alert that the caller may see, and how many others exist."""
    ae = appdb.alert_events
    with dep.engine.connect() as conn:
        links = conn.execute(
            sa.select(ae.c.event_id, ae.c.event_date, ae.c.account_id).where(ae.c.alert_id == alert_id)
            .order_by(ae.c.event_time.desc(), ae.c.event_id)).all()
    scope = caller.scope
    visible = [(eid, day) for eid, day, acct in links if scope is None or acct in scope]
    rows: list[dict[str, Any]] = []
    if visible:
        with search.events_connection(dep.warehouse) as con:
            rows = search.events_by_id(con, visible[:ALERT_EVENTS_SHOWN], scope, remote=dep.warehouse.is_remote)
    return {"total": len(links), "hidden": len(links) - len(visible), "events": rows,
            "truncated": len(visible) > ALERT_EVENTS_SHOWN}


# --- rules ----------------------------------------------------------------------------------


def last_hits(eng: sa.Engine) -> dict[str, Any]:
    a = appdb.alerts
    with eng.connect() as conn:
        return dict(conn.execute(sa.select(a.c.rule_id, sa.func.max(a.c.last_event_time)).group_by(a.c.rule_id)).all())


def may_change(caller: Caller, rule: rules.Rule) -> bool:
    """Whether the rulebook would let the caller edit this rule (the rulebook still decides)."""
    if rule.builtin:
        return False
    return caller.is_admin or (bool(rule.scope_accounts) and set(rule.scope_accounts) <= caller.actor.accounts)


def may_toggle(caller: Caller, rule: rules.Rule) -> bool:
    return caller.is_admin if rule.builtin else may_change(caller, rule)


def rule_view(caller: Caller, rule: rules.Rule, hits: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": rule.id, "title": rule.title, "description": rule.description, "severity": rule.severity,
        "condition": rule.condition, "builtin": rule.builtin, "enabled": rule.enabled,
        "scope": list(rule.scope_accounts), "owner": rule.owner, "threshold": rule.threshold.model_dump()
        if rule.threshold else None, "last_hit": hits.get(rule.id),
        "may_change": may_change(caller, rule), "may_toggle": may_toggle(caller, rule),
    }


def rules_in_force(eng: sa.Engine) -> list[rules.Rule]:
    return rulebook.all_rules(eng)


def all_rules(dep: Deployment, caller: Caller) -> list[dict[str, Any]]:
    hits = last_hits(dep.engine)
    return [rule_view(caller, r, hits) for r in rules_in_force(dep.engine)]


RULE_PROBLEMS_SHOWN = 20


def find_rule(dep: Deployment, caller: Caller, rule_id: str) -> dict[str, Any] | None:
    """One rule as the pages and the API show it; with the problems of its recent runs (stopped,
    failed, refused, cut short) when the caller is its owner, may change it, or is an administrator."""
    for r in rules_in_force(dep.engine):
        if r.id == rule_id:
            view = rule_view(caller, r, last_hits(dep.engine))
            view["problems"] = [{k: p[k] for k in ("recorded_at", "mav", "run_id", "kind", "detail")}
                                for p in appdb.latest_rule_problems(dep.engine, rule_id=r.id, limit=RULE_PROBLEMS_SHOWN)
                                ] if rulebook.sees_problems(caller.actor, r) else []
            return view
    return None


def check_rule_text(title: str | None, description: str | None, condition: str | None) -> None:
    no_nul(title=title, description=description, condition=condition)
    if title is not None and not title.strip():
        raise ValueError("title: give the rule a title")
    for name, value in (("title", title), ("description", description)):
        if value is not None and len(value) > MAX_TEXT[name]:
            raise ValueError(f"{name}: at most {MAX_TEXT[name]} characters")


@dataclass
class Preview:
    condition: str
    accounts: list[str] | None  # the accounts previewed; None: every account
    not_yours: list[str]  # requested accounts left out because the caller does not own them
    start: datetime
    end: datetime
    events: int
    capped: bool
    matches: int
    alerts: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    matches_capped: bool = False  # more matched than the match cap (TRAILHOUSE_RULE_MAX_MATCHES)


def _columns_for(condition: str) -> list[str]:
    import sqlglot
    from sqlglot import exp

    from trailhouse.warehouse.schema import COLUMNS

    named = {c.name for c in sqlglot.parse_one(condition, dialect="duckdb").find_all(exp.Column)}
    return [c.name for c in COLUMNS if c.name not in BLOB_COLUMNS or c.name in named]


def preview(dep: Deployment, caller: Caller, condition: str, accounts: list[str], *, now: datetime | None = None) -> Preview:
    """Run a condition over the last 24 hours of the caller's events (and the rule's accounts), saving nothing.

    The rows and the matches of a preview live in Python and Arrow, outside DuckDB's memory
    limit (~400 MiB for 190,000 events): at most `TRAILHOUSE_WEB_PREVIEWS` run at once in
    the server, the others wait for a turn (up to the time budget, then Busy).
    """
    no_nul(condition=condition)
    condition = rules.validate_condition(condition)  # UnsafeCondition names the problem
    limits = search.LIMITS
    if not limits.preview_gate.acquire(timeout=limits.seconds):
        raise search.Busy("the server is running as many rule previews as it may at once "
                          "(TRAILHOUSE_WEB_PREVIEWS): try again in a few seconds")
    try:
        return _preview(dep, caller, condition, accounts, now)
    finally:
        limits.preview_gate.release()


def _preview(dep: Deployment, caller: Caller, condition: str, accounts: list[str], now: datetime | None) -> Preview:
    end = now or datetime.now(UTC)
    start = end - timedelta(hours=PREVIEW_HOURS)
    requested = set(accounts)
    scope = caller.scope
    allowed: set[str] | None
    if requested:
        allowed = requested if scope is None else requested & scope
        not_yours = sorted(requested - allowed)
    else:
        allowed, not_yours = (None if scope is None else set(scope)), []
    with search.events_connection(dep.warehouse) as con:
        table = search.events_table(con, start, end, None if allowed is None else frozenset(allowed),
                                    _columns_for(condition), limit=PREVIEW_MAX_ROWS + 1,
                                    remote=dep.warehouse.is_remote)
    capped = table.num_rows > PREVIEW_MAX_ROWS
    table = table.slice(0, PREVIEW_MAX_ROWS)
    rule = rules.Rule(id="preview.rule", title="preview", severity="info", condition=condition, builtin=False,
                      scope_accounts=sorted(allowed) if allowed else [])
    rcon = rules.connect(table)
    # The pipeline's limits, within the request's time budget: a condition a run would stop or
    # cut short is told so here, and past the budget DuckDB is interrupted (TooBig).
    limits = rules.Limits.of(dep.settings)
    budgets = [b for b in (limits.time_budget, search.LIMITS.seconds) if b]
    limits = rules.Limits(min(budgets) if budgets else None, limits.max_matches)
    try:
        result = rules.evaluate(rcon, [rule], limits) if allowed is None or allowed else rules.Evaluation()
    finally:
        rcon.close()
    problem = result.problems.get(rule.id)
    if problem is not None and problem.kind == rules.TIMEOUT:
        raise search.TooBig(f"the condition ran longer than the server gives one preview ({limits.time_budget:g} s, the "
                            "smaller of TRAILHOUSE_WEB_QUERY_SECONDS and TRAILHOUSE_RULE_TIME_BUDGET, at which a run "
                            "stops a rule): name the event_source or event_name it is about, or fewer accounts")
    if problem is not None and problem.kind in rules.SKIPPED:
        raise ValueError(f"the condition failed on the events: {problem.detail}")
    matched = sorted((m.event for m in result.matches),
                     key=lambda e: e.get("event_time") or datetime.min.replace(tzinfo=UTC), reverse=True)
    return Preview(condition=condition, accounts=sorted(allowed) if allowed is not None else None,
                   not_yours=not_yours, start=start, end=end, events=table.num_rows, capped=capped,
                   matches=len(result.matches), alerts=len({m.dedup_hash for m in result.matches}),
                   rows=matched[:PREVIEW_SHOWN], matches_capped=problem is not None and problem.kind == rules.TRUNCATED)


# --- MAVs -----------------------------------------------------------------------------------


def permission_report(dag_id: str) -> dict[str, Any] | None:
    """The permission report the MAV's latest validate_access task returned (Airflow keeps it in XCom)."""
    try:
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session

        with create_session() as session:
            row = session.execute(
                sa.select(XComModel.value, XComModel.run_id, XComModel.timestamp)
                .where(XComModel.dag_id == dag_id, XComModel.task_id == "validate_access",
                       XComModel.key == "return_value")
                .order_by(XComModel.timestamp.desc()).limit(1)).first()
            if row is None:
                return None
            value = XComModel.deserialize_value(row)
    except Exception:  # Airflow's database unreachable: show "no report" rather than fail the page
        return None
    if not isinstance(value, dict):
        return None
    return {"run_id": row.run_id, "checked_at": row.timestamp, "report": value}


def mav_status(eng: sa.Engine, mav: Any, *, runs: int = 10, quarantine_shown: int = 50) -> dict[str, Any]:
    latest = appdb.latest_runs(eng, mav.name, runs)
    lags = health.delivery_lags(eng, mav.name, [r["run_id"] for r in latest])
    for run in latest:
        run["lag"] = lags.get(run["run_id"])
        if run.get("started_at") and run.get("finished_at"):
            run["seconds"] = (run["finished_at"] - run["started_at"]).total_seconds()
    led = appdb.ledger
    quarantined_where = (led.c.mav == mav.name, led.c.status == "quarantined")
    with eng.connect() as conn:
        q_total = conn.execute(sa.select(sa.func.count()).where(*quarantined_where)).scalar() or 0
        quarantined = [dict(r) for r in conn.execute(
            sa.select(led.c.key, led.c.reason, led.c.size, led.c.run_id, led.c.processed_at)
            .where(*quarantined_where).order_by(led.c.processed_at.desc()).limit(quarantine_shown)).mappings()]
    return {
        "name": mav.name, "source": mav.source_label, "accounts": list(mav.accounts), "schedule": mav.schedule,
        "description": mav.description, "dag_id": mav.dag_id, "runs": latest,
        "events_loaded": sum(r.get("events_loaded") or 0 for r in latest),
        "quarantined_total": int(q_total), "quarantined": quarantined,
        "permission_report": permission_report(mav.dag_id),
        "validate_hint": f"run `trailhouse mav validate {mav.name}`",
    }


def mavs(dep: Deployment) -> list[dict[str, Any]]:
    """Every MAV file: its status, or the problem that keeps a broken file from loading."""
    from trailhouse.config import ConfigError, scan_mavs

    eng = dep.engine
    return [{"name": path.stem, "broken": str(mav)} if isinstance(mav, ConfigError) else mav_status(eng, mav)
            for path, mav in scan_mavs(dep.settings.mav_dir)]


def mav_names(dep: Deployment) -> list[str]:
    from trailhouse.config import mav_files

    return [p.stem for p in mav_files(dep.settings.mav_dir)]


def parse_day(text: str | None) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise search.BadFilter("date: use YYYY-MM-DD") from None
