"""The JSON API under /trailhouse/api: the same data as the pages, for scripts (bearer token) and the pages' links."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from trailhouse.alerting import alerts, rulebook
from trailhouse.alerting.roles import Forbidden
from trailhouse.alerting.rules import SEVERITIES
from trailhouse.common import Severity
from trailhouse.deployment import Deployment
from trailhouse.ingest import records
from trailhouse.web import data, search
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

router = APIRouter(tags=["api"])

AlertId = Annotated[int, Path(ge=1, le=2**31 - 1)]
RuleId = Annotated[str, Path(max_length=128, pattern=NO_NUL)]
EventId = Annotated[str, Path(max_length=256, pattern=NO_NUL)]
Day = Annotated[str | None, Query(alias="date", max_length=10, description="the event's date (YYYY-MM-DD): a faster lookup")]
EventIdQuery = Annotated[str, Query(alias="id", min_length=1, max_length=256, pattern=NO_NUL,
                                    description="the event id, any characters (slashes, CR/LF, ...)")]
assert set(SEVERITIES) == set(Severity.__args__)  # type: ignore[attr-defined]


@contextmanager
def domain_errors() -> Iterator[None]:
    """The rulebook's and alerts' refusals as HTTP answers with their own message."""
    try:
        yield
    except Forbidden as exc:
        raise HTTPException(403, str(exc)) from None
    except LookupError as exc:
        raise HTTPException(404, str(exc).strip("'\"")) from None
    except ValueError as exc:  # UnsafeCondition, bad ids and values
        raise HTTPException(400, str(exc)) from None


def _filters(params: dict[str, str | None]) -> search.Filters:
    return search.filters_from(params)  # BadFilter -> 400 (app's handler)


# --- events ---------------------------------------------------------------------------------


@router.get("/me", summary="The caller and their trailhouse role")
def me(caller: CallerDep) -> dict[str, Any]:
    return {"username": caller.username, "is_admin": caller.is_admin,
            "accounts": None if caller.is_admin else sorted(caller.actor.accounts), "role": caller.role_label}


@router.get("/events", summary="Search events (newest first), scoped to the caller's accounts")
def list_events(caller: CallerDep, dep: DeploymentDep, params: FilterParams, page: Page = 1, page_size: PageSize = 50) -> dict[str, Any]:
    f = _filters(params)
    with search.events_connection(dep.warehouse) as con:
        result = search.search(con, f, caller.scope, page=page, page_size=page_size, remote=dep.warehouse.is_remote)
    return {"filters": search.to_params(f), "page": page, "page_size": page_size, "has_next": result.has_next,
            "events": result.rows}


@router.get("/events/summary", summary="Counts by account, region, service, event name, principal, source IP; events over time",
            dependencies=HEAVY)
def events_summary(caller: CallerDep, dep: DeploymentDep, params: FilterParams) -> dict[str, Any]:
    f = _filters(params)
    with search.events_connection(dep.warehouse) as con:
        s = search.summary(con, f, caller.scope, remote=dep.warehouse.is_remote)
    return {"filters": search.to_params(f), "total": s.total, "errors": s.errors,
            "top": {k: [{"value": v, "count": n} for v, n in rows] for k, rows in s.top.items()},
            "bucket_seconds": s.bucket_seconds, "series": [{"start": t, "count": n} for t, n in s.series]}


def _cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, date):
        return value.isoformat()
    return value


def _csv_cell(value: Any) -> Any:
    value = _cell(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    # CloudTrail text is attacker-influenced (user agents, error messages): never let a
    # spreadsheet read a cell as a formula.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _csv_chunks(table: Any) -> Iterator[str]:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(table.column_names)
    for batch in table.to_batches(max_chunksize=5000):
        for row in batch.to_pylist():
            writer.writerow([_csv_cell(v) for v in row.values()])
        yield buf.getvalue()
        buf.seek(0)
        buf.truncate()
    yield buf.getvalue()


def _json_chunks(table: Any) -> Iterator[str]:
    yield "["
    first = True
    for batch in table.to_batches(max_chunksize=5000):
        parts = []
        for row in batch.to_pylist():
            parts.append(("\n" if first else ",\n") + json.dumps({k: _cell(v) for k, v in row.items()}))
            first = False
        yield "".join(parts)
    yield "\n]\n"


@router.get("/events/export", summary="The current search as a CSV or JSON download (newest first)",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}, "application/json": {}}}}, dependencies=HEAVY)
def export_events(caller: CallerDep, dep: DeploymentDep, params: FilterParams,
                  format: Annotated[Literal["csv", "json"], Query(description="csv or json")] = "csv") -> StreamingResponse:
    f = _filters(params)
    with search.events_connection(dep.warehouse) as con:
        table = search.export_table(con, f, caller.scope, remote=dep.warehouse.is_remote)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    headers = {"Content-Disposition": f'attachment; filename="trailhouse-events-{stamp}.{format}"',
               "X-Trailhouse-Rows": str(table.num_rows)}
    if table.num_rows >= search.EXPORT_MAX_ROWS:
        headers["X-Trailhouse-Truncated"] = f"only the newest {search.EXPORT_MAX_ROWS} events; narrow the search"
    if format == "json":
        return StreamingResponse(_json_chunks(table), media_type="application/json", headers=headers)
    return StreamingResponse(_csv_chunks(table), media_type="text/csv; charset=utf-8", headers=headers)


def event_or_404(dep: Deployment, caller: Any, event_id: str, day: str | None) -> dict[str, Any]:
    """The event's row if the caller may see it. A foreign account's event is "not found", exactly like
    a missing one: the answer must not reveal that it exists."""
    when = data.parse_day(day)
    with search.events_connection(dep.warehouse) as con:
        row = search.get_event(con, event_id, caller.scope, day=when, remote=dep.warehouse.is_remote)
    if row is None:
        raise HTTPException(404, "no such event in the accounts you can see")
    return row


@router.get("/event", summary="One event by an id given as `?id=`: any id, also one with a slash or CR/LF")
def get_event_by_query(caller: CallerDep, dep: DeploymentDep, event_id: EventIdQuery, day: Day = None) -> dict[str, Any]:
    return event_view(event_or_404(dep, caller, event_id, day))


@router.get("/events/{event_id}", summary="One event: the original CloudTrail record and related searches")
def get_event(caller: CallerDep, dep: DeploymentDep, event_id: EventId, day: Day = None) -> dict[str, Any]:
    return event_view(event_or_404(dep, caller, event_id, day))


def event_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_id": row["event_id"], "event_date": row["event_date"], "account_id": row["account_id"],
        "mav": row["mav"], "source_key": row["source_key"], "ingested_at": row["ingested_at"],
        "record": records.rebuild(row),
        "related": {label: search.to_params(f) for label, f in search.related(row).items()},
    }


# --- alerts ---------------------------------------------------------------------------------


class StatusIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["open", "acknowledged", "resolved"]


@router.get("/alerts", summary="Every alert in the deployment (every role sees every alert), newest first")
def list_alerts(caller: CallerDep, dep: DeploymentDep, filters: AlertFilters, page: Page = 1, page_size: PageSize = 50) -> dict[str, Any]:
    rows = alerts.query(dep.engine, **filters, limit=page_size + 1, offset=(page - 1) * page_size)
    return {"page": page, "page_size": page_size, "has_next": len(rows) > page_size, "alerts": rows[:page_size]}


@router.get("/alerts/{alert_id}", summary="One alert and the events behind it that the caller may see")
def get_alert(caller: CallerDep, dep: DeploymentDep, alert_id: AlertId) -> dict[str, Any]:
    with domain_errors():
        alert = alerts.get(dep.engine, alert_id)
    behind = data.alert_events(dep, caller, alert_id)
    return {"alert": alert, **behind}


@router.post("/alerts/{alert_id}/status",
             summary="Acknowledge, resolve or reopen an alert (who and when recorded); owners: their accounts' alerts",
             dependencies=CSRF)
def set_alert_status(caller: CallerDep, dep: DeploymentDep, alert_id: AlertId, body: StatusIn) -> dict[str, Any]:
    with domain_errors():
        return alerts.set_status(dep.engine, alert_id, body.status, actor=caller.actor)


# --- rules ----------------------------------------------------------------------------------

Text256 = Annotated[str, Field(max_length=256, pattern=NO_NUL)]
Condition = Annotated[str, Field(min_length=1, max_length=4000, pattern=NO_NUL)]
Accounts = Annotated[list[Annotated[str, Field(pattern=r"^\d{12}$")]], Field(max_length=1000)]


class RuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: Annotated[str, Field(max_length=128, pattern=NO_NUL)]
    title: Annotated[str, Field(min_length=1, max_length=256, pattern=NO_NUL)]
    severity: Severity
    condition: Condition
    accounts: Accounts = Field(default_factory=list, description="owners: required, their own; empty: every account")
    description: Annotated[str, Field(max_length=4000, pattern=NO_NUL)] = ""


class RuleChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: Annotated[str, Field(min_length=1, max_length=256, pattern=NO_NUL)] | None = None
    severity: Severity | None = None
    condition: Condition | None = None
    accounts: Accounts | None = None
    description: Annotated[str, Field(max_length=4000, pattern=NO_NUL)] | None = None
    enabled: bool | None = None


class PreviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    condition: Condition
    accounts: Accounts = Field(default_factory=list)


class EnabledIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool


@router.get("/rules", summary="Built-in and custom rules with scope, owner, state and last hit")
def list_rules(caller: CallerDep, dep: DeploymentDep) -> list[dict[str, Any]]:
    return data.all_rules(dep, caller)


@router.post("/rules", status_code=201, summary="Create a custom rule (owners: for their own accounts only)",
             dependencies=CSRF)
def create_rule(caller: CallerDep, dep: DeploymentDep, body: RuleIn) -> dict[str, Any]:
    with domain_errors():
        data.check_rule_text(body.title, body.description, body.condition)
        rule = rulebook.create_rule(dep.engine, caller.actor, rule_id=body.id, title=body.title,
                                    condition=body.condition, severity=body.severity, accounts=body.accounts,
                                    description=body.description)
    return data.rule_view(caller, rule, {})


@router.post("/rules/preview", summary="Run a condition over the last 24 hours of the caller's events; saves nothing",
             dependencies=[*CSRF, *HEAVY])
def preview_rule(caller: CallerDep, dep: DeploymentDep, body: PreviewIn) -> dict[str, Any]:
    with domain_errors():
        p = data.preview(dep, caller, body.condition, body.accounts)
    return {"accounts": p.accounts, "not_yours": p.not_yours, "start": p.start, "end": p.end, "events": p.events,
            "capped": p.capped, "matches": p.matches, "matches_capped": p.matches_capped, "alerts": p.alerts,
            "examples": p.rows}


@router.get("/rules/{rule_id}", summary="One rule")
def get_rule(caller: CallerDep, dep: DeploymentDep, rule_id: RuleId) -> dict[str, Any]:
    found = data.find_rule(dep, caller, rule_id)
    if found is None:
        raise HTTPException(404, f"no rule {rule_id!r}")
    return found


@router.patch("/rules/{rule_id}", summary="Change a custom rule (the new scope is checked like a new rule's)",
              dependencies=CSRF)
def update_rule(caller: CallerDep, dep: DeploymentDep, rule_id: RuleId, body: RuleChange) -> dict[str, Any]:
    changes = body.model_dump(exclude_none=True)
    with domain_errors():
        data.check_rule_text(changes.get("title"), changes.get("description"), changes.get("condition"))
        if not changes:
            raise ValueError("nothing to change")
        rule = rulebook.update_rule(dep.engine, caller.actor, rule_id, **changes)
    return data.rule_view(caller, rule, data.last_hits(dep.engine))


@router.post("/rules/{rule_id}/enabled", summary="Switch a rule on or off (built-in rules: administrators only)",
             dependencies=CSRF)
def set_rule_enabled(caller: CallerDep, dep: DeploymentDep, rule_id: RuleId, body: EnabledIn) -> dict[str, Any]:
    with domain_errors():
        rulebook.set_enabled(dep.engine, caller.actor, rule_id, body.enabled)
    return get_rule(caller, dep, rule_id)


# --- MAVs -----------------------------------------------------------------------------------


@router.get("/mavs", summary="Per MAV: last runs, delivery-to-load lag, quarantined objects, permission report")
def list_mavs(caller: CallerDep, dep: DeploymentDep) -> list[dict[str, Any]]:
    return data.mavs(dep)
