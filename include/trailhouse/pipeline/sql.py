"""The analyst's SQL: DuckDB over the warehouse, with the alert tables registered beside it."""

from __future__ import annotations

import re
from typing import Any

from trailhouse.db import appdb
from trailhouse.deployment import Deployment

ALERT_TABLES = (appdb.alerts.name, appdb.alert_events.name)


def run_sql(dep: Deployment, query: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The columns and rows of `query`; `cloudtrail_events` is the warehouse, `alerts` and
    `alert_events` the app database's alerts.
    """
    con = dep.warehouse.duckdb()
    # Copying the alerts out of the app database costs more than a count over millions of
    # events: only a query that names an alert table gets them.
    if any(re.search(rf"\b{name}\b", query, re.IGNORECASE) for name in ALERT_TABLES):
        from trailhouse.alerting import alerts

        for name, table in alerts.arrow_tables(dep.engine).items():
            con.register(name, table)
    rel = con.execute(query)
    cols = [d[0] for d in rel.description] if rel.description else []
    return cols, rel.fetchall()
