"""The CloudTrail events report: filters to parameterised DuckDB SQL, always scoped to the caller's accounts.

Every query the web UI runs over `cloudtrail_events` is built here. User input only ever
reaches DuckDB as a bound parameter (`$p0`, `$p1`, ...); the SQL text is made of fixed
fragments. An owner's searches are ANDed with `account_id IN (their accounts)`, so a
filter, a page, an export, a summary or an event id never returns a foreign account's row.

Speed on a large table: the time range becomes `event_date BETWEEN ...` first (partition
pruning: only the days in range are read), pages are LIMIT/OFFSET in `event_time` order,
and the listing selects only the columns it shows.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trailhouse.alerting.rules import DERIVED
from trailhouse.common import principal_of

if TYPE_CHECKING:
    from trailhouse.warehouse.table import Warehouse

PRINCIPAL_SQL = DERIVED["principal"]
# What a responder scans, in order: the listing's and the exports' columns.
LIST_COLUMNS = ("event_id", "event_time", "event_date", "account_id", "region", "principal", "event_source",
                "event_name", "source_ip_address", "error_code", "user_type", "read_only", "mav")
EXPORT_COLUMNS = ("event_time", "event_id", "account_id", "region", "principal", "user_type", "event_source",
                  "event_name", "source_ip_address", "user_agent", "error_code", "error_message", "read_only", "mav")
EXPORT_MAX_ROWS = 100_000
SUMMARY_DIMENSIONS = {
    "account": "account_id",
    "region": "region",
    "service": "event_source",
    "event name": "event_name",
    "principal": "principal",
    "source IP": "source_ip_address",
}
TOP_N = 10
# Request-parameter keys that name the resource of a call, for "same resource" when the
# record has no `resources` list.
_RESOURCE_KEYS = ("bucketName", "instanceId", "roleName", "userName", "groupId", "groupName", "functionName",
                  "keyId", "name", "trailName", "policyArn", "roleArn", "secretId", "snapshotId", "imageId",
                  "vpcId", "detectorId", "configurationRecorderName", "logGroupName", "clusterName")


class BadFilter(ValueError):
    """A filter value that cannot be used; the message names the field and what it expects."""


@dataclass(frozen=True)
class Filters:
    """One search of the events report: a time range plus optional exact-match filters."""

    start: datetime
    end: datetime
    mav: str | None = None
    account: str | None = None
    region: str | None = None
    event_source: str | None = None
    event_name: str | None = None
    principal: str | None = None  # ARN (or part of one), user name, access key id, principal id
    user_type: str | None = None
    source_ip: str | None = None
    error_code: str | None = None
    any_error: bool = False
    read_only: bool | None = None
    text: str | None = None  # case-insensitive substring of request_parameters
    resource: str | None = None  # substring of resources or request_parameters

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise BadFilter("the time range must be timezone-aware (UTC)")
        if self.end <= self.start:
            raise BadFilter("the end of the time range must be after its start")
        if self.account is not None and not (len(self.account) == 12 and self.account.isdigit()):
            raise BadFilter("account: an AWS account id is 12 digits")

    @classmethod
    def last(cls, hours: float = 24, now: datetime | None = None, **filters: Any) -> Filters:
        end = now or datetime.now(UTC)
        return cls(start=end - timedelta(hours=hours), end=end, **filters)

    def with_(self, **changes: Any) -> Filters:
        return replace(self, **changes)


def _clean(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


def parse_time(text: str | None, name: str) -> datetime | None:
    """`YYYY-MM-DD`, `YYYY-MM-DDTHH:MM[:SS]` (UTC unless an offset is given), or None when empty."""
    text = _clean(text)
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T"))
    except ValueError:
        raise BadFilter(f"{name}: {text[:40]!r} is not a date and time; use YYYY-MM-DDTHH:MM (UTC)") from None
    if value.year < 1970 or value.year > 9000:
        raise BadFilter(f"{name}: the year must be between 1970 and 9000")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def parse_bool(text: str | None, name: str) -> bool | None:
    text = (_clean(text) or "").lower()
    if text in ("", "any"):
        return None
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise BadFilter(f"{name}: use true, false or any")


def filters_from(params: dict[str, str | None], *, now: datetime | None = None) -> Filters:
    """Filters from the query string of a page or API call (the names the forms use)."""
    now = now or datetime.now(UTC)
    end = parse_time(params.get("to"), "to") or now
    start = parse_time(params.get("from"), "from") or end - timedelta(hours=24)
    account = _clean(params.get("account"))
    return Filters(
        start=start, end=end, mav=_clean(params.get("mav")), account=account, region=_clean(params.get("region")),
        event_source=_clean(params.get("source")), event_name=_clean(params.get("name")),
        principal=_clean(params.get("principal")), user_type=_clean(params.get("user_type")),
        source_ip=_clean(params.get("ip")), error_code=_clean(params.get("error")),
        any_error=bool(parse_bool(params.get("any_error"), "any_error")),
        read_only=parse_bool(params.get("read_only"), "read_only"), text=_clean(params.get("q")),
        resource=_clean(params.get("resource")),
    )


def to_params(f: Filters) -> dict[str, str]:
    """The query string that reproduces `f` (inverse of filters_from), for links and forms."""
    out = {"from": _iso(f.start), "to": _iso(f.end)}
    for key, value in (("mav", f.mav), ("account", f.account), ("region", f.region), ("source", f.event_source),
                       ("name", f.event_name), ("principal", f.principal), ("user_type", f.user_type),
                       ("ip", f.source_ip), ("error", f.error_code), ("q", f.text), ("resource", f.resource)):
        if value:
            out[key] = value
    if f.any_error:
        out["any_error"] = "true"
    if f.read_only is not None:
        out["read_only"] = "true" if f.read_only else "false"
    return out


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


@dataclass
class _Sql:
    """WHERE clauses with their bound parameters; values never enter the SQL text."""

    remote: bool = False
    clauses: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)

    def bind(self, value: Any) -> str:
        name = f"p{len(self.params)}"
        self.params[name] = value
        return f"${name}"

    def col(self, name: str) -> str:
        # Remote tables go through a pyarrow dataset where a pushed-down string comparison
        # fails (docs/schema.md, "Known problem"): an expression is not pushed down.
        return f"coalesce({name}, '')" if self.remote else name

    def eq(self, column: str, value: Any) -> None:
        if value is not None:
            self.clauses.append(f"{self.col(column)} = {self.bind(value)}")

    def where(self) -> str:
        return " AND ".join(self.clauses) or "TRUE"


def _scoped(sql: _Sql, scope: frozenset[str] | None) -> None:
    """None: every account (administrators); otherwise only these accounts (owners)."""
    if scope is None:
        return
    if not scope:
        sql.clauses.append("FALSE")
        return
    marks = ", ".join(sql.bind(a) for a in sorted(scope))
    sql.clauses.append(f"{sql.col('account_id')} IN ({marks})")


def build_where(f: Filters, scope: frozenset[str] | None, *, remote: bool = False) -> tuple[str, dict[str, Any]]:
    """The WHERE clause (DuckDB, `$name` parameters) of a search, scope included."""
    sql = _Sql(remote=remote)
    # Partition pruning first: only the event_date folders of the range are read.
    sql.clauses.append(f"event_date BETWEEN {sql.bind(f.start.date())} AND {sql.bind(f.end.date())}")
    sql.clauses.append(f"event_time >= {sql.bind(f.start)} AND event_time < {sql.bind(f.end)}")
    _scoped(sql, scope)
    sql.eq("mav", f.mav)
    sql.eq("account_id", f.account)
    sql.eq("region", f.region)
    sql.eq("event_source", f.event_source)
    sql.eq("event_name", f.event_name)
    sql.eq("user_type", f.user_type)
    sql.eq("source_ip_address", f.source_ip)
    sql.eq("error_code", f.error_code)
    if f.principal:
        p = sql.bind(f.principal)
        sql.clauses.append(
            f"(contains(coalesce(principal_arn, ''), {p}) OR {sql.col('user_name')} = {p} OR "
            f"{sql.col('access_key_id')} = {p} OR {sql.col('principal_id')} = {p} OR "
            f"{sql.col('session_issuer_arn')} = {p} OR {sql.col('invoked_by')} = {p})"
        )
    if f.any_error:
        sql.clauses.append("error_code IS NOT NULL")
    if f.read_only is not None:
        sql.clauses.append(f"read_only = {sql.bind(f.read_only)}")
    if f.text:
        sql.clauses.append(f"contains(lower(coalesce(request_parameters, '')), {sql.bind(f.text.lower())})")
    if f.resource:
        r = sql.bind(f.resource)
        sql.clauses.append(f"(contains(coalesce(resources, ''), {r}) OR contains(coalesce(request_parameters, ''), {r}))")
    return sql.where(), sql.params


# --- running the queries ---------------------------------------------------------------------


# Opening a DuckDB database costs ~25 ms, more than a filtered page: finished requests hand
# theirs back to this pool. A connection is used by one request at a time, so its view
# never collides with another's.
_POOL: queue.LifoQueue[Any] = queue.LifoQueue()
_POOL_SIZE = 8
_OPEN: set[Any] = set()
_OPEN_LOCK = threading.Lock()


class TooBig(BadFilter):
    """An events query that ran past its time budget (and was interrupted): narrow the search."""


class Busy(RuntimeError):
    """Every query slot stayed taken while this request waited for one."""


@dataclass
class _Limits:
    seconds: float = 30.0
    memory: str = "192MB"
    slots: int = 4
    gate: threading.BoundedSemaphore = field(default_factory=lambda: threading.BoundedSemaphore(4))
    previews: int = 1
    preview_gate: threading.BoundedSemaphore = field(default_factory=lambda: threading.BoundedSemaphore(1))


LIMITS = _Limits()


def configure(limits: Any) -> None:
    """The web server's limits (`settings.WebLimits`): each events query's time budget and
    DuckDB memory, and how many run at once (their memory times this bounds the server's)."""
    global LIMITS
    wanted = (float(limits.query_seconds), str(limits.query_memory), int(limits.queries), int(limits.previews))
    if wanted != (LIMITS.seconds, LIMITS.memory, LIMITS.slots, LIMITS.previews):
        LIMITS = _Limits(wanted[0], wanted[1], wanted[2], threading.BoundedSemaphore(wanted[2]),
                         wanted[3], threading.BoundedSemaphore(wanted[3]))


@atexit.register
def close_connections() -> None:
    """Close every DuckDB database still open: DuckDB can abort the process if one is torn down late."""
    with _OPEN_LOCK:
        for con in list(_OPEN):
            try:
                con.close()
            except Exception:
                pass
        _OPEN.clear()


def _discard(con: Any) -> None:
    with _OPEN_LOCK:
        _OPEN.discard(con)
    con.close()


def too_big_message(seconds: float) -> str:
    return (f"this search reads more than the server gives one request ({seconds:g} s, "
            "TRAILHOUSE_WEB_QUERY_SECONDS): narrow the time range or add filters (account, event name, ...)")


@contextmanager
def events_connection(warehouse: Warehouse) -> Iterator[Any]:
    """A DuckDB connection where `cloudtrail_events` is the warehouse table's current version, times in UTC.

    Bounded: at most `LIMITS.slots` of these are in use at once (others wait for a turn, up
    to the time budget: then Busy), each within `LIMITS.memory` of DuckDB memory, and the
    queries of the block are interrupted after `LIMITS.seconds` (TooBig, naming the fix).
    """
    import duckdb

    limits = LIMITS
    if not limits.gate.acquire(timeout=limits.seconds):
        raise Busy("the server is running as many searches as it may at once: try again in a few seconds")
    try:
        try:
            con = _POOL.get_nowait()
        except queue.Empty:
            con = duckdb.connect(config={"temp_directory": _spill_dir()})
            con.execute("SET TimeZone = 'UTC'")
            with _OPEN_LOCK:
                _OPEN.add(con)
        con.execute(f"SET memory_limit = '{limits.memory}'")
        fired = threading.Event()

        def stop() -> None:
            fired.set()
            con.interrupt()

        timer = threading.Timer(limits.seconds, stop)
        timer.daemon = True
        done = False
        try:
            warehouse.duckdb(connection=con)
            timer.start()
            try:
                yield con
            except duckdb.InterruptException:
                raise TooBig(too_big_message(limits.seconds)) from None
            except duckdb.OutOfMemoryException:
                raise TooBig(f"this search needs more memory than the server gives one request ({limits.memory}, "
                             "TRAILHOUSE_WEB_QUERY_MEMORY): narrow the time range or add filters") from None
            done = True
        finally:
            timer.cancel()
            if timer.ident is not None:
                timer.join()
            if done and not fired.is_set() and _POOL.qsize() < _POOL_SIZE:
                _POOL.put(con)
            else:  # after a failure or an interrupt, or with enough idle ones: start clean next time
                _discard(con)
    finally:
        limits.gate.release()


def _spill_dir() -> str:
    import tempfile

    return str(Path(tempfile.gettempdir()) / f"trailhouse-web-duckdb-{os.getpid()}")


def _select(columns: tuple[str, ...]) -> str:
    return ", ".join(f"{PRINCIPAL_SQL} AS principal" if c == "principal" else c for c in columns)


def _rows(cur: Any) -> list[dict[str, Any]]:
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]


