"""`trailhouse sql`: query the warehouse with DuckDB."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from trailhouse import output


def register(sub: Any) -> None:
    sql = sub.add_parser("sql", help="query the warehouse with DuckDB (table: cloudtrail_events)")
    sql.add_argument("query")
    sql.add_argument("--format", choices=("table", "csv", "json"), default="table")
    sql.set_defaults(func=cmd_sql)


def cmd_sql(args: argparse.Namespace) -> int:
    import duckdb

    from trailhouse.pipeline import sql as query

    try:
        cols, rows = query.run_sql(args.dep, args.query)
    except duckdb.Error as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    output.print_rows(cols, rows, args.format)
    return 0
