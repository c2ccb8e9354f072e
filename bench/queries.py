"""Section 5: analyst queries on a warehouse of --query-events events, via DuckDB and via Polars."""

from __future__ import annotations

import datetime
import shutil
import time
from typing import Any

from bench.common import MIB, Sheet, median

REPEATS = 3
SG_EVENTS = ("AuthorizeSecurityGroupIngress", "AuthorizeSecurityGroupEgress", "RevokeSecurityGroupIngress",
             "RevokeSecurityGroupEgress", "CreateSecurityGroup", "DeleteSecurityGroup", "ModifySecurityGroupRules")


def build(base_uri: str, uri: str, target: int) -> dict[str, Any]:
    """Runs in its own process. Copies of the ingested table, each shifted back in time.

    Copy k has event_time and event_date moved back by k x (the days the base spans) and
    `~k` appended to event_id, so every copy is distinct history; each copy is written and
    committed the way a load is (PartitionedWriter, then Warehouse.commit), so the queries
    read files as trailhouse writes them.
    """
    import polars as pl

    from trailhouse.warehouse.schema import ARROW_SCHEMA
    from trailhouse.warehouse.table import PartitionedWriter, Warehouse

    t0 = time.perf_counter()
    shutil.rmtree(uri, ignore_errors=True)
    base = Warehouse(base_uri).scan().collect()
    dates = base.get_column("event_date")
    span = (dates.max() - dates.min()).days + 1
    wh = Warehouse(uri)
    wh.ensure_table()
    written, k = 0, 0
    while written < target:
        part = base.slice(0, target - written)
        if k:
            shift = datetime.timedelta(days=span * k)
            part = part.with_columns(
                (pl.col("event_id") + f"~{k}").alias("event_id"),
                (pl.col("event_time") - shift).alias("event_time"),
                (pl.col("event_date") - shift).alias("event_date"),
            )
        writer = PartitionedWriter(wh.table_uri)
        writer.write(part.to_arrow().cast(ARROW_SCHEMA))
        wh.commit(writer.close(), run_id=f"bench-copy-{k}")
        written += part.height
        k += 1
    stats = wh.stats()
    return {"events": written, "copies": k, "base_events": base.height, "span_days": span,
            "days": stats["partitions"], "files": stats["files"], "seconds": time.perf_counter() - t0,
            "bytes": sum(p.stat().st_size for p in __import__("pathlib").Path(wh.table_uri).rglob("*.parquet"))}


