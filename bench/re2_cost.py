"""What regular expressions cost in DuckDB's RE2, and how far past a time budget an interrupt lands:
the measurements behind docs/rules.md, "Regular expressions" and "Limits per rule".

    .venv/bin/python -m bench.re2_cost     # about 80 s on 2 cores
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

AGENT = "aws-cli/2.15.0 Python/3.11.6 Linux/6.1 exe/x86_64 "  # 51 bytes + the row number
ISSUE = "((((a*)*)*)*){1000}b"

# (pattern, rows, text): text "agent" is a user agent, "a2000" 2,000 'a' (what keeps RE2's states alive).
CASES: list[tuple[str, int, str]] = [
    (ISSUE, 1, "agent"), (ISSUE, 500, "agent"), (ISSUE, 2000, "agent"), (ISSUE, 200, "a2000"),
    ("((((a*)*)*)*){100}b", 500, "agent"), ("((((a*)*)*)*){300}b", 500, "agent"),
    ("a{1000}b", 200, "a2000"), ("((a?){10}){50}b", 200, "a2000"), ("((a?){5}){90}b", 200, "a2000"),
    ("(a?){100}" * 5 + "b", 200, "a2000"),
    ("((a?){5}){40}b", 200, "a2000"), ("(a?){100}(a?){100}b", 200, "a2000"),
    ("(a*)*", 200, "a2000"), ("(a+)+b", 200, "a2000"), ("(x+x+)+y", 200, "a2000"), ("((a|aa)*){100}b", 200, "a2000"),
    ("(a{1000}){1000}", 1, "agent"),
]


def _table(con: Any, rows: int, text: str) -> None:
    value = "repeat('a', 2000)" if text == "a2000" else f"'{AGENT}'"
    con.execute(f"CREATE OR REPLACE TABLE t AS SELECT {value} || i AS s FROM range({rows}) r(i)")


def regex_costs() -> list[dict[str, Any]]:
    import duckdb

    out = []
    with duckdb.connect(config={"threads": 2}) as con:
        for pattern, rows, text in CASES:
            _table(con, rows, text)
            t0 = time.perf_counter()
            try:
                con.execute("SELECT count(*) FROM t WHERE regexp_matches(s, $p)", {"p": pattern}).fetchone()
                result = "ok"
            except duckdb.Error as exc:
                result = str(exc).split(":", 1)[-1].strip()
            out.append({"pattern": pattern, "rows": rows, "text": text, "seconds": round(time.perf_counter() - t0, 3),
                        "result": result})
        for like in ("s LIKE '" + "%a" * 30 + "%b'", "s GLOB '" + "*a" * 30 + "*b'"):
            _table(con, 2000, "a2000")
            t0 = time.perf_counter()
            con.execute(f"SELECT count(*) FROM t WHERE {like}").fetchone()
            out.append({"pattern": like, "rows": 2000, "text": "a2000", "seconds": round(time.perf_counter() - t0, 3),
                        "result": "ok"})
    return out


def interrupt_overrun(rows: int, budget: float = 1.0) -> dict[str, Any]:
    """The issue's pattern as a trusted rule over `rows` user agents under a `budget`-second time budget."""
    from trailhouse.alerting import rules

    base = datetime(2026, 11, 20, tzinfo=UTC)
    recs = [dict(rules.BASE_RECORD, eventID=f"e{i}", userAgent=f"{AGENT}{i}",
                 eventTime=(base + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ")) for i in range(rows)]
    con = rules.connect(rules.records_table(recs))
    rule = rules.Rule(id="issue-pattern", title="t", severity="low",
                      condition=f"regexp_matches(coalesce(user_agent, ''), '{ISSUE}')")
    t0 = time.perf_counter()
    result = rules.evaluate(con, [rule], rules.Limits(budget, None))
    seconds = time.perf_counter() - t0
    con.close()
    return {"rows": rows, "budget_s": budget, "stopped_after_s": round(seconds, 2),
            "problem": result.problems["issue-pattern"].kind if "issue-pattern" in result.problems else None}


def main() -> None:
    import duckdb

    print(json.dumps({"duckdb": duckdb.__version__}))
    for row in regex_costs():
        print(json.dumps(row))
    for rows in (5000, 20000):
        print(json.dumps(interrupt_overrun(rows)))


if __name__ == "__main__":
    main()
