"""The analyst's SQL: DuckDB over the warehouse, with the alert tables registered beside it."""

from __future__ import annotations

from typing import Any

from trailhouse import settings
from trailhouse.db import appdb


def run_sql(query: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    from trailhouse.alerting import alerts
    from trailhouse.warehouse.table import Warehouse

    con = Warehouse(settings.load().warehouse_uri).duckdb()
    for name, table in alerts.arrow_tables(appdb.engine(settings.load().app_db_url)).items():
        con.register(name, table)
    rel = con.execute(query)
    cols = [d[0] for d in rel.description] if rel.description else []
    return cols, rel.fetchall()
