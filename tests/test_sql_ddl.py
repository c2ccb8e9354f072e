"""sql/: the Athena and Trino DDL and every example query agree with trailhouse.warehouse.schema."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pytest
import sqlglot
import yaml
from sqlglot import exp

from trailhouse.warehouse.schema import ARROW_SCHEMA, COLUMNS, PARTITION_BY
from trailhouse.warehouse.table import TABLE, Warehouse

ROOT = Path(__file__).resolve().parents[1]
SQL = ROOT / "sql"
COLUMN_NAMES = {c.name for c in COLUMNS}
# sql/<engine>/*.sql is written in that engine's dialect.
DIALECTS = {"athena": "athena", "trino": "trino"}
SQL_FILES = sorted(SQL.glob("**/*.sql"))


def dialect_of(path: Path) -> str:
    return DIALECTS[path.relative_to(SQL).parts[0]]


def statements(path: Path) -> list[exp.Expression]:
    parsed = sqlglot.parse(path.read_text(), read=dialect_of(path))
    return [s for s in parsed if s is not None]


def queries(path: Path) -> list[exp.Query]:
    return [s for s in statements(path) if isinstance(s, exp.Query)]


def readme_queries() -> list[exp.Query]:
    """The SQL of sql/README.md (DuckDB): its sql blocks, con.sql(...) strings, `trailhouse sql` lines."""
    text = (SQL / "README.md").read_text()
    found = re.findall(r'con\.sql\("""(.*?)"""\)', text, re.S)
    found += re.findall(r"```sql\n(.*?)```", text, re.S)
    # `trailhouse sql "..."` in the shell examples.
    found += re.findall(r'trailhouse sql (?:--format \w+ )?"([^"]+)"', text)
    parsed = [sqlglot.parse_one(q, read="duckdb") for q in found]
    return [q for q in parsed if isinstance(q, exp.Query)]


def columns_used(query: exp.Query) -> set[str]:
    aliases = {a.alias for a in query.find_all(exp.Alias)}
    return {c.name for c in query.find_all(exp.Column) if c.name not in aliases or c.table}


def test_every_engine_has_a_ddl_file() -> None:
    assert {p.relative_to(SQL).parts[0] for p in SQL_FILES} >= set(DIALECTS)


@pytest.mark.parametrize("path", SQL_FILES, ids=lambda p: str(p.relative_to(SQL)))
def test_example_queries_use_only_the_tables_columns(path: Path) -> None:
    qs = queries(path)
    assert len(qs) >= 3, f"{path.name}: expected three example queries, found {len(qs)}"
    for q in qs:
        unknown = sorted(columns_used(q) - COLUMN_NAMES)
        assert not unknown, f"{path.relative_to(ROOT)}: columns not in trailhouse.warehouse.schema: {unknown}\n{q.sql()}"
        tables = {t.name for t in q.find_all(exp.Table)}
        assert tables == {TABLE}, f"{path.relative_to(ROOT)} queries {tables}"


def test_readme_queries_use_only_the_tables_columns() -> None:
    qs = readme_queries()
    assert qs, "no SQL found in sql/README.md"
    for q in qs:
        unknown = sorted(columns_used(q) - COLUMN_NAMES)
        assert not unknown, f"sql/README.md: columns not in trailhouse.warehouse.schema: {unknown}\n{q.sql()}"
        assert {t.name for t in q.find_all(exp.Table)} == {TABLE}


def partition_filters(q: exp.Query) -> list[exp.Expression]:
    """The predicates of q's WHERE that constrain a partition column."""
    where = q.args.get("where")
    if where is None:
        return []
    preds = [
        p
        for p in where.find_all(exp.EQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Between, exp.In)
        if any(c.name in PARTITION_BY for c in p.find_all(exp.Column))
    ]
    return preds


@pytest.mark.parametrize("path", SQL_FILES, ids=lambda p: str(p.relative_to(SQL)))
def test_example_queries_prune_on_the_partition_column(path: Path) -> None:
    assert PARTITION_BY == ("event_date",), "the DDL comments and queries assume event_date is the partition"
    for q in queries(path):
        preds = partition_filters(q)
        assert preds, f"{path.relative_to(ROOT)}: a query without an event_date filter scans the whole table\n{q.sql()}"
        for p in preds:
            # Trino and Athena do not cast a string to a date: `event_date = '2024-06-03'` fails.
            strings = [lit for lit in p.find_all(exp.Literal) if lit.is_string and not isinstance(lit.parent, (exp.Cast, exp.Interval))]
            assert not strings, f"{path.relative_to(ROOT)}: compare event_date with DATE '...', not a string: {p.sql()}"