@dataclass
class Page:
    rows: list[dict[str, Any]]
    page: int
    page_size: int
    has_next: bool


def search(con: Any, f: Filters, scope: frozenset[str] | None, *, page: int = 1, page_size: int = 50,
           remote: bool = False) -> Page:
    """One page of matching events, newest first (one row more is read to know if a next page exists)."""
    where, params = build_where(f, scope, remote=remote)
    params.update(limit=page_size + 1, offset=(page - 1) * page_size)
    cur = con.execute(
        f"SELECT {_select(LIST_COLUMNS)} FROM cloudtrail_events WHERE {where} "
        "ORDER BY event_time DESC, event_id LIMIT $limit OFFSET $offset", params)
    rows = _rows(cur)
    return Page(rows[:page_size], page, page_size, len(rows) > page_size)


def export_table(con: Any, f: Filters, scope: frozenset[str] | None, *, remote: bool = False,
                 limit: int = EXPORT_MAX_ROWS) -> Any:
    """Every matching event (up to `limit`), newest first, as an Arrow table: for CSV/JSON downloads."""
    where, params = build_where(f, scope, remote=remote)
    params["limit"] = limit
    return con.sql(f"SELECT {_select(EXPORT_COLUMNS)} FROM cloudtrail_events WHERE {where} "
                   "ORDER BY event_time DESC, event_id LIMIT $limit", params=params).to_arrow_table()


