"""Alert rules: the YAML format, validation of custom conditions, and the DuckDB engine that runs them."""

from __future__ import annotations

import copy
import hashlib
import json
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from trailhouse.alerting import attack
from trailhouse.common import PRINCIPAL_PRECEDENCE, PRINCIPAL_SQL, SEVERITIES, Severity, sql_literal  # noqa: F401  (SEVERITIES: re-exported)
from trailhouse.config import ConfigError
from trailhouse.settings import DEFAULT_RULE_MAX_MATCHES, DEFAULT_RULE_TIME_BUDGET, PROJECT_ROOT, Settings
from trailhouse.warehouse.schema import COLUMNS

RULES_DIR = PROJECT_ROOT / "sql" / "rules"
ID_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{2,127}$")

# Columns a condition may use: the table's, plus three the engine derives so that rules
# stay short and right (an API-version suffix never hides an event name).
DERIVED = {
    "event_name_base": r"regexp_replace(event_name, '\d{8}(v\d+)?$', '')",
    "principal": PRINCIPAL_SQL,
    "is_error": "error_code IS NOT NULL",
}
COLUMN_NAMES = frozenset(c.name for c in COLUMNS) | frozenset(DERIVED)
ALERT_FIELDS = ("event_id", "event_time", "event_date", "account_id", "region", "principal", "source_ip_address",
                "event_name", "event_source", "user_agent", "error_code", "mav")


class Threshold(BaseModel):
    """Fire when `count` matching events of one `group_by` group fall within `window_minutes`
    (a sliding window, on event time); with `distinct: FIELD`, when they hold `count` different
    values of FIELD (nulls not counted): ten user names failing from one address, thirty event
    names by one principal. Without a threshold every matching event is a match.
    """
    model_config = ConfigDict(extra="forbid")
    count: int = Field(ge=2)
    window_minutes: int = Field(ge=1, le=24 * 60)
    group_by: list[str] = Field(default_factory=lambda: ["account_id", "source_ip_address"])
    distinct: str | None = None


class NewTerm(BaseModel):
    """Fire on the first sighting of a combination of `fields` values among the events that
    match the condition (a principal's first CreateAccessKey, an account's first event in a
    region), once the rule's baseline has been learning for `learning_days`: every sighting
    before that only teaches it. The first and last sighting of each combination is kept per
    MAV in the app database (alerting.baselines), updated from each run's events alone.
    """
    model_config = ConfigDict(extra="forbid")
    fields: list[str] = Field(min_length=1, max_length=4)
    learning_days: int = Field(default=14, ge=0, le=3650)


# A new_term alert is one per combination for good: its dedup period is a century.
FOREVER_MINUTES = 100 * 365 * 24 * 60

# One alert per rule, account and principal per UTC day unless a rule says otherwise: what a
# person reads is "who did this, where, today" with the exact event count, not one alert
# per event. A rule for which every event is news sets a shorter period.
DEFAULT_DEDUP_MINUTES = 24 * 60


class Dedup(BaseModel):
    """Which matches share one alert: the same rule, these field values and period (default:
    account and principal, one UTC day).
    """
    model_config = ConfigDict(extra="forbid")
    fields: list[str] = Field(default_factory=lambda: ["account_id", "principal"])
    period_minutes: int = Field(default=DEFAULT_DEDUP_MINUTES, ge=1)


class Exclusions(BaseModel):
    """Events a rule never alerts on: principals and source IPs as SQL LIKE patterns, accounts by id."""
    model_config = ConfigDict(extra="forbid")
    principals: list[str] = Field(default_factory=list)  # SQL LIKE patterns on `principal`
    accounts: list[str] = Field(default_factory=list)
    source_ips: list[str] = Field(default_factory=list)  # SQL LIKE patterns


