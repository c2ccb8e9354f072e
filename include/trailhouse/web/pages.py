"""The HTML pages: events report and summary, event detail, alerts, rules (with preview), MAVs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from trailhouse.alerting import alerts, rulebook, rules
from trailhouse.alerting.roles import Forbidden
from trailhouse.alerting.rules import UnsafeCondition
from trailhouse.common import principal_of
from trailhouse.deployment import Deployment
from trailhouse.ingest import records
from trailhouse.web import data, render, search
from trailhouse.web.api import AlertId, Day, EventId, EventIdQuery, RuleId, event_or_404
from trailhouse.web.chart import bar_chart
from trailhouse.web.deps import (
    CSRF,
    HEAVY,
    NO_NUL,
    AlertFilters,
    CallerDep,
    DeploymentDep,
    FilterParams,
    Page,
    PageSize,
)

router = APIRouter(tags=["pages"], default_response_class=HTMLResponse)

USER_TYPES = ("Root", "IAMUser", "AssumedRole", "FederatedUser", "AWSService", "AWSAccount", "WebIdentityUser",
              "SAMLUser", "IdentityCenterUser", "Unknown")
RANGES = (("Last hour", 1), ("Last 24 hours", 24), ("Last 7 days", 24 * 7), ("Last 30 days", 24 * 30))
FormText = Annotated[str, Form(max_length=256, pattern=NO_NUL)]


def _local(t: datetime) -> str:
    """A value for <input type="datetime-local"> (UTC)."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _filter_context(request: Request, dep: Deployment, caller: Any, params: dict[str, str | None]) -> dict[str, Any]:
    """Parse the filters for a page; a bad value is shown on the form instead of failing the page."""
    problem = None
    try:
        f = search.filters_from(params)
    except search.BadFilter as exc:
        problem = str(exc)
        f = search.Filters.last(24)
    keep = {k: v for k, v in search.to_params(f).items() if k not in ("from", "to")}
    now = datetime.now(UTC)
    ranges = [(label, render.qs(keep, **{"from": search._iso(now - timedelta(hours=h)), "to": search._iso(now)}))
              for label, h in RANGES]
    return {"f": f, "form": {k: (v or "") for k, v in params.items()}, "start_value": _local(f.start),
            "end_value": _local(f.end), "problem": problem, "query": search.to_params(f), "ranges": ranges,
            "mav_names": data.mav_names(dep), "user_types": USER_TYPES,
            "accounts_hint": None if caller.is_admin else sorted(caller.actor.accounts)}


@router.get("/", summary="Events report (the start page)")
@router.get("/events", summary="Events report: filters, results newest first, links to details and exports")
def events_page(request: Request, caller: CallerDep, dep: DeploymentDep, params: FilterParams, page: Page = 1,
                page_size: PageSize = 50) -> Response:
    ctx = _filter_context(request, dep, caller, params)
    rows: list[dict[str, Any]] = []
    has_next = False
    if ctx["problem"] is None:
        with search.events_connection(dep.warehouse) as con:
            result = search.search(con, ctx["f"], caller.scope, page=page, page_size=page_size,
                                   remote=dep.warehouse.is_remote)
        rows, has_next = result.rows, result.has_next
    return render.page(request, "events.html", {
        **ctx, "title": "Events", "section": "events", "rows": rows, "page": page, "page_size": page_size,
        "has_next": has_next, "first_row": (page - 1) * page_size + 1,
    }, status_code=400 if ctx["problem"] else 200)


@router.get("/events/summary", summary="Summary of the filtered events: top values and events over time",
            dependencies=HEAVY)
def summary_page(request: Request, caller: CallerDep, dep: DeploymentDep, params: FilterParams) -> Response:
    ctx = _filter_context(request, dep, caller, params)
    summary = None
    chart = None
    if ctx["problem"] is None:
        with search.events_connection(dep.warehouse) as con:
            summary = search.summary(con, ctx["f"], caller.scope, remote=dep.warehouse.is_remote)
        chart = bar_chart(summary.series, summary.bucket_seconds)
    filter_keys = {"account": "account", "region": "region", "service": "source", "event name": "name",
                   "principal": "principal", "source IP": "ip"}
    return render.page(request, "summary.html", {
        **ctx, "title": "Summary", "section": "summary", "summary": summary, "chart": chart,
        "filter_keys": filter_keys,
    }, status_code=400 if ctx["problem"] else 200)


