"""Request parameters shared by pages and API routes (typed and bounded, so they appear in the OpenAPI document)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, TypedDict

from fastapi import Depends, Query

from trailhouse.deployment import Deployment
from trailhouse.web.auth import Caller, caller, check_csrf
from trailhouse.web.context import deployment
from trailhouse.web.limits import heavy_slot

NO_NUL = r"^[^\x00]*$"
Text = Annotated[str | None, Query(max_length=256, pattern=NO_NUL)]
CallerDep = Annotated[Caller, Depends(caller)]
DeploymentDep = Annotated[Deployment, Depends(deployment)]
CSRF = [Depends(check_csrf)]


def heavy_request(caller: CallerDep, dep: DeploymentDep) -> Iterator[None]:
    """A summary, export or rule preview: at most `TRAILHOUSE_WEB_HEAVY_PER_USER` per user at once (429)."""
    with heavy_slot(caller.username, dep.settings.web.heavy_per_user):
        yield


HEAVY = [Depends(heavy_request)]


def event_filter_params(
    from_: Annotated[str | None, Query(alias="from", max_length=40, pattern=NO_NUL,
                                       description="start, UTC (YYYY-MM-DDTHH:MM); default: 24 hours before `to`")] = None,
    to: Annotated[str | None, Query(max_length=40, pattern=NO_NUL, description="end, UTC; default: now")] = None,
    mav: Text = None,
    account: Annotated[str | None, Query(max_length=12, pattern=r"^\d*$", description="12-digit account id")] = None,
    region: Text = None,
    source: Annotated[str | None, Query(max_length=256, pattern=NO_NUL, description="event source")] = None,
    name: Annotated[str | None, Query(max_length=256, pattern=NO_NUL, description="event name")] = None,
    principal: Annotated[str | None, Query(max_length=2048, pattern=NO_NUL,
                                           description="ARN (or part of one), user name, access key id")] = None,
    user_type: Text = None,
    ip: Annotated[str | None, Query(max_length=256, pattern=NO_NUL, description="source IP address")] = None,
    error: Annotated[str | None, Query(max_length=256, pattern=NO_NUL, description="error code")] = None,
    any_error: Annotated[str | None, Query(max_length=8, description="true: only calls that failed")] = None,
    read_only: Annotated[str | None, Query(max_length=8, description="true, false or any")] = None,
    q: Annotated[str | None, Query(max_length=1024, pattern=NO_NUL,
                                   description="text inside the request parameters (case-insensitive)")] = None,
    resource: Annotated[str | None, Query(max_length=2048, pattern=NO_NUL,
                                          description="resource ARN or name in resources/request parameters")] = None,
) -> dict[str, str | None]:
    """The raw filter values; `search.filters_from` turns them into Filters (or BadFilter)."""
    return {"from": from_, "to": to, "mav": mav, "account": account, "region": region, "source": source,
            "name": name, "principal": principal, "user_type": user_type, "ip": ip, "error": error,
            "any_error": any_error, "read_only": read_only, "q": q, "resource": resource}


FilterParams = Annotated[dict[str, str | None], Depends(event_filter_params)]
Page = Annotated[int, Query(ge=1, le=10_000, description="page number, from 1")]
PageSize = Annotated[int, Query(ge=1, le=500, description="rows per page")]


class AlertFilterValues(TypedDict):
    """The alert list's filters, as `alerts.query` takes them."""

    mav: str | None
    account: str | None
    rule: str | None
    severity: str | None
    status: str | None


def alert_filter_params(
    mav: Text = None,
    account: Annotated[str | None, Query(max_length=12, pattern=r"^\d*$")] = None,
    rule: Text = None,
    severity: Text = None,
    status: Text = None,
) -> AlertFilterValues:
    return AlertFilterValues(mav=mav or None, account=account or None, rule=rule or None, severity=severity or None,
                             status=status or None)


AlertFilters = Annotated[AlertFilterValues, Depends(alert_filter_params)]