def get_event(con: Any, event_id: str, scope: frozenset[str] | None, *, day: date | None = None,
              remote: bool = False) -> dict[str, Any] | None:
    """The whole row of one event, or None when it does not exist *or* is outside the scope."""
    sql = _Sql(remote=remote)
    if day is not None:
        sql.clauses.append(f"event_date = {sql.bind(day)}")
    sql.clauses.append(f"{sql.col('event_id')} = {sql.bind(event_id)}")
    _scoped(sql, scope)
    rows = _rows(con.execute(f"SELECT * FROM cloudtrail_events WHERE {sql.where()} LIMIT 1", sql.params))
    return rows[0] if rows else None


def events_by_id(con: Any, ids: list[tuple[str, date | None]], scope: frozenset[str] | None, *,
                 remote: bool = False) -> list[dict[str, Any]]:
    """The listing columns of the given (event id, event date) pairs that lie in the scope."""
    if not ids:
        return []
    sql = _Sql(remote=remote)
    days = sorted({d for _, d in ids if d is not None})
    if days and all(d is not None for _, d in ids):
        sql.clauses.append(f"event_date IN ({', '.join(sql.bind(d) for d in days)})")
    sql.clauses.append(f"{sql.col('event_id')} IN (SELECT unnest({sql.bind(sorted({i for i, _ in ids}))}))")
    _scoped(sql, scope)
    cur = con.execute(f"SELECT {_select(LIST_COLUMNS)} FROM cloudtrail_events WHERE {sql.where()} "
                      "ORDER BY event_time DESC, event_id", sql.params)
    return _rows(cur)