@router.get("/event", summary="One event by an id given as `?id=`: any id (the links of ids a path cannot carry)")
def event_page_by_query(request: Request, caller: CallerDep, dep: DeploymentDep, event_id: EventIdQuery,
                        day: Day = None) -> Response:
    return _event_page(request, event_or_404(dep, caller, event_id, day))


@router.get("/events/{event_id}", summary="One event: the whole original record and related searches")
def event_page(request: Request, caller: CallerDep, dep: DeploymentDep, event_id: EventId, day: Day = None) -> Response:
    return _event_page(request, event_or_404(dep, caller, event_id, day))


def _event_page(request: Request, row: dict[str, Any]) -> Response:
    record = records.rebuild(row)
    related = [(label, search.to_params(f)) for label, f in search.related(row).items()]
    return render.page(request, "event.html", {
        "title": row.get("event_name") or "Event", "section": "events", "row": row,
        "record_json": json.dumps(record, indent=2, ensure_ascii=False),
        "principal": principal_of(row),
        "related": related,
    })


# --- alerts ---------------------------------------------------------------------------------


def _safe_back(request: Request, back: str | None, default: str) -> str:
    """Only a path of this app's alert pages: never an open redirect."""
    prefix = render.root(request) + "/alerts"
    if back and back.startswith(prefix) and "//" not in back and "\\" not in back:
        return back
    return default


@router.get("/alerts", summary="Every alert in the deployment, with filters; acknowledge and resolve")
def alerts_page(request: Request, caller: CallerDep, dep: DeploymentDep, filters: AlertFilters, page: Page = 1,
                page_size: PageSize = 50) -> Response:
    rows = alerts.query(dep.engine, **filters, limit=page_size + 1, offset=(page - 1) * page_size)
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return render.page(request, "alerts.html", {
        "title": "Alerts", "section": "alerts", "rows": rows[:page_size], "has_next": len(rows) > page_size,
        "page": page, "form": {k: v or "" for k, v in filters.items()}, "query": {k: v for k, v in filters.items() if v},
        "severities": rules.SEVERITIES, "statuses": alerts.STATUSES, "mav_names": data.mav_names(dep),
        "rule_ids": [r["id"] for r in data.all_rules(dep, caller)], "back": here,
    })


@router.get("/alerts/{alert_id}", summary="One alert and the events behind it (scoped to the caller's accounts)")
def alert_page(request: Request, caller: CallerDep, dep: DeploymentDep, alert_id: AlertId) -> Response:
    try:
        alert = alerts.get(dep.engine, alert_id)
    except LookupError:
        raise HTTPException(404, f"no alert {alert_id}") from None
    behind = data.alert_events(dep, caller, alert_id)
    return render.page(request, "alert.html", {
        "title": f"Alert {alert_id}", "section": "alerts", "alert": alert, **behind,
        "statuses": alerts.STATUSES, "back": request.url.path,
    })


@router.post("/alerts/{alert_id}/status", summary="Acknowledge, resolve or reopen an alert (form)",
             dependencies=CSRF, status_code=303)
def alert_status_form(request: Request, caller: CallerDep, dep: DeploymentDep, alert_id: AlertId,
                      status: Annotated[str, Form(max_length=16)],
                      back: Annotated[str, Form(max_length=2048)] = "",
                      csrf_token: Annotated[str, Form(max_length=128)] = "") -> Response:
    try:
        alerts.set_status(dep.engine, alert_id, status, actor=caller.actor)
    except Forbidden as exc:
        raise HTTPException(403, str(exc)) from None
    except LookupError:
        raise HTTPException(404, f"no alert {alert_id}") from None
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    target = _safe_back(request, back, f"{render.root(request)}/alerts/{alert_id}")
    return RedirectResponse(target, status_code=303)


# --- rules ----------------------------------------------------------------------------------