def pick_parameters(uri: str, day: datetime.date) -> dict[str, Any]:
    """A principal busy on `day`, and a security group id that appears in request_parameters."""
    import polars as pl

    from trailhouse.warehouse.table import Warehouse

    lf = Warehouse(uri).scan().filter(pl.col("event_date") == day)
    top = (lf.filter(pl.col("principal_arn").is_not_null()).group_by("principal_arn").agg(pl.len().alias("n"))
           .sort(["n", "principal_arn"], descending=[True, False]).collect())
    principal = top.get_column("principal_arn")[len(top) // 20]  # busy, but not the busiest
    sg = (lf.select(pl.col("request_parameters").str.extract(r'"groupId":"(sg-[0-9a-f]+)"', 1).alias("sg"))
          .drop_nulls().sort("sg").head(1).collect())
    return {"day": day, "principal": principal, "needle": sg.get_column("sg")[0]}


def _queries(p: dict[str, Any]) -> dict[str, tuple[str, Any]]:
    import polars as pl

    day: datetime.date = p["day"]
    week0 = day - datetime.timedelta(days=6)
    sg_list = ", ".join(f"'{e}'" for e in SG_EVENTS)
    c = pl.col
    return {
        "a. one principal's events over a day": (
            f"""SELECT event_time, event_name, event_source, region, source_ip_address, error_code
                FROM cloudtrail_events WHERE event_date = DATE '{day}' AND principal_arn = '{p["principal"]}'
                ORDER BY event_time""",
            lambda lf: lf.filter((c("event_date") == day) & (c("principal_arn") == p["principal"]))
            .select("event_time", "event_name", "event_source", "region", "source_ip_address", "error_code")
            .sort("event_time"),
        ),
        "b. errors by account over a week": (
            f"""SELECT account_id, count(*) AS errors FROM cloudtrail_events
                WHERE event_date BETWEEN DATE '{week0}' AND DATE '{day}' AND error_code IS NOT NULL
                GROUP BY account_id ORDER BY errors DESC, account_id""",
            lambda lf: lf.filter(c("event_date").is_between(week0, day) & c("error_code").is_not_null())
            .group_by("account_id").agg(pl.len().alias("errors")).sort(["errors", "account_id"], descending=[True, False]),
        ),
        "c. security group changes, all accounts, all days": (
            f"""SELECT event_time, account_id, region, principal_arn, event_name, request_parameters
                FROM cloudtrail_events WHERE event_source = 'ec2.amazonaws.com' AND event_name IN ({sg_list})
                ORDER BY event_time""",
            lambda lf: lf.filter((c("event_source") == "ec2.amazonaws.com") & c("event_name").is_in(list(SG_EVENTS)))
            .select("event_time", "account_id", "region", "principal_arn", "event_name", "request_parameters")
            .sort("event_time"),
        ),
        "d. string in request_parameters, all days": (
            f"""SELECT event_time, account_id, event_name, request_parameters FROM cloudtrail_events
                WHERE contains(request_parameters, '{p["needle"]}') ORDER BY event_time""",
            lambda lf: lf.filter(c("request_parameters").str.contains(p["needle"], literal=True))
            .select("event_time", "account_id", "event_name", "request_parameters").sort("event_time"),
        ),
    }


def web_pages(uri: str, p: dict[str, Any]) -> dict[str, Any]:
    """The events report's first page of a filtered search, and its summary view, as the UI runs them."""
    from trailhouse.warehouse.table import Warehouse
    from trailhouse.web import search

    day = p["day"] if isinstance(p.get("day"), datetime.date) else None
    end = datetime.datetime.combine(day or datetime.date.today(), datetime.time(), tzinfo=datetime.UTC)
    end += datetime.timedelta(days=1)
    start = end - datetime.timedelta(hours=24)  # the report's default range: the last 24 h
    filtered = search.Filters(start=start, end=end, any_error=True)
    out: dict[str, Any] = {}
    for name, fn in (("first page, errors of the last 24 h", lambda con: search.search(con, filtered, None)),
                     ("summary view, last 24 h", lambda con: search.summary(con, search.Filters(start=start, end=end), None))):
        runs = []
        for _ in range(REPEATS):
            t0 = time.perf_counter()
            con = Warehouse(uri).duckdb()
            fn(con)
            con.close()
            runs.append(time.perf_counter() - t0)
        out[name] = median(runs)
    return out


def run_queries(uri: str, day: datetime.date) -> dict[str, Any]:
    """Runs in its own process: each query 3 times per engine, table opened inside each timed run."""
    from trailhouse.warehouse.table import Warehouse

    p = pick_parameters(uri, day)
    out: dict[str, Any] = {"parameters": {k: str(v) for k, v in p.items()}, "queries": {}}
    for name, (sql, polars_q) in _queries(p).items():
        duck, pol, duck_rows, pol_rows = [], [], 0, 0
        for _ in range(REPEATS):
            t0 = time.perf_counter()
            con = Warehouse(uri).duckdb()
            con.execute("SET enable_progress_bar = false")
            duck_rows = con.sql(sql).to_arrow_table().num_rows
            con.close()
            duck.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            pol_rows = polars_q(Warehouse(uri).scan()).collect().height
            pol.append(time.perf_counter() - t0)
        out["queries"][name] = {"duckdb_s": median(duck), "polars_s": median(pol), "duckdb_runs": duck,
                                "polars_runs": pol, "rows": duck_rows, "polars_rows": pol_rows, "sql": sql}
    out["web"] = web_pages(uri, p)
    opens = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        Warehouse(uri).duckdb().close()
        opens.append(time.perf_counter() - t0)
    out["open_duckdb_s"] = median(opens)
    return out


def report(built: dict[str, Any], res: dict[str, Any], rss: int, sheet: Sheet) -> None:
    s = "queries"
    sheet.add(s, "query warehouse", built["events"], "events",
              note=f"{built['copies']} time-shifted copies of the ingested table, each written and committed as a load: "
                   f"{built['days']} days, {built['files']} files, {built['bytes'] / MIB:.0f} MiB; built in "
                   f"{built['seconds']:.0f} s")
    for name, q in res["queries"].items():
        same = "" if q["rows"] == q["polars_rows"] else f" (polars returned {q['polars_rows']:,}!)"
        sheet.add(s, f"{name}: DuckDB", q["duckdb_s"], "s", note=f"{q['rows']:,} rows{same}; median of {REPEATS}")
        sheet.add(s, f"{name}: Polars", q["polars_s"], "s", ratio=f"{q['polars_s'] / q['duckdb_s']:.2f}x DuckDB")
    for name, seconds in res.get("web", {}).items():
        sheet.add(s, f"web: {name}", seconds, "s", note=f"trailhouse.web.search as the events report runs it; median of {REPEATS}")
    sheet.add(s, "Warehouse.duckdb() open (in every query above)", res["open_duckdb_s"], "s")
    sheet.add(s, "query process peak RSS", rss / MIB, "MiB")
    sheet.details["queries"] = {"warehouse": built, **res}