class Example(BaseModel):
    """One example event: overrides of `BASE_RECORD` (objects merged key by key), optionally
    repeated `repeat` times `every_seconds` apart, with dotted paths removed by `delete`.
    """
    model_config = ConfigDict(extra="forbid")
    name: str
    event: dict[str, Any] = Field(default_factory=dict)
    repeat: int = Field(default=1, ge=1, le=100)
    every_seconds: int = Field(default=60, ge=0)
    delete: list[str] = Field(default_factory=list)  # dotted paths removed from the base record
    # dotted path -> values: the i-th repeat sets the path to values[i % len(values)]
    vary: dict[str, list[Any]] = Field(default_factory=dict)
    # new_term rules: events (overrides of BASE_RECORD) the baseline saw a day before this
    # example's, one baseline that has long finished learning
    seen: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("vary")
    @classmethod
    def _vary(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        if any(not values for values in v.values()):
            raise ValueError("vary: every path needs at least one value")
        return v


class Examples(BaseModel):
    """A rule's proof: events that must fire it, events that must not, and real logs it fires on."""
    model_config = ConfigDict(extra="forbid")
    positive: list[Example] = Field(default_factory=list)
    negative: list[Example] = Field(default_factory=list)
    # Real logs that fire the rule, relative to tests/fixtures/corpora: the suite replays
    # each one, and `trailhouse rules coverage` marks the rule's techniques *tested*.
    corpus: list[str] = Field(default_factory=list)


class AttackRef(BaseModel):
    """One ATT&CK mapping: a tactic (its shortname, e.g. defense-evasion) and a technique
    or sub-technique id (T1562.008) that belongs to it."""

    model_config = ConfigDict(extra="forbid")
    tactic: str
    technique: str

    @model_validator(mode="after")
    def _known(self) -> AttackRef:
        attack.check(self.tactic, self.technique)
        return self


class Rule(BaseModel):
    """An alert rule: a DuckDB boolean condition over one event row of the warehouse schema,
    with severity, dedup, optional threshold, exclusions, ATT&CK mappings, runbook and examples.
    Built-in rules come from sql/rules/*.yaml, custom ones from the app database.
    """
    model_config = ConfigDict(extra="forbid")
    id: str
    title: str
    description: str = ""
    severity: Severity
    references: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    attack: list[AttackRef] = Field(default_factory=list)
    runbook: str = ""  # what to check next when it fires
    condition: str
    threshold: Threshold | None = None
    new_term: NewTerm | None = None
    dedup: Dedup = Field(default_factory=Dedup)
    exclusions: Exclusions = Field(default_factory=Exclusions)
    enabled: bool = True
    scope_accounts: list[str] = Field(default_factory=list)  # empty: every account
    owner: str | None = None
    builtin: bool = True
    origin: str = ""  # where an imported rule came from, e.g. "sigma:<id> (<file>)"
    tests: Examples = Field(default_factory=Examples)

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not ID_RE.match(v):
            raise ValueError("ids are lower-case letters, digits, '.' and '-' (3-128 characters)")
        return v

    @model_validator(mode="after")
    def _fields(self) -> Rule:
        nt = self.new_term
        if nt is not None:
            if self.threshold is not None:
                raise ValueError("a rule is a threshold rule or a new_term rule, not both")
            unknown = [f for f in nt.fields if f not in COLUMN_NAMES]
            if unknown or len(set(nt.fields)) != len(nt.fields):
                raise ValueError(f"new_term.fields: {', '.join(map(repr, unknown)) or 'a repeated field'}: the fields "
                                 "must be different columns of cloudtrail_events (or principal, event_name_base)")
            if "dedup" not in self.model_fields_set:  # one alert per new combination, ever
                self.dedup = Dedup(fields=list(nt.fields), period_minutes=FOREVER_MINUTES)
        for name in [*self.dedup.fields, *(self.threshold.group_by if self.threshold else [])]:
            if name not in COLUMN_NAMES:
                raise ValueError(f"unknown column {name!r} in dedup/group_by")
        t = self.threshold
        if t is not None and t.distinct is not None and (t.distinct not in COLUMN_NAMES or t.distinct in t.group_by):
            raise ValueError(f"threshold.distinct: {t.distinct!r} must be a column of cloudtrail_events "
                             "that is not one of group_by (it counts that column's different values per group)")
        return self

    @property
    def baseline_id(self) -> str | None:
        """Which baseline a new_term rule reads and feeds: its id and a digest of what decides its
        sightings (condition, scope, exclusions, fields). An edit starts a new baseline (that
        learns again) rather than judging by sightings the old condition picked."""
        if self.new_term is None:
            return None
        spec = json.dumps([rule_predicate(self), self.new_term.fields])
        return f"{self.id}:{hashlib.sha256(spec.encode()).hexdigest()[:12]}"

    @property
    def max_lookback(self) -> timedelta:
        return timedelta(minutes=self.threshold.window_minutes) if self.threshold else timedelta(0)


# --- loading ------------------------------------------------------------------------------


# libyaml's parser when PyYAML has it: the same safe documents, ~8x faster (all packs: 0.15 s, not 1.2 s).
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_rule_file(path: Path) -> Rule:
    """Read and validate one rule YAML file; a bad file raises ConfigError naming the file and the problem."""
    try:
        data = yaml.load(path.read_text(), Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a rule file holds one mapping")
    try:
        rule = Rule.model_validate({**data, "builtin": True})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'rule'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{path}: {problems}") from None
    if path.stem != rule.id:
        raise ConfigError(f"{path}: the file must be named after the rule id ({rule.id}.yaml)")
    return rule


_PARSED: dict[tuple[Any, ...], list[Rule]] = {}


def builtin_rules(rules_dir: Path = RULES_DIR) -> list[Rule]:
    """The built-in packs, parsed again only when a file changes (parsing all takes ~0.2 s)."""
    files = sorted(rules_dir.glob("*.yaml"))
    key = (str(rules_dir), *((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in files))
    if key not in _PARSED:
        _PARSED.clear()
        _PARSED[key] = [load_rule_file(p) for p in files]
    # Copies: callers set `enabled` from the switches without touching the cache.
    return [r.model_copy() for r in _PARSED[key]]


# --- custom conditions: parsed, never trusted ----------------------------------------------

ALLOWED_FUNCTIONS = frozenset({
    "lower", "upper", "length", "coalesce", "contains", "starts_with", "ends_with", "prefix", "suffix",
    "regexp_matches", "json_extract", "json_extract_string", "json_exists", "trim", "substring", "date_trunc",
    "strftime",
})


class UnsafeCondition(ValueError):
    """A custom rule condition that is not a plain boolean expression over the table's columns."""


def validate_condition(text: str) -> str:
    """Accept only a boolean expression over known columns and allowlisted functions."""
    import sqlglot
    from sqlglot import exp

    stripped = text.strip()
    if not stripped:
        raise UnsafeCondition("the condition is empty")
    if len(stripped) > 4000:
        raise UnsafeCondition("the condition is longer than 4000 characters")
    if ";" in stripped:
        raise UnsafeCondition("';' is not allowed: a condition is one expression, not statements")
    if "--" in stripped or "/*" in stripped:
        raise UnsafeCondition("SQL comments are not allowed in a condition")
    try:
        trees = sqlglot.parse(stripped, dialect="duckdb")
    except Exception as exc:
        raise UnsafeCondition(f"not valid SQL: {str(exc).splitlines()[0]}") from None
    if len(trees) != 1 or trees[0] is None:
        raise UnsafeCondition("a condition is exactly one boolean expression")
    tree = trees[0]
    _check_patterns(tree)
    banned = (exp.Query, exp.Subquery, exp.Command, exp.Copy, exp.Attach, exp.Drop, exp.Create, exp.Insert,
              exp.Update, exp.Delete, exp.Pragma, exp.Set, exp.Use, exp.Table, exp.Star, exp.Placeholder)
    for node in tree.walk():
        if isinstance(node, banned):
            raise UnsafeCondition(f"{node.key.upper()} is not allowed in a condition (no queries, tables or commands)")
        if isinstance(node, exp.Column):
            if node.table:
                raise UnsafeCondition(f"qualified column {node.sql()} is not allowed; use bare column names")
            if node.name not in COLUMN_NAMES:
                raise UnsafeCondition(f"unknown column {node.name!r}; see docs/schema.md for the columns")
        elif isinstance(node, exp.Anonymous):
            name = str(node.this).lower()
            if name not in ALLOWED_FUNCTIONS:
                raise UnsafeCondition(f"function {name}() is not allowed; allowed: {', '.join(sorted(ALLOWED_FUNCTIONS))}")
        elif isinstance(node, exp.Func) and not isinstance(node, (exp.Connector, exp.Predicate, exp.Cast, exp.TryCast, exp.Lower, exp.Upper,
                                                                    exp.Length, exp.Coalesce, exp.JSONExtract,
                                                                    exp.JSONExtractScalar, exp.RegexpLike,
                                                                    exp.StartsWith, exp.Trim, exp.Substring,
                                                                    exp.DateTrunc, exp.TimeToStr, exp.Contains,
                                                                    exp.EndsWith)):
            raise UnsafeCondition(f"function {node.sql_name().lower()}() is not allowed in a condition")
    if not isinstance(tree, (exp.Predicate, exp.Connector, exp.Not, exp.Paren, exp.Boolean, exp.Func)):
        raise UnsafeCondition("the condition must be a boolean expression (a comparison, IN, LIKE, AND/OR, ...)")
    return stripped


def _check_patterns(tree: Any) -> None:
    """Every regular expression of the condition a string literal in the safe subset (alerting.regex)."""
    from sqlglot import exp

    from trailhouse.alerting import regex

    kinds = (exp.RegexpLike, exp.RegexpILike, exp.RegexpFullMatch, exp.SimilarTo)
    for node in tree.find_all(*kinds):
        pattern, flags = node.args.get("expression"), node.args.get("flag") or node.args.get("options")
        for what, arg in (("pattern", pattern), ("options", flags)):
            if arg is not None and not (isinstance(arg, exp.Literal) and arg.is_string):
                raise UnsafeCondition(f"the {what} of {node.sql(dialect='duckdb')[:80]} must be a string literal "
                                      "('...'), not a column or an expression: a pattern made from event values "
                                      "would be compiled anew for every event")
        try:
            regex.check(pattern.this if pattern is not None else "", flags.this if flags is not None else "")
        except regex.UnsafePattern as exc:
            raise UnsafeCondition(str(exc)) from None


# --- evaluation -----------------------------------------------------------------------------


@dataclass
class Match:
    """One event that fired a rule, with the dedup key (and its hash) of the alert it belongs to."""
    rule: Rule
    event: dict[str, Any]
    dedup_key: str
    dedup_hash: str
    period_start: datetime | None


# The kinds of Problem: the first three skip the rule for the run, TRUNCATED keeps its first matches.
TIMEOUT, ERROR, REFUSED, TRUNCATED = "timeout", "error", "refused", "truncated"
SKIPPED = frozenset({TIMEOUT, ERROR, REFUSED})


@dataclass(frozen=True)
class Problem:
    """What went wrong with one rule in one evaluation. `detail` names the rule's columns and the
    limit, never a value of an event (it goes to task logs, XCom, the app database and the UI)."""
    rule_id: str
    kind: str  # TIMEOUT | ERROR | REFUSED | TRUNCATED
    detail: str
    owner: str | None = None  # the custom rule's owner (None: a built-in rule)


@dataclass(frozen=True)
class Limits:
    """What one rule may cost per evaluation: seconds of DuckDB time (interrupted past it, the
    rule skipped) and matches a custom rule collects (the earliest kept past it); None: no limit."""
    time_budget: float | None = DEFAULT_RULE_TIME_BUDGET
    max_matches: int | None = DEFAULT_RULE_MAX_MATCHES

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(settings.rule_time_budget, settings.rule_max_matches)


DEFAULT_LIMITS = Limits()
NO_LIMITS = Limits(None, None)


@dataclass
class Evaluation:
    """What evaluating rules over events gave: the matches, and each rule's problem: skipped
    (failed, out of time, or refused) or truncated. One bad rule never hides the others' matches.
    """
    matches: list[Match] = field(default_factory=list)
    problems: dict[str, Problem] = field(default_factory=dict)
    # {baseline id: this evaluation's sightings of a new_term rule}: one row per combination of
    # its fields (`_key`), with first_seen, first_event_id and last_seen, for Baselines.record.
    sightings: dict[str, Any] = field(default_factory=dict)

    @property
    def errors(self) -> dict[str, str]:
        """{rule id: why} of the rules that were skipped (no matches from them)."""
        return {k: p.detail for k, p in self.problems.items() if p.kind in SKIPPED}


class Baselines(Protocol):
    """Where new_term rules' sightings are kept (alerting.baselines.Store: the app database, per
    MAV; MemoryBaselines: the examples and backtests)."""

    def known(self, baseline: str, keys: list[str]) -> tuple[dict[str, tuple[datetime, str]], datetime | None]:
        """{key: (first_seen, first_event_id)} of the `keys` the baseline holds, and its earliest sighting."""
        ...


@dataclass
class MemoryBaselines:
    """Baselines held in memory: {baseline id: {key: (first_seen, first_event_id)}}; `since`:
    when every baseline began, if before its first sighting (examples: long finished learning)."""
    seen: dict[str, dict[str, tuple[datetime, str]]] = field(default_factory=dict)
    since: datetime | None = None

    def known(self, baseline: str, keys: list[str]) -> tuple[dict[str, tuple[datetime, str]], datetime | None]:
        held = self.seen.get(baseline, {})
        first = min([t for t, _ in held.values()] + ([self.since] if self.since else []), default=None)
        return {k: held[k] for k in keys if k in held}, first

    def record(self, sightings: dict[str, Any]) -> None:
        for baseline, table in sightings.items():
            held = self.seen.setdefault(baseline, {})
            for row in table.to_pylist():
                old = held.get(row["_key"])
                if old is None or row["first_seen"] < old[0]:
                    held[row["_key"]] = (row["first_seen"], row["first_event_id"])


NO_BASELINES = MemoryBaselines()

# The key of a new_term combination: its fields' values as text, joined by the ASCII unit separator.
KEY_SEPARATOR = "\x1f"


def _like_any(column: str, patterns: Sequence[str]) -> str:
    # ESCAPE lets a pattern match a literal '_' or '%' (AWSReservedSSO\_...) where needed.
    return " OR ".join(f"{column} LIKE {sql_literal(p)} ESCAPE '\\'" for p in patterns) or "FALSE"


def rule_predicate(rule: Rule) -> str:
    """The rule's condition combined with its scope and exclusions: what production runs."""
    parts = [f"({rule.condition})"]
    if rule.scope_accounts:
        parts.append(f"account_id IN ({', '.join(sql_literal(a) for a in rule.scope_accounts)})")
    ex = rule.exclusions
    if ex.accounts:
        parts.append(f"account_id NOT IN ({', '.join(sql_literal(a) for a in ex.accounts)})")
    if ex.principals:
        parts.append(f"NOT coalesce({_like_any('principal', ex.principals)}, FALSE)")
    if ex.source_ips:
        parts.append(f"NOT coalesce({_like_any('source_ip_address', ex.source_ips)}, FALSE)")
    return " AND ".join(parts)


_DERIVED_FROM = {"event_name_base": ("event_name",), "principal": PRINCIPAL_PRECEDENCE, "is_error": ("error_code",)}
_DERIVED_INPUTS = frozenset(c for cols in _DERIVED_FROM.values() for c in cols)
_DERIVED_SQL = ", ".join(f"{sql} AS {name}" for name, sql in DERIVED.items())
_WORD = re.compile(r"[a-z_][a-z0-9_]*")


def columns_needed(rules: Iterable[Rule]) -> list[str]:
    """The table's columns that evaluating `rules` reads (conditions, scopes, exclusions, dedup
    and threshold fields, the alert fields), in table order: what the warehouse must load.
    Every word of a condition that names a column counts, so the list may hold a few more.
    """
    words = {"event_source", "event_time", *ALERT_FIELDS}
    for rule in rules:
        words |= set(_WORD.findall(rule_predicate(rule).lower()))
        words |= {*rule.dedup.fields, *(rule.threshold.group_by if rule.threshold else ()),
                  *(rule.new_term.fields if rule.new_term else ())}
        if rule.threshold and rule.threshold.distinct:
            words.add(rule.threshold.distinct)
    for name, sources in _DERIVED_FROM.items():
        if name in words:
            words |= set(sources)
    return [c.name for c in COLUMNS if c.name in words]


class RuleConnection:
    """What `connect` returns and `evaluate` runs rules on: a locked DuckDB connection whose
    `events` and `history` views (with the derived columns) read Arrow tables in place, those
    tables, and per table one view per event_source, so a rule whose condition names its
    sources reads only their events. Anything else is the DuckDB connection's (`execute`, ...).
    """

    def __init__(self, con: Any, tables: dict[str, Any], parts: dict[str, dict[str | None, str] | None]) -> None:
        self.con, self.tables, self.parts = con, tables, parts

    def __getattr__(self, name: str) -> Any:
        return getattr(self.con, name)

    def close(self) -> None:
        self.con.close()

    def relation(self, kind: str, sources: frozenset[str] | None) -> str:
        """What a rule reads as `kind`: the whole table, or only the views of the sources it can match."""
        views = self.parts.get(kind)
        if sources is None or views is None:
            return kind
        names = [views[s] for s in sorted(sources) if s in views]
        if not names:
            return f"(SELECT * FROM {kind} LIMIT 0) AS {kind}"
        return "(" + " UNION ALL ".join(f"SELECT * FROM {n}" for n in names) + f") AS {kind}"


def connect(events: Any, history: Any = None) -> RuleConnection:
    """Rules' view of `events` (and `history`: events before them, for threshold rules).

    The Arrow tables are read in place, not copied (a million events would otherwise be held
    twice), when their rows come grouped by event_source as pipeline.pending_events reads
    them; other tables are reordered first. History rows that are also in `events` are left
    out. External access is disabled and the configuration locked before any rule runs, so
    a condition cannot read files, attach databases or load extensions.
    """
    import duckdb
    import pyarrow.compute as pc

    con = duckdb.connect(config={"threads": 2})
    if history is None:
        history = events.schema.empty_table()
    elif history.num_rows and events.num_rows:
        history = history.filter(pc.invert(pc.is_in(history.column("event_id"), value_set=events.column("event_id"))))
    tables, parts = {}, {}
    for kind, table in (("events", events), ("history", history)):
        if "event_source" in table.column_names and not _is_grouped(table):
            table = by_source(table.to_batches(), table.schema)  # a copy: the caller holds the table
        tables[kind], parts[kind] = _register(con, kind, table)
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return RuleConnection(con, tables, parts)


def _register(con: Any, kind: str, table: Any) -> tuple[Any, dict[str | None, str] | None]:
    """`kind` (and `kind_0`, ... one per event_source) as views with the derived columns over
    `table` and its slices; returns the table with its row numbers (`_row`) and the views."""
    import pyarrow as pa

    table = table.append_column("_row", pa.array(range(table.num_rows), pa.int32()))
    con.register(f"_{kind}", table)
    con.execute(f"CREATE TEMP VIEW {kind} AS SELECT *, {_DERIVED_SQL} FROM _{kind}")
    if "event_source" not in table.column_names:
        return table, None
    views: dict[str | None, str] = {}
    for i, (source, start, length) in enumerate(_source_runs(table)):
        con.register(f"_{kind}_{i}", table.slice(start, length))
        con.execute(f"CREATE TEMP VIEW {kind}_{i} AS SELECT *, {_DERIVED_SQL} FROM _{kind}_{i}")
        views[source] = f"{kind}_{i}"
    return table, views



def by_source(batches: Any, schema: Any) -> Any:
    """One table of `batches` (Arrow record batches in `schema`) with the rows of each
    event_source contiguous, as `connect` splits tables without a copy. Batch by batch, so
    rows streamed from a reader are held once, not twice; columns whose values repeat
    (accounts, regions, user agents, ...) are dictionary-encoded on the way: the same
    values in a fraction of the memory.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    plain = pa.schema([pa.field(f.name, f.type.value_type) if pa.types.is_dictionary(f.type) else f for f in schema])
    compact = pa.schema([pa.field(f.name, pa.dictionary(pa.int32(), f.type)) if f.name in _ENCODED and f.type == pa.string()
                         else f for f in plain])
    groups: dict[str | None, list[Any]] = {}
    for batch in batches:
        batch = batch.cast(plain)
        if "event_source" in plain.names:
            batch = batch.take(pc.sort_indices(batch.column("event_source")))  # nulls last
        batch = pa.record_batch([pc.dictionary_encode(c) if f.name in _ENCODED and f.type == pa.string() else c
                                 for f, c in zip(plain, batch.columns, strict=True)], schema=compact)
        for source, start, length in _source_runs(batch) if "event_source" in plain.names else [(None, 0, batch.num_rows)]:
            groups.setdefault(source, []).append(batch.slice(start, length))
    order = sorted(groups, key=lambda s: (s is None, s or ""))
    return pa.Table.from_batches([b for s in order for b in groups[s]], schema=compact)


# Few distinct values per batch: dictionaries stay small (DuckDB reads a slice's whole
# dictionary with each chunk it scans, so free-text and JSON columns stay plain).
_ENCODED = frozenset({
    "account_id", "region", "event_name", "event_type", "event_category", "event_version", "error_code",
    "user_agent", "recipient_account_id", "api_version", "user_type", "principal_account_id", "invoked_by",
    "session_issuer_type", "session_issuer_arn", "session_issuer_account_id", "session_issuer_user_name",
    "tls_version", "tls_cipher_suite", "tls_client_provided_host_header", "mav",
})


def _is_grouped(table: Any) -> bool:
    """Whether the rows of each event_source are contiguous."""
    import pyarrow.compute as pc

    return len(_source_runs(table)) <= pc.count_distinct(table.column("event_source"), mode="all").as_py()


def _source_runs(table: Any) -> list[tuple[str | None, int, int]]:
    """(event_source, first row, rows) of each run of equal event_source values."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if table.num_rows == 0:
        return []
    column = table.column("event_source")
    runs = pc.run_end_encode(column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column)
    ends = runs.run_ends.to_pylist()
    starts = [0, *ends[:-1]]
    return [(v, s, e - s) for v, s, e in zip(runs.values.to_pylist(), starts, ends, strict=True)]


def rule_sources(predicates: Sequence[str]) -> list[frozenset[str] | None]:
    """Per predicate, the event_source values it can match (from a top-level `event_source = 'x'`
    or `event_source IN (...)` conjunct, read by DuckDB's own parser); None when any may."""
    import json

    import duckdb

    if not predicates:
        return []
    with duckdb.connect() as con:
        trees = con.execute("SELECT json_serialize_sql('SELECT 1 WHERE ' || p) FROM unnest($p) WITH ORDINALITY t(p, i) "
                            "ORDER BY i", {"p": list(predicates)}).fetchall()
    out = []
    for (text,) in trees:
        tree = json.loads(text)
        where = None if tree.get("error") else tree["statements"][0]["node"].get("where_clause")
        out.append(_sources_of(where) if where else None)
    return out


def _sources_of(node: dict[str, Any]) -> frozenset[str] | None:
    kind = node.get("type")
    if kind == "CONJUNCTION_AND":
        found = [s for s in map(_sources_of, node["children"]) if s is not None]
        return frozenset.intersection(*found) if found else None
    if kind == "COMPARE_EQUAL":
        operands = [node.get("left"), node.get("right")]
    elif kind == "COMPARE_IN":
        operands = node.get("children") or []
        if operands and not _is_source_column(operands[0]):
            return None
    else:
        return None
    values = [_string_constant(o) for o in operands if not _is_source_column(o)]
    if len(values) != len(operands) - 1 or any(v is None for v in values):
        return None
    return frozenset(v for v in values if v is not None)


def _is_source_column(node: Any) -> bool:
    return isinstance(node, dict) and node.get("class") == "COLUMN_REF" and node.get("column_names") == ["event_source"]


def _string_constant(node: Any) -> str | None:
    literal = node.get("literal") if isinstance(node, dict) and node.get("class") == "CONSTANT" else None
    if isinstance(literal, dict) and literal.get("kind") == "STRING" and isinstance(literal.get("text"), str):
        return literal["text"]
    return None


def evaluate(con: RuleConnection, rules: Iterable[Rule], limits: Limits = DEFAULT_LIMITS,
             baselines: Baselines = NO_BASELINES) -> Evaluation:
    """Run every rule over `events` (threshold rules count `history` too, new_term rules look
    their sightings up in `baselines`); one Match per row, each rule's in (event_time, event_id) order.

    A rule's query reads only the events of the sources its condition can match (see
    rule_sources) and returns row numbers; the alert fields are computed once, for the union
    of the matched rows. Each rule runs within `limits`: past its time budget DuckDB is
    interrupted and the rule skipped, past its match cap (custom rules: built-in ones are
    reviewed and measured) only the earliest matches are kept;
    either is a Problem of the result, as is a failure (its message rewritten so that it names
    the rule's columns, never a value) and a custom condition the current check refuses.
    """
    import duckdb

    out = Evaluation()
    rules = list(rules)
    predicates = [rule_predicate(r) for r in rules]
    hits: list[tuple[Rule, list[int]]] = []
    with duckdb.connect(config={"threads": 2}) as aux:  # our own queries over rows already picked
        for rule, predicate, sources in zip(rules, predicates, rule_sources(predicates), strict=True):
            if not rule.builtin:
                try:  # stored before the check was what it is now, or written to the database by hand
                    validate_condition(rule.condition)
                except UnsafeCondition as exc:
                    out.problems[rule.id] = Problem(rule.id, REFUSED, f"its condition is refused by the custom-rule "
                                                    f"check: {exc}; change the condition", rule.owner)
                    continue
            # Built-in rules are reviewed and measured (make bench): no cap cuts their alerts short.
            cap = None if rule.builtin else limits.max_matches
            deadline = _Deadline(limits.time_budget, (con.con, aux))
            try:
                with deadline:
                    if rule.new_term is None:
                        rows = _matched_rows(con, aux, rule, predicate, sources, cap)
                    else:
                        rows, seen = _new_terms(con, aux, rule, predicate, sources, baselines, cap)
                        out.sightings[str(rule.baseline_id)] = seen
            except Exception as exc:  # one broken rule must not hide the others' alerts
                if deadline.expired:
                    out.problems[rule.id] = Problem(rule.id, TIMEOUT, (
                        f"took longer than its time budget of {limits.time_budget:g} s (TRAILHOUSE_RULE_TIME_BUDGET) "
                        "and was stopped: no alerts from it in this run; narrow the condition "
                        "(an event_source = '...' conjunct makes it read only that service's events)"), rule.owner)
                else:
                    out.problems[rule.id] = Problem(rule.id, ERROR, error_text(rule, exc), rule.owner)
                continue
            if cap is not None and len(rows) > cap:
                rows = rows[:cap]
                out.problems[rule.id] = Problem(rule.id, TRUNCATED, (
                    f"matched more than {cap:,} events (TRAILHOUSE_RULE_MAX_MATCHES): alerts were raised for the "
                    f"earliest {cap:,}, the later matches of this run were not collected; narrow the condition"),
                    rule.owner)
            hits.append((rule, rows))
        fields = _alert_fields(aux, con.tables["events"], sorted({r for _, rows in hits for r in rows}))
    for rule, rows in hits:
        out.matches.extend(_matches(rule, sorted((fields[r] for r in rows), key=_event_order)))
    return out


class _Deadline:
    """Interrupts `connections` once `seconds` have passed (and again every 50 ms until the block
    ends: DuckDB checks between vectors of rows, and the block may start another query)."""

    def __init__(self, seconds: float | None, connections: Sequence[Any]) -> None:
        import threading

        self.seconds, self.connections = seconds, connections
        self.expired = False
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def _watch(self) -> None:
        assert self.seconds is not None
        if self._done.wait(self.seconds):
            return
        self.expired = True
        while True:
            for c in self.connections:
                c.interrupt()
            if self._done.wait(0.05):
                return

    def __enter__(self) -> _Deadline:
        import threading

        if self.seconds is not None:
            self._thread = threading.Thread(target=self._watch, name="rule-deadline", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()


def _matched_rows(con: RuleConnection, aux: Any, rule: Rule, predicate: str, sources: frozenset[str] | None,
                  cap: int | None) -> list[int]:
    """The `_row` numbers of the events that fire `rule`, the earliest (event_time, event_id)
    first; at most `cap` + 1 of them (so that the caller sees the cap was passed)."""
    limit = "" if cap is None else f" ORDER BY event_time NULLS LAST, event_id LIMIT {cap + 1}"
    if rule.threshold is None:
        return con.sql(f"SELECT _row FROM {con.relation('events', sources)} WHERE {predicate}{limit}"
                       ).to_arrow_table().column(0).to_pylist()
    wanted = {"_row", "event_time", *_DERIVED_INPUTS, *rule.threshold.group_by, *_distinct(rule.threshold)}
    new, old = (con.tables[k].select([c for c in con.tables[k].column_names if c in wanted]).take(
        con.sql(f"SELECT _row FROM {con.relation(k, sources)} WHERE {predicate}").to_arrow_table().column(0))
        for k in ("events", "history"))
    return _crossed(aux, rule.threshold, new, old, cap)


def _new_terms(con: RuleConnection, aux: Any, rule: Rule, predicate: str, sources: frozenset[str] | None,
               baselines: Baselines, cap: int | None) -> tuple[list[int], Any]:
    """The `_row` of each first sighting in `events` of a combination of the rule's fields that
    is new, and the sightings themselves (to be recorded after the alerts are stored).

    New: the baseline holds no earlier sighting of it (a late file that brings an older one
    moves the first sighting back and fires for it only if that was new then), or holds this
    very event (a re-run after a crash between recording and marking the run evaluated), and
    it comes at least `learning_days` after the baseline's first sighting of anything.
    """
    import pyarrow as pa

    assert rule.new_term is not None
    fields = rule.new_term.fields
    key = "concat_ws(chr(31), " + ", ".join(f"CAST({f} AS VARCHAR)" for f in fields) + ")"
    order = "struct_pack(t := event_time, i := event_id)"
    seen = con.sql(f"""
        SELECT {key} AS _key, min(event_time) AS first_seen, arg_min(event_id, {order}) AS first_event_id,
               max(event_time) AS last_seen, arg_min(_row, {order}) AS _row
        FROM {con.relation('events', sources)}
        WHERE ({predicate}) AND event_time IS NOT NULL AND {' AND '.join(f'{f} IS NOT NULL' for f in fields)}
        GROUP BY ALL""").to_arrow_table()
    if seen.num_rows == 0:
        return [], seen.drop_columns(["_row"])
    held, start = baselines.known(str(rule.baseline_id), seen.column("_key").to_pylist())
    batch_start = min(seen.column("first_seen").to_pylist())
    learned = (batch_start if start is None else min(start, batch_start)) + timedelta(days=rule.new_term.learning_days)
    known = pa.table({"_key": list(held), "k_first": [t for t, _ in held.values()],
                      "k_id": [i for _, i in held.values()]},
                     schema=pa.schema([("_key", pa.string()), ("k_first", pa.timestamp("us", "UTC")), ("k_id", pa.string())]))
    aux.register("_seen", seen)
    aux.register("_known", known)
    limit = "" if cap is None else f" LIMIT {cap + 1}"
    try:
        rows = aux.execute(f"""
            SELECT s._row FROM _seen s LEFT JOIN _known k USING (_key)
            WHERE (k.k_first IS NULL OR k.k_first > s.first_seen OR k.k_id = s.first_event_id)
              AND s.first_seen >= $learned
            ORDER BY s.first_seen, s.first_event_id{limit}""", {"learned": learned}).fetchall()
    finally:
        aux.unregister("_seen")
        aux.unregister("_known")
    return [r for (r,) in rows], seen.drop_columns(["_row"])


def _distinct(t: Threshold) -> tuple[str, ...]:
    return (t.distinct,) if t.distinct else ()


def _crossed(aux: Any, t: Threshold, new: Any, old: Any, cap: int | None = None) -> list[int]:
    """The `_row` of each of the `new` candidates at which its group's window (counting the `old`
    candidates too) holds at least `t.count` of them (the earliest `cap` + 1 when capped)."""
    import pyarrow as pa

    wanted = {"_row", "event_time", *_DERIVED_INPUTS, *t.group_by, *_distinct(t)}
    cols = [c for c in new.column_names if c in wanted]
    # Plain types: one of the two tables may hold dictionary-encoded columns (see by_source).
    schema = pa.schema([pa.field(f.name, f.type.value_type) if pa.types.is_dictionary(f.type) else f
                        for f in new.schema if f.name in wanted])
    candidates = pa.concat_tables([
        new.select(cols).cast(schema).append_column("is_new", pa.array([True] * new.num_rows, pa.bool_())),
        old.select(cols).cast(schema).append_column("is_new", pa.array([False] * old.num_rows, pa.bool_())),
    ])
    limit = "" if cap is None else f" ORDER BY event_time NULLS LAST, _row LIMIT {cap + 1}"
    aux.register("_candidates", candidates)
    try:
        result = aux.execute(f"""
            SELECT _row FROM (
                SELECT _row, is_new, event_time, {f"count(DISTINCT {t.distinct})" if t.distinct else "count(*)"} OVER (
                    PARTITION BY {', '.join(t.group_by)} ORDER BY event_time
                    RANGE BETWEEN INTERVAL {t.window_minutes} MINUTE PRECEDING AND CURRENT ROW
                ) AS window_count
                FROM (SELECT *, {_DERIVED_SQL} FROM _candidates)
            ) WHERE is_new AND window_count >= {t.count}{limit}""").fetchall()
    finally:
        aux.unregister("_candidates")
    return [r for (r,) in result]


# DuckDB's errors quote the value that failed (a user agent, a policy document, ...): a rule's
# error is rewritten to say what failed where, from these shapes, and never carries the value.
_DATA_ERRORS = (
    (re.compile(r"Could not convert string .* to (\w+)", re.S), "a value could not be converted to {0}"),
    (re.compile(r"invalid (date|timestamp|time|interval)\w* field format", re.S), "a value is not a valid {0}"),
    (re.compile(r"Malformed JSON", re.S), "a value is not valid JSON"),
    (re.compile(r"extract specifier", re.S), "a value is not a date part date_trunc or strftime knows"),
    (re.compile(r"[Oo]verflow", re.S), "a number overflowed"),
    (re.compile(r"[Oo]ut of [Rr]ange", re.S), "a value is out of range"),
)
_SOURCE_COLUMN = re.compile(r"when casting from source column (\w+)")
# Errors about the condition itself (binding, types, permissions): their text quotes the
# condition, which the owner wrote, not the events.
_STATIC = ("BinderException", "ParserException", "CatalogException", "PermissionException", "NotImplementedException")


def error_text(rule: Rule, exc: BaseException) -> str:
    """Why `rule` failed, naming its columns and never a value of the events."""
    import duckdb

    kind = type(exc).__name__
    message = str(exc)
    if not isinstance(exc, duckdb.Error):
        return f"{kind}: the rule engine failed on this rule (a bug: please report it)"
    if kind in _STATIC:
        first = " ".join(message.split("\n\nLINE ")[0].split())
        return f"{kind}: {first[:400]}"
    columns = _columns_of(rule.condition)
    source = _SOURCE_COLUMN.search(message)
    if source and source.group(1) in COLUMN_NAMES:
        columns = [source.group(1)]
    what = next((text.format(*m.groups()) for pattern, text in _DATA_ERRORS if (m := pattern.search(message))),
                "an event made the condition fail")
    where = f"column {columns[0]}" if len(columns) == 1 else f"columns {', '.join(columns)}" if columns \
        else "the condition"
    hint = " (TRY_CAST gives NULL instead of failing)" if "converted" in what else ""
    return f"{kind}: {what} in {where}{hint}; the value is not shown. The rule was skipped for these events"


def _columns_of(condition: str) -> list[str]:
    """The columns a condition names, in order of appearance."""
    import sqlglot
    from sqlglot import exp

    try:
        tree = sqlglot.parse_one(condition, dialect="duckdb")
    except Exception:
        return []
    return list(dict.fromkeys(c.name for c in tree.find_all(exp.Column) if c.name in COLUMN_NAMES))


def _alert_fields(aux: Any, events: Any, rows: list[int]) -> dict[int, dict[str, Any]]:
    """{row: its ALERT_FIELDS} for the given rows of the events table."""
    import pyarrow as pa

    wanted = {"_row", *ALERT_FIELDS, *_DERIVED_INPUTS}
    aux.register("_picked", events.select([c for c in events.column_names if c in wanted]).take(pa.array(rows, pa.int32())))
    try:
        result = aux.execute(f"SELECT _row, {', '.join(ALERT_FIELDS)} FROM (SELECT *, {_DERIVED_SQL} FROM _picked)").fetchall()
    finally:
        aux.unregister("_picked")
    return {row[0]: dict(zip(ALERT_FIELDS, row[1:], strict=True)) for row in result}


def _event_order(event: dict[str, Any]) -> tuple[Any, ...]:
    """ORDER BY event_time, event_id (nulls last), as SQL orders them."""
    when = event["event_time"]
    return (when is None, when or _EPOCH, event["event_id"])


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _matches(rule: Rule, events: Iterable[dict[str, Any]]) -> list[Match]:
    """One Match per event (each with its own copy of the event), the dedup key and hash made once per alert."""
    period = timedelta(minutes=rule.dedup.period_minutes)
    keys: dict[tuple[Any, ...], tuple[str, str]] = {}
    out = []
    for event in events:
        when: datetime | None = event.get("event_time")
        start = None if when is None else _EPOCH + ((when - _EPOCH) // period) * period
        values = tuple(event.get(name, "") for name in rule.dedup.fields)
        found = keys.get((*values, start))
        if found is None:
            found = keys[(*values, start)] = _dedup_key(rule, values, start)
        out.append(Match(rule, dict(event), found[0], found[1], start))
    return out


def _match(rule: Rule, event: dict[str, Any]) -> Match:
    period = timedelta(minutes=rule.dedup.period_minutes)
    when: datetime | None = event.get("event_time")
    period_start = None if when is None else _EPOCH + ((when - _EPOCH) // period) * period
    key, digest = _dedup_key(rule, tuple(event.get(name, "") for name in rule.dedup.fields), period_start)
    return Match(rule, event, key, digest, period_start)


def _dedup_key(rule: Rule, values: tuple[Any, ...], period_start: datetime | None) -> tuple[str, str]:
    """The dedup key of an alert of `rule` (its dedup fields' values and period) and its hash."""
    parts = [f"{name}={value}" for name, value in zip(rule.dedup.fields, values, strict=True)]
    key = "|".join([*parts, f"period={period_start.isoformat() if period_start else ''}"])
    return key, hashlib.sha256(f"{rule.id}|{key}".encode()).hexdigest()


# --- examples: every rule proven on its own positive and negative events -------------------

BASE_RECORD: dict[str, Any] = {
    "eventVersion": "1.09",
    "userIdentity": {
        "type": "IAMUser",
        "principalId": "AIDAEXAMPLEPRINCIPAL",
        "arn": "arn:aws:iam::111122223333:user/alice",
        "accountId": "111122223333",
        "accessKeyId": "AKIAEXAMPLEKEY123456",
        "userName": "alice",
        "sessionContext": {"attributes": {"creationDate": "2026-11-20T09:00:00Z", "mfaAuthenticated": "true"}},
    },
    "eventTime": "2026-11-20T10:00:00Z",
    "eventSource": "ec2.amazonaws.com",
    "eventName": "DescribeInstances",
    "awsRegion": "us-east-1",
    "sourceIPAddress": "198.51.100.7",
    "userAgent": "aws-cli/2.15.0 Python/3.11.6 Linux/6.1 exe/x86_64",
    # No requestParameters in the base: an example's own object would be merged into it.
    "requestParameters": None,
    "responseElements": None,
    "requestID": "00000000-0000-4000-8000-000000000000",
    "eventID": "00000000-0000-4000-8000-000000000001",
    "readOnly": True,
    "eventType": "AwsApiCall",
    "managementEvent": True,
    "recipientAccountId": "111122223333",
    "eventCategory": "Management",
    "tlsDetails": {"tlsVersion": "TLSv1.3", "cipherSuite": "TLS_AES_128_GCM_SHA256",
                   "clientProvidedHostHeader": "ec2.us-east-1.amazonaws.com"},
}


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict) and value:
            _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def example_records(example: Example, seed: str) -> list[dict[str, Any]]:
    """The CloudTrail records of one example: `BASE_RECORD` with the example's overrides, once per repeat."""
    records = []
    for i in range(example.repeat):
        rec = _merge(copy.deepcopy(BASE_RECORD), example.event)
        for path in example.delete:
            node: Any = rec
            *parents, last = path.split(".")
            for p in parents:
                node = node.get(p, {}) if isinstance(node, dict) else {}
            if isinstance(node, dict):
                node.pop(last, None)
        for path, values in example.vary.items():
            node = rec
            *parents, last = path.split(".")
            for p in parents:
                node = node.setdefault(p, {})
            node[last] = copy.deepcopy(values[i % len(values)])
        if "eventID" not in example.event:
            rec["eventID"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{seed}/{i}"))
        if i and "eventTime" in rec:
            base = datetime.fromisoformat(rec["eventTime"].replace("Z", "+00:00"))
            rec["eventTime"] = (base + timedelta(seconds=i * example.every_seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")
        records.append(rec)
    return records


def records_table(recs: list[dict[str, Any]], *, mav: str = "examples") -> Any:
    """CloudTrail records to an Arrow table through the production transform."""
    import msgspec

    from trailhouse.ingest import records as rec_mod
    from trailhouse.ingest import transform
    from trailhouse.warehouse.schema import ARROW_SCHEMA

    data = msgspec.json.encode({"Records": recs})
    rows = rec_mod.parse_file(data)
    n = len(rows)
    frame = transform.rows_to_frame(rows, [None] * n, [None] * n, ["examples"] * n, mav=mav,
                                    ingested_at=datetime.now(UTC))
    return frame.to_arrow().cast(ARROW_SCHEMA)


@dataclass
class ExampleResult:
    """Whether one example did what it says (fired if positive, stayed silent if negative)."""
    rule_id: str
    example: str
    expected: bool
    fired: bool
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and self.expected == self.fired


def _example_baselines(rule: Rule, example: Example) -> MemoryBaselines:
    """The baseline a new_term rule's example runs against: learning long finished, holding the
    example's `seen` events (recorded through the rule, so only those its condition picks)."""
    store = MemoryBaselines(since=datetime(2000, 1, 1, tzinfo=UTC))
    if rule.new_term is None or not example.seen:
        return store
    recs = [rec for n, over in enumerate(example.seen)
            for rec in example_records(Example(name=f"seen {n}", event=over), f"{rule.id}/{example.name}/seen/{n}")]
    for rec in recs:
        when = datetime.fromisoformat(str(rec["eventTime"]).replace("Z", "+00:00")) - timedelta(days=1)
        rec["eventTime"] = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    con = connect(records_table(recs))
    try:
        store.record(evaluate(con, [rule], baselines=store).sightings)
    finally:
        con.close()
    return store


def test_rule(rule: Rule) -> list[ExampleResult]:
    """Run a rule against its own positive and negative examples with the production engine."""
    return test_rules([rule])


def test_rules(rules: Sequence[Rule]) -> list[ExampleResult]:
    """Every rule against its own examples, in the rules' and examples' order.

    A rule without a threshold judges each event alone, so the examples of all such rules
    are evaluated together, in one connection, and each rule's matches are attributed to
    its own examples by event id (one DuckDB set-up for the lot instead of one per example:
    `trailhouse rules test` of the built-in packs went from ~2 min to seconds). Threshold
    rules count across events, so each of their examples runs alone, as does an example
    whose event ids another example already uses, and every example of a rule that failed
    in the shared run (so its error is the example's own).
    """
    cases = [(rule, expected, ex, example_records(ex, f"{rule.id}/{ex.name}"))
             for rule in rules for expected, examples in ((True, rule.tests.positive), (False, rule.tests.negative))
             for ex in examples]
    shared: list[int] = []
    seen: set[Any] = set()
    for i, (rule, _, _, recs) in enumerate(cases):
        ids = {r.get("eventID") for r in recs}
        if rule.threshold is None and rule.new_term is None and None not in ids and len(ids) == len(recs) and not ids & seen:
            shared.append(i)
            seen |= ids
    results: dict[int, ExampleResult] = {}
    if shared:
        con = connect(records_table([r for i in shared for r in cases[i][3]]))
        ev = evaluate(con, list({id(cases[i][0]): cases[i][0] for i in shared}.values()))
        con.close()
        fired = {(m.rule.id, m.event["event_id"]) for m in ev.matches}
        for i in shared:
            rule, expected, ex, recs = cases[i]
            if rule.id not in ev.errors:
                hit = any((rule.id, r["eventID"]) in fired for r in recs)
                results[i] = ExampleResult(rule.id, ex.name, expected, hit)
    for i, (rule, expected, ex, recs) in enumerate(cases):
        if i not in results:
            store = _example_baselines(rule, ex)
            con = connect(records_table(recs))
            ev = evaluate(con, [rule], baselines=store)
            con.close()
            results[i] = ExampleResult(rule.id, ex.name, expected, bool(ev.matches), ev.errors.get(rule.id, ""))
    return [results[i] for i in range(len(cases))]