@router.get("/rules", summary="Built-in and custom rules: scope, owner, state and last hit")
def rules_page(request: Request, caller: CallerDep, dep: DeploymentDep,
               saved: Annotated[str | None, Query(max_length=128, pattern=NO_NUL)] = None) -> Response:
    return render.page(request, "rules.html", {
        "title": "Rules", "section": "rules", "rules": data.all_rules(dep, caller), "saved": saved,
    })


def _rule_form(request: Request, caller: Any, *, rule: dict[str, Any] | None, values: dict[str, str],
               preview: data.Preview | None = None, problem: str | None = None, status_code: int = 200) -> Response:
    return render.page(request, "rule_form.html", {
        "title": f"Rule {rule['id']}" if rule else "New rule", "section": "rules", "rule": rule, "values": values,
        "preview": preview, "problem": problem, "severities": rules.SEVERITIES,
        "own_accounts": None if caller.is_admin else sorted(caller.actor.accounts),
        "preview_hours": data.PREVIEW_HOURS,
    }, status_code=status_code)


def _preview_or_problem(dep: Deployment, caller: Any, values: dict[str, str]) -> tuple[data.Preview | None, str | None, int]:
    try:
        return data.preview(dep, caller, values["condition"], data.split_accounts(values["accounts"])), None, 200
    except (UnsafeCondition, ValueError) as exc:
        return None, f"Preview not possible: {exc}", 400


@router.get("/coverage", summary="ATT&CK coverage: tactics x techniques with the rules behind each cell")
def coverage_page(request: Request, caller: CallerDep, dep: DeploymentDep, covered: bool = False) -> Response:
    from trailhouse.alerting import coverage

    in_force = data.rules_in_force(dep.engine)
    cov = coverage.coverage(in_force)
    tactics = [(short, name, [c for c in cells if c.rules or not covered]) for short, name, cells in cov.by_tactic()]
    return render.page(request, "coverage.html", {
        "title": "ATT&CK coverage", "section": "coverage", "tactics": [t for t in tactics if t[2]],
        "counts": cov.counts(), "rule_count": len(in_force), "covered": covered,
    })


@router.get("/rules/new", summary="Form: a new custom rule")
def new_rule_page(request: Request, caller: CallerDep) -> Response:
    values = {"rule_id": "", "title": "", "severity": "medium", "condition": "", "description": "",
              "accounts": "" if caller.is_admin else ", ".join(sorted(caller.actor.accounts))}
    return _rule_form(request, caller, rule=None, values=values)


@router.post("/rules/new", summary="Preview or save a new custom rule (form)", dependencies=[*CSRF, *HEAVY])
def new_rule_submit(request: Request, caller: CallerDep, dep: DeploymentDep,
                    rule_id: Annotated[str, Form(max_length=128, pattern=NO_NUL)] = "",
                    title: FormText = "", severity: Annotated[str, Form(max_length=16)] = "medium",
                    condition: Annotated[str, Form(max_length=4000, pattern=NO_NUL)] = "",
                    accounts: Annotated[str, Form(max_length=13000, pattern=NO_NUL)] = "",
                    description: Annotated[str, Form(max_length=4000, pattern=NO_NUL)] = "",
                    action: Annotated[str, Form(max_length=16)] = "preview",
                    csrf_token: Annotated[str, Form(max_length=128)] = "") -> Response:
    values = {"rule_id": rule_id.strip(), "title": title, "severity": severity, "condition": condition,
              "description": description, "accounts": accounts}
    if action != "save":
        preview, problem, code = _preview_or_problem(dep, caller, values)
        return _rule_form(request, caller, rule=None, values=values, preview=preview, problem=problem,
                          status_code=code)
    try:
        data.check_rule_text(title, description, condition)
        rulebook.create_rule(dep.engine, caller.actor, rule_id=values["rule_id"], title=title.strip(),
                             condition=condition, severity=severity, accounts=data.split_accounts(accounts),
                             description=description)
    except Forbidden as exc:
        return _rule_form(request, caller, rule=None, values=values, problem=f"Not saved: {exc}", status_code=403)
    except ValueError as exc:  # UnsafeCondition, bad id or severity, duplicate id
        return _rule_form(request, caller, rule=None, values=values, problem=f"Not saved: {exc}", status_code=400)
    return RedirectResponse(f"{render.root(request)}/rules{render.qs(saved=values['rule_id'])}", status_code=303)