def events_table(con: Any, start: datetime, end: datetime, scope: frozenset[str] | None, columns: list[str], *,
                 limit: int, remote: bool = False) -> Any:
    """Rows of a time range in the scope, as an Arrow table of the given columns (newest first)."""
    f = Filters(start=start, end=end)
    where, params = build_where(f, scope, remote=remote)
    params["limit"] = limit
    return con.sql(f"SELECT {', '.join(columns)} FROM cloudtrail_events WHERE {where} "
                   "ORDER BY event_time DESC LIMIT $limit", params=params).to_arrow_table()


# --- the summary view --------------------------------------------------------------------------

BUCKETS = (60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400, 30 * 86400, 365 * 86400)


def bucket_seconds(start: datetime, end: datetime, target: int = 48) -> int:
    """A round bucket size giving about `target` bars over the range (at most ~2 x target)."""
    span = (end - start).total_seconds()
    for size in BUCKETS:
        if span / size <= target:
            return size
    years = -(-span // (target * BUCKETS[-1]))  # ceiling: whole years per bar for very long ranges
    return int(years * BUCKETS[-1])


@dataclass
class Summary:
    total: int
    errors: int
    top: dict[str, list[tuple[str | None, int]]]
    bucket_seconds: int
    series: list[tuple[datetime, int]]


def summary(con: Any, f: Filters, scope: frozenset[str] | None, *, remote: bool = False) -> Summary:
    """Counts by account, region, service, event name, principal and source IP, and events over time.

    One scan of the range and one GROUPING SETS aggregate: memory grows with the distinct
    values of the dimensions, never with the rows of the range (nothing is copied), and
    only each dimension's top values leave DuckDB.
    """
    where, params = build_where(f, scope, remote=remote)
    size = bucket_seconds(f.start, f.end)
    origin = datetime(1970, 1, 1, tzinfo=UTC)
    columns = [*SUMMARY_DIMENSIONS.values(), "_bucket"]
    sets = ", ".join(f"({c})" for c in columns) + ", ()"
    everything = (1 << len(columns)) - 1  # grouping(...) of the () set: every column aggregated
    series_set = everything ^ 1  # only _bucket grouped
    select = ", ".join(f"{PRINCIPAL_SQL} AS principal" if c == "principal" else c for c in SUMMARY_DIMENSIONS.values())
    params.update(size=size, origin=origin)
    rows = con.execute(
        f"""SELECT grouping({', '.join(columns)}) AS g, coalesce({', '.join(columns[:-1])}) AS v, _bucket,
                   count(*) AS n, count(error_code) AS e
            FROM (SELECT {select}, error_code,
                         time_bucket(to_seconds($size), event_time, $origin) AS _bucket
                  FROM cloudtrail_events WHERE {where})
            GROUP BY GROUPING SETS ({sets})
            QUALIFY g IN ({everything}, {series_set})
                 OR row_number() OVER (PARTITION BY g ORDER BY n DESC, v NULLS LAST) <= {TOP_N}""",
        params).fetchall()
    masks = {everything ^ (1 << (len(columns) - 1 - i)): label for i, label in enumerate(SUMMARY_DIMENSIONS)}
    total = errors = 0
    top: dict[str, list[tuple[str | None, int]]] = {label: [] for label in SUMMARY_DIMENSIONS}
    counts: dict[datetime, int] = {}
    for g, value, bucket, n, e in rows:
        if g == everything:
            total, errors = int(n), int(e)
        elif g == series_set:
            counts[bucket] = int(n)
        else:
            top[masks[g]].append((value, int(n)))
    for label in top:
        top[label].sort(key=lambda vn: (-vn[1], vn[0] is None, vn[0] or ""))
    first = origin + timedelta(seconds=((f.start - origin).total_seconds() // size) * size)
    series = []
    t = first
    while t < f.end:
        series.append((t, int(counts.get(t, 0))))
        t += timedelta(seconds=size)
    return Summary(total, errors, top, size, series)


# --- links around one event ---------------------------------------------------------------------


def resource_of(row: dict[str, Any]) -> str | None:
    """What "same resource" searches for: the first resource ARN, else a resource-naming parameter."""
    for blob, keys in ((row.get("resources"), None), (row.get("request_parameters"), _RESOURCE_KEYS)):
        if not blob:
            continue
        try:
            value = json.loads(blob)
        except ValueError:
            continue
        if keys is None and isinstance(value, list):
            for item in value:
                if isinstance(item, dict) and isinstance(item.get("ARN"), str) and item["ARN"]:
                    return item["ARN"]
        elif keys is not None and isinstance(value, dict):
            for key in keys:
                if isinstance(value.get(key), str) and len(value[key]) >= 3:
                    return value[key]
    return None


def related(row: dict[str, Any], *, around: timedelta = timedelta(hours=1)) -> dict[str, Filters]:
    """Searches for the same principal, source IP and resource within `around` of the event."""
    when = row.get("event_time")
    if when is not None:
        start, end = when - around, when + around
    else:
        day = row["event_date"]
        start = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
        end = start + timedelta(days=1)
    base = Filters(start=start, end=end)
    out: dict[str, Filters] = {}
    principal = principal_of(row)
    if principal:
        out["same principal"] = base.with_(principal=principal)
    if row.get("source_ip_address"):
        out["same IP"] = base.with_(source_ip=row["source_ip_address"])
    resource = resource_of(row)
    if resource:
        out["same resource"] = base.with_(resource=resource)
    return out
