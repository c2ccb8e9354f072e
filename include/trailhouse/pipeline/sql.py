"""The analyst's SQL: DuckDB over the warehouse, with the alert tables registered beside it."""

from __future__ import annotations

from typing import Any

from trailhouse.deployment import Deployment


def run_sql(dep: Deployment, query: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    from trailhouse.alerting import alerts

    con = dep.warehouse.duckdb()
    for name, table in alerts.arrow_tables(dep.engine).items():
        con.register(name, table)
    rel = con.execute(query)
    cols = [d[0] for d in rel.description] if rel.description else []
    return cols, rel.fetchall()