@pytest.mark.parametrize("path", SQL_FILES, ids=lambda p: str(p.relative_to(SQL)))
def test_example_queries_run_on_the_tables_schema(path: Path) -> None:
    """Each query, transpiled to DuckDB, binds and runs on an empty table of the real schema."""
    con = duckdb.connect()
    empty = ARROW_SCHEMA.empty_table()
    con.register(TABLE, empty)
    for q in queries(path):
        local = q.copy()
        for t in local.find_all(exp.Table):
            t.set("db", None)
            t.set("catalog", None)
        con.sql(local.sql(dialect="duckdb")).fetchall()


def test_athena_ddl_registers_the_delta_table() -> None:
    path = SQL / "athena" / "cloudtrail_events.sql"
    creates = [s for s in statements(path) if isinstance(s, exp.Create) and s.kind == "TABLE"]
    assert len(creates) == 1
    create = creates[0]
    assert create.this.name == TABLE
    props = create.args["properties"].expressions
    assert any(isinstance(p, exp.ExternalProperty) for p in props), "Athena needs CREATE EXTERNAL TABLE"
    # Athena takes columns and partitioning from the Delta log and rejects any other property.
    assert not list(create.this.find_all(exp.ColumnDef)), "Athena's Delta DDL must not list columns"
    assert not any(isinstance(p, exp.PartitionedByProperty) for p in props)
    location = [p.this.name for p in props if isinstance(p, exp.LocationProperty)]
    assert len(location) == 1 and location[0].startswith("s3://")
    assert location[0].rstrip("/").endswith(f"/{TABLE}"), f"{location[0]} is not the table's folder"
    table_props = {
        p.name.lower(): p.text("value").upper() for p in props if type(p) is exp.Property  # TBLPROPERTIES entries
    }
    assert table_props.get("table_type") == "DELTA", table_props
    assert set(table_props) == {"table_type"}, f"Athena allows only table_type for Delta tables: {table_props}"
    # The queries read the table from the same database the DDL creates it in.
    for q in queries(path):
        assert {t.db for t in q.find_all(exp.Table)} == {create.this.db}


def register_table_calls(text: str) -> list[dict[str, str]]:
    calls = []
    for m in re.finditer(r"CALL\s+([\w.]+)\.system\.register_table\s*\((.*?)\)\s*;", text, re.S | re.I):
        args = dict(re.findall(r"(\w+)\s*=>\s*'([^']*)'", m.group(2)))
        calls.append({"catalog": m.group(1), **args})
    return calls


def test_trino_ddl_registers_the_delta_table() -> None:
    path = SQL / "trino" / "cloudtrail_events.sql"
    text = path.read_text()
    calls = register_table_calls(text)
    assert len(calls) == 1, "expected one CALL <catalog>.system.register_table(...)"
    call = calls[0]
    assert call.get("table_name") == TABLE
    # Where trailhouse writes the table for the docker-compose deployment.
    compose = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
    warehouse = compose["x-airflow-common"]["environment"]["TRAILHOUSE_WAREHOUSE"]
    assert call.get("table_location", "").rstrip("/") == Warehouse(warehouse).table_uri
    # The schema exists before the call, in the same catalog, and the queries read it there.
    schemas = [
        s.this for s in statements(path) if isinstance(s, exp.Create) and s.kind == "SCHEMA"
    ]
    assert [(s.catalog, s.db) for s in schemas] == [(call["catalog"], call.get("schema_name"))]
    first = {kw: re.search(rf"^{kw}\b", text, re.M | re.I) for kw in ("CREATE SCHEMA", "CALL")}
    assert first["CREATE SCHEMA"] and first["CALL"] and first["CREATE SCHEMA"].start() < first["CALL"].start()
    for q in queries(path):
        assert {(t.catalog, t.db, t.name) for t in q.find_all(exp.Table)} == {(call["catalog"], call["schema_name"], TABLE)}


def test_trino_catalog_enables_the_procedure_without_secrets() -> None:
    path = SQL / "trino" / "delta.properties"
    props = dict(
        (k.strip(), v.strip())
        for k, v in (line.split("=", 1) for line in path.read_text().splitlines() if line.strip() and not line.lstrip().startswith("#"))
    )
    assert props.get("connector.name") in ("delta_lake", "delta-lake")
    assert props.get("delta.register-table-procedure.enabled") == "true"
    # The catalog file name is the catalog the DDL calls.
    call = register_table_calls((SQL / "trino" / "cloudtrail_events.sql").read_text())[0]
    assert path.stem == call["catalog"]
    for key in ("s3.aws-access-key", "s3.aws-secret-key"):
        if key in props:
            assert re.fullmatch(r"\$\{ENV:[A-Z_][A-Z0-9_]*\}", props[key]), f"{key} must come from the environment"