def _rule_or_404(dep: Deployment, caller: Any, rule_id: str) -> dict[str, Any]:
    found = data.find_rule(dep, caller, rule_id)
    if found is None:
        raise HTTPException(404, f"no rule {rule_id!r}")
    return found


def _values_of(rule: dict[str, Any]) -> dict[str, str]:
    return {"rule_id": rule["id"], "title": rule["title"], "severity": rule["severity"],
            "condition": rule["condition"], "description": rule["description"], "accounts": ", ".join(rule["scope"])}


@router.get("/rules/{rule_id}", summary="A rule: edit form for custom rules, read-only view of built-in ones")
def rule_page(request: Request, caller: CallerDep, dep: DeploymentDep, rule_id: RuleId) -> Response:
    rule = _rule_or_404(dep, caller, rule_id)
    return _rule_form(request, caller, rule=rule, values=_values_of(rule))


@router.post("/rules/{rule_id}", summary="Preview or save changes to a custom rule (form)",
             dependencies=[*CSRF, *HEAVY])
def rule_submit(request: Request, caller: CallerDep, dep: DeploymentDep, rule_id: RuleId,
                title: FormText = "", severity: Annotated[str, Form(max_length=16)] = "medium",
                condition: Annotated[str, Form(max_length=4000, pattern=NO_NUL)] = "",
                accounts: Annotated[str, Form(max_length=13000, pattern=NO_NUL)] = "",
                description: Annotated[str, Form(max_length=4000, pattern=NO_NUL)] = "",
                action: Annotated[str, Form(max_length=16)] = "preview",
                csrf_token: Annotated[str, Form(max_length=128)] = "") -> Response:
    rule = _rule_or_404(dep, caller, rule_id)
    values = {"rule_id": rule_id, "title": title, "severity": severity, "condition": condition,
              "description": description, "accounts": accounts}
    if action != "save":
        preview, problem, code = _preview_or_problem(dep, caller, values)
        return _rule_form(request, caller, rule=rule, values=values, preview=preview, problem=problem,
                          status_code=code)
    try:
        if rule["builtin"]:
            raise Forbidden("built-in rules are changed in sql/rules/*.yaml, not here; only their switch is "
                            "changed here (by security administrators)")
        data.check_rule_text(title, description, condition)
        rulebook.update_rule(dep.engine, caller.actor, rule_id, title=title.strip(), severity=severity,
                             condition=condition, accounts=data.split_accounts(accounts), description=description)
    except Forbidden as exc:
        return _rule_form(request, caller, rule=rule, values=values, problem=f"Not saved: {exc}", status_code=403)
    except LookupError:
        raise HTTPException(404, f"no rule {rule_id!r}") from None
    except ValueError as exc:
        return _rule_form(request, caller, rule=rule, values=values, problem=f"Not saved: {exc}", status_code=400)
    return RedirectResponse(f"{render.root(request)}/rules{render.qs(saved=rule_id)}", status_code=303)


@router.post("/rules/{rule_id}/enabled", summary="Switch a rule on or off (form)", dependencies=CSRF)
def rule_enabled_form(request: Request, caller: CallerDep, dep: DeploymentDep, rule_id: RuleId,
                      enabled: Annotated[str, Form(max_length=8)],
                      csrf_token: Annotated[str, Form(max_length=128)] = "") -> Response:
    try:
        rulebook.set_enabled(dep.engine, caller.actor, rule_id, enabled.lower() in ("true", "1", "on", "yes"))
    except Forbidden as exc:
        raise HTTPException(403, str(exc)) from None
    except LookupError:
        raise HTTPException(404, f"no rule {rule_id!r}") from None
    return RedirectResponse(f"{render.root(request)}/rules{render.qs(saved=rule_id)}", status_code=303)


# --- MAVs -----------------------------------------------------------------------------------


@router.get("/mavs", summary="MAVs: last runs, lag, loads, quarantined objects, permission report")
def mavs_page(request: Request, caller: CallerDep, dep: DeploymentDep) -> Response:
    return render.page(request, "mavs.html", {"title": "MAVs", "section": "mavs", "mavs": data.mavs(dep)})
