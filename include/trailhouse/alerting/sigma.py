"""Sigma import: SigmaHQ-format rules for AWS CloudTrail become trailhouse rules (pySigma 2).

A Sigma rule (`logsource: {product: aws, service: cloudtrail}`) goes through a processing
pipeline that maps CloudTrail field names to the warehouse's columns (JSON paths under
`requestParameters`, `responseElements`, ... to `json_extract_string` lookups), then through
a text-query backend that writes one DuckDB boolean expression in the dialect
`rules.validate_condition` accepts. What cannot be converted faithfully is refused with a
one-line reason, never half-converted: see `docs/rules.md`, "Sigma import".

Matching follows Sigma: string values match case-insensitively (lower() on both sides)
unless `|cased`, `*`/`?` are wildcards, a list is any-of (all-of with `|all`), and a field
the event lacks matches nothing, so `not filter` still holds for it (every comparison is
wrapped in `coalesce(..., FALSE)`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml
from pydantic import ValidationError
from sigma.collection import SigmaCollection
from sigma.conditions import ConditionAND, ConditionFieldEqualsValueExpression, ConditionOR
from sigma.conversion.base import TextQueryBackend
from sigma.conversion.state import ConversionState
from sigma.correlations import SigmaCorrelationRule
from sigma.exceptions import SigmaError, SigmaFeatureNotSupportedByBackendError, SigmaTransformationError
from sigma.modifiers import reverse_modifier_mapping
from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
from sigma.processing.transformations import FieldFunctionTransformation
from sigma.processing.transformations.base import DetectionItemTransformation
from sigma.rule import SigmaDetection, SigmaDetectionItem, SigmaRule
from sigma.types import (
    CompareOperators,
    Placeholder,
    SigmaCasedString,
    SigmaCompareExpression,
    SigmaFieldReference,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaString,
    SpecialChars,
)

from trailhouse.alerting import attack
from trailhouse.alerting.rules import Examples, Rule, UnsafeCondition, validate_condition
from trailhouse.common import sql_literal
from trailhouse.warehouse.schema import BOOL, COLUMNS, JSON, MFA, TIME

# --- the field mapping: CloudTrail names -> warehouse columns -------------------------------

# Every CloudTrail field a column holds, by its dotted path (userIdentity.arn -> principal_arn).
_BY_PATH = {".".join(c.path): c for c in COLUMNS if c.path is not None}

# Lambda logs its calls with an API-version suffix (UpdateFunctionCode20150331v2): a Sigma
# value without one is compared with `event_name_base` (the name without the suffix), a
# value that carries one with `event_name` itself (see TrailhouseBackend._column_for).
SUFFIXED_NAME = re.compile(r"\d{8}(v\d+)?", re.IGNORECASE)

FIELD_COLUMNS: dict[str, str] = {
    **{path: c.name for path, c in _BY_PATH.items() if c.kind != TIME},
    "eventName": "event_name_base",
    # The account the event belongs to: recipientAccountId, or the delivery folder's
    # account when a record lacks it (docs/schema.md, account_id).
    "recipientAccountId": "account_id",
}

# JSON text columns: any path below them becomes a json_extract_string lookup.
BLOB_COLUMNS = {c.path[0]: c.name for c in COLUMNS if c.kind == JSON and c.path is not None and c.name != "resources"}

# Record fields no column holds: they stay, at the same path, in `extra_fields` (the record
# minus the columns). Objects of which some members are columns (userIdentity, tlsDetails)
# keep their other members there too.
EXTRA_TOP_LEVEL = ("vpcEndpointAccountId", "sessionCredentialFromConsole", "addendum", "edgeDeviceDetails",
                   "insightDetails")
_SPLIT_OBJECTS = {".".join(c.path[:i]) for c in COLUMNS if c.path for i in range(1, len(c.path))}

BOOL_COLUMNS = frozenset(c.name for c in COLUMNS if c.kind in (BOOL, MFA))

SUPPORTED_MODIFIERS = ("contains", "startswith", "endswith", "all", "re", "i", "ignorecase", "m", "multiline",
                       "s", "dotall", "cased", "cidr", "exists", "neq", "gt", "gte", "lt", "lte", "fieldref")

MAPPING_ID = "trailhouse_cloudtrail_fields"
_JSON_LOOKUP = re.compile(r"json_extract_string\(([a-z_]+), '(?:[^']|'')*'\)")


def _json_path(parts: Iterable[str]) -> str:
    """A DuckDB JSON path with every key quoted (dots, dashes, quotes in keys are safe);
    an all-digit part is an array index (`items.0` -> `."items"[0]`)."""
    out = "$"
    for part in parts:
        if part.isdigit():
            out += f"[{int(part)}]"
        else:
            out += '."' + part.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return out


def _lookup(column: str, parts: Iterable[str]) -> str:
    return f"json_extract_string({column}, {sql_literal(_json_path(parts))})"


def field_sql(name: str | None) -> str | None:
    """The SQL a CloudTrail field name maps to: a column, a JSON lookup, or None (unknown)."""
    if not name:
        return None
    if name in FIELD_COLUMNS:
        return FIELD_COLUMNS[name]
    head, _, rest = name.partition(".")
    if any(not p for p in name.split(".")):
        return None
    if head in EXTRA_TOP_LEVEL:
        return _lookup("extra_fields", name.split("."))
    if not rest:
        return None
    if head in BLOB_COLUMNS:
        return _lookup(BLOB_COLUMNS[head], rest.split("."))
    parents = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
    if head in ("userIdentity", "tlsDetails") and name not in _BY_PATH and name not in _SPLIT_OBJECTS \
            and not parents & set(_BY_PATH):
        return _lookup("extra_fields", name.split("."))
    return None


def field_problem(name: str | None) -> str:
    """Why a field cannot be mapped, in one line."""
    if name is None:
        return "keyword search (a value without a field) is not supported: name the CloudTrail field"
    if name in _BY_PATH and _BY_PATH[name].kind == TIME:
        return f"field {name!r} is a timestamp; Sigma string matching on times is not supported"
    if name in _SPLIT_OBJECTS or name in ("userIdentity", "tlsDetails"):
        return f"field {name!r} is an object; match one of its members (e.g. {name}.type)"
    if name.startswith("resources."):
        return "field 'resources.*' is a list; match the JSON text of 'resources' with |contains instead"
    return f"unknown field {name!r}: not a CloudTrail field trailhouse maps (see docs/rules.md, Sigma import)"


# --- the processing pipeline ----------------------------------------------------------------


@dataclass
class RefuseUnmappedFields(DetectionItemTransformation):
    """Fail the rule on the first detection item whose field the mapping did not know."""

    def apply_detection_item(self, detection_item: SigmaDetectionItem) -> None:
        if not detection_item.was_processed_by(MAPPING_ID):
            raise SigmaTransformationError(field_problem(detection_item.field))
        for value in detection_item.value:
            if isinstance(value, SigmaFieldReference) and not _is_mapped(value.field):
                raise SigmaTransformationError(field_problem(value.field).replace("field", "referenced field", 1))
        return None


def _is_mapped(sql: str) -> bool:
    return sql in FIELD_COLUMNS.values() or _JSON_LOOKUP.fullmatch(sql) is not None


def cloudtrail_pipeline() -> ProcessingPipeline:
    """CloudTrail field names to warehouse columns and JSON lookups; unknown fields fail the rule."""
    return ProcessingPipeline(
        name="trailhouse CloudTrail fields",
        priority=20,
        items=[
            ProcessingItem(identifier=MAPPING_ID,
                           transformation=FieldFunctionTransformation(mapping=dict(FIELD_COLUMNS),
                                                                     transform_func=field_sql)),  # type: ignore[arg-type]
            ProcessingItem(identifier="trailhouse_refuse_unmapped", transformation=RefuseUnmappedFields()),
        ],
    )


# --- the backend: Sigma conditions to DuckDB ------------------------------------------------

# Sequences validate_condition refuses anywhere in a condition, string literals included.
_FORBIDDEN = (";", "--", "/*")
_RE_META = set("\\.^$|?*+()[]{}")


def _unsafe(literal: str) -> bool:
    return any(seq in literal for seq in _FORBIDDEN)


def _re_char(ch: str) -> str:
    """One literal character in a regular expression, never spelling ; -- or /* ."""
    if ch == ";":
        return r"\x3b"
    if ch == "-":
        return r"\x2d"
    return "\\" + ch if ch in _RE_META else ch


def _safe_regex(pattern: str) -> str:
    """The same regular expression without ; -- or /* in its text (RE2 hex escapes)."""
    out: list[str] = []
    i, in_class = 0, False
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            out.append(r"\x3b" if nxt == ";" else r"\x2d" if nxt == "-" else r"\x2a" if nxt == "*" else ch + nxt)
            i += 2
            continue
        if ch == "[" and not in_class:
            in_class = True
        elif ch == "]" and in_class:
            in_class = False
        if ch == ";":
            out.append(r"\x3b")
        elif ch == "-" and out and out[-1] == "-":
            if in_class:
                raise SigmaFeatureNotSupportedByBackendError(
                    "regular expression has '--' inside a character class, which a condition may not contain")
            out.append(r"\x2d")
        elif ch == "*" and out and out[-1] == "/":
            out[-1] = "(?:/)"
            out.append("*")
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def _check_re2(pattern: str) -> None:
    try:
        import re2
    except ImportError:  # pragma: no cover - google-re2 comes with pysigma
        return
    try:
        re2.compile(pattern)
    except Exception as exc:  # re2.error
        raise SigmaFeatureNotSupportedByBackendError(
            f"regular expression {pattern!r} is not valid for DuckDB (RE2: no look-around or back-references): "
            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None


class TrailhouseBackend(TextQueryBackend):
    """Sigma detections to one DuckDB boolean expression over trailhouse's warehouse columns."""

    name: ClassVar[str] = "trailhouse DuckDB"
    formats: ClassVar[dict[str, str]] = {"default": "a DuckDB boolean expression for a trailhouse rule"}
    requires_pipeline: ClassVar[bool] = True

    group_expression: ClassVar[str] = "({expr})"
    token_separator: str = " "
    or_token: ClassVar[str] = "OR"
    and_token: ClassVar[str] = "AND"
    not_token: ClassVar[str] = "NOT"
    eq_token: ClassVar[str] = " = "
    convert_or_as_in: ClassVar[bool] = True
    in_expressions_allow_wildcards: ClassVar[bool] = False
    field_null_expression: ClassVar[str] = "({field} IS NULL)"
    field_exists_expression: ClassVar[str] = "({field} IS NOT NULL)"
    field_not_exists_expression: ClassVar[str] = "({field} IS NULL)"

    # -- columns and literals

    @staticmethod
    def _column_for(field_sql: str, text: str) -> str:
        if field_sql == "event_name_base" and SUFFIXED_NAME.search(text):
            return "event_name"
        return field_sql

    @staticmethod
    def _text(column: str) -> str:
        return f"CAST({column} AS VARCHAR)" if column in BOOL_COLUMNS else column

    @staticmethod
    def _parts(value: SigmaString) -> list[Any]:
        parts = list(value.s)
        for p in parts:
            if isinstance(p, Placeholder):
                raise SigmaFeatureNotSupportedByBackendError(
                    f"placeholder %{p.name}% (the expand modifier) has no value in trailhouse")
        return parts

    # -- strings

    def _string_match(self, field_sql: str, value: SigmaString, *, cased: bool) -> str:
        parts = self._parts(value)
        plain = "".join(p for p in parts if isinstance(p, str))
        column = self._column_for(field_sql, plain)
        text = self._text(column)
        if not cased:
            text = f"lower({text})"
            parts = [p.lower() if isinstance(p, str) else p for p in parts]
        inner = list(parts)
        lead = bool(inner) and inner[0] == SpecialChars.WILDCARD_MULTI
        while inner and inner[0] == SpecialChars.WILDCARD_MULTI:
            inner.pop(0)
        trail = bool(inner) and inner[-1] == SpecialChars.WILDCARD_MULTI
        while inner and inner[-1] == SpecialChars.WILDCARD_MULTI:
            inner.pop()
        if not inner and parts:  # only wildcards: any value
            lead = trail = True
        if all(isinstance(p, str) for p in inner):
            literal = "".join(inner)
            func = {(False, False): None, (True, True): "contains", (False, True): "starts_with",
                    (True, False): "ends_with"}[(lead, trail)]
            expr = f"{text} = {sql_literal(literal)}" if func is None else f"{func}({text}, {sql_literal(literal)})"
            check = literal
        else:
            like = "".join("%" if p == SpecialChars.WILDCARD_MULTI else "_" if p == SpecialChars.WILDCARD_SINGLE
                           else re.sub(r"([\\%_])", r"\\\1", p) for p in parts)
            expr = f"{text} LIKE {sql_literal(like)} ESCAPE '\\'"
            check = like
        if _unsafe(check):  # the same match as an exact regular expression
            regex = "".join(".*" if p == SpecialChars.WILDCARD_MULTI else "." if p == SpecialChars.WILDCARD_SINGLE
                            else "".join(map(_re_char, p)) for p in parts)
            expr = f"regexp_matches({text}, {sql_literal('(?s)^' + regex + '$')})"
        return f"coalesce({expr}, FALSE)"

    def convert_condition_field_eq_val_str(self, cond: ConditionFieldEqualsValueExpression,
                                           state: ConversionState) -> str:
        return self._string_match(cond.field, cond.value, cased=False)

    def convert_condition_field_eq_val_str_case_sensitive(self, cond: ConditionFieldEqualsValueExpression,
                                                          state: ConversionState) -> str:
        return self._string_match(cond.field, cond.value, cased=True)

    def convert_condition_field_eq_val_num(self, cond: ConditionFieldEqualsValueExpression,
                                           state: ConversionState) -> str:
        return self._string_match(cond.field, SigmaString(str(cond.value.number)), cased=True)

    def convert_condition_field_eq_val_bool(self, cond: ConditionFieldEqualsValueExpression,
                                            state: ConversionState) -> str:
        return self._bool_match(cond.field, bool(cond.value.boolean))

    def _bool_match(self, column: str, value: bool) -> str:
        if column in BOOL_COLUMNS:
            return f"coalesce({column} = {'TRUE' if value else 'FALSE'}, FALSE)"
        return f"coalesce(lower({column}) = {sql_literal(str(value).lower())}, FALSE)"

    def convert_condition_field_eq_val(self, cond: ConditionFieldEqualsValueExpression,
                                       state: ConversionState) -> Any:
        # 'true'/'false' written as strings against a boolean column mean the boolean.
        value = cond.value
        if (cond.field in BOOL_COLUMNS and isinstance(value, SigmaString) and not value.contains_special()
                and str(value).lower() in ("true", "false")):
            return self._bool_match(cond.field, str(value).lower() == "true")
        return super().convert_condition_field_eq_val(cond, state)

    # -- lists as IN

    def decide_convert_condition_as_in_expression(self, cond: ConditionOR | ConditionAND,
                                                  state: ConversionState) -> bool:
        if not super().decide_convert_condition_as_in_expression(cond, state):
            return False
        args = [a for a in cond.args if isinstance(a, ConditionFieldEqualsValueExpression)]
        if args[0].field in BOOL_COLUMNS:
            return False
        for arg in args:
            if isinstance(arg.value, SigmaCasedString):
                return False
            if isinstance(arg.value, SigmaString):
                if _unsafe("".join(self._parts(arg.value))):
                    return False
        return True

    def convert_condition_as_in_expression(self, cond: ConditionOR | ConditionAND, state: ConversionState) -> str:
        groups: dict[str, list[str]] = {}
        for arg in cond.args:
            assert isinstance(arg, ConditionFieldEqualsValueExpression)
            value = arg.value
            text = str(value.number) if isinstance(value, SigmaNumber) else "".join(self._parts(value)).lower()
            column = self._column_for(arg.field, text)
            groups.setdefault(column, [])
            if sql_literal(text) not in groups[column]:
                groups[column].append(sql_literal(text))
        exprs = [f"coalesce(lower({column}) IN ({', '.join(values)}), FALSE)" for column, values in groups.items()]
        return exprs[0] if len(exprs) == 1 else "(" + " OR ".join(exprs) + ")"

    # -- regular expressions, CIDR, numbers, field references

    def convert_condition_field_eq_val_re(self, cond: ConditionFieldEqualsValueExpression,
                                          state: ConversionState) -> str:
        value: SigmaRegularExpression = cond.value
        pattern = str(value.regexp)
        flags = "".join(sorted(SigmaRegularExpression.sigma_to_re_flag[f] for f in value.flags))
        if flags:
            pattern = f"(?{flags}){pattern}"
        _check_re2(pattern)
        # A regex naming digits may target a suffixed Lambda name; others the base name.
        column = cond.field
        if column == "event_name_base" and re.search(r"\d|\\d", str(value.regexp)):
            column = "event_name"
        return f"coalesce(regexp_matches({self._text(column)}, {sql_literal(_safe_regex(pattern))}), FALSE)"

    def convert_condition_field_eq_val_cidr(self, cond: ConditionFieldEqualsValueExpression,
                                            state: ConversionState) -> str:
        # No inet extension offline: pySigma expands the network into address prefixes
        # (10.0.0.0/12 -> 10.0.* ... 10.15.*), an OR that must stay one operand.
        expr = super().convert_condition_field_eq_val_cidr(cond, state)
        return f"({expr})" if " OR " in expr else expr

    def convert_condition_field_compare_op_val(self, cond: ConditionFieldEqualsValueExpression,
                                               state: ConversionState) -> str:
        value: SigmaCompareExpression = cond.value
        ops = {CompareOperators.LT: "<", CompareOperators.LTE: "<=", CompareOperators.GT: ">",
               CompareOperators.GTE: ">="}
        if value.op not in ops or not isinstance(value.number, SigmaNumber) or type(value.number) is not SigmaNumber:
            raise SigmaFeatureNotSupportedByBackendError(f"comparison {value.op.name} is not supported")
        return f"coalesce(TRY_CAST({self._text(cond.field)} AS DOUBLE) {ops[value.op]} {value.number.number}, FALSE)"

    def convert_condition_field_eq_field(self, cond: ConditionFieldEqualsValueExpression,
                                         state: ConversionState) -> str:
        ref: SigmaFieldReference = cond.value
        left, right = f"lower({self._text(cond.field)})", f"lower({self._text(ref.field)})"
        func = {(False, False): None, (True, True): "contains", (True, False): "starts_with",
                (False, True): "ends_with"}[(ref.starts_with, ref.ends_with)]
        # starts_with on the reference means the field *starts with* the referenced value.
        expr = f"{left} = {right}" if func is None else f"{func}({left}, {right})"
        return f"coalesce({expr}, FALSE)"

    def convert_condition_field_eq_val_timestamp_part(self, cond: ConditionFieldEqualsValueExpression,
                                                      state: ConversionState) -> str:
        raise SigmaFeatureNotSupportedByBackendError("timestamp part modifiers (minute, hour, day, ...) are not supported")

    def convert_condition_field_eq_query_expr(self, cond: ConditionFieldEqualsValueExpression,
                                              state: ConversionState) -> str:
        raise SigmaFeatureNotSupportedByBackendError("query expression placeholders are not supported")

    def _no_keywords(self, *args: Any) -> str:
        raise SigmaFeatureNotSupportedByBackendError(field_problem(None))

    convert_condition_val_str = _no_keywords  # type: ignore[assignment]
    convert_condition_val_num = _no_keywords  # type: ignore[assignment]
    convert_condition_val_re = _no_keywords  # type: ignore[assignment]
    convert_condition_query_expr = _no_keywords  # type: ignore[assignment]


# --- whole rules ------------------------------------------------------------------------------

LEVELS = {"informational": "info", "low": "low", "medium": "medium", "high": "high", "critical": "critical"}


@dataclass
class SigmaImport:
    """What an import produced: converted rules, and (where, reason) for each refused one.
    `where` is the file, followed by ': <rule title>' when the refusal is about one rule."""

    rules: list[Rule] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)

    def extend(self, other: SigmaImport) -> None:
        self.rules += other.rules
        self.refused += other.refused


class Refused(Exception):
    """A Sigma rule that cannot be converted; the message is the one-line reason."""


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _error_text(exc: BaseException) -> str:
    msg = exc.args[0] if isinstance(exc, SigmaError) and exc.args else str(exc)
    return _one_line(msg) or type(exc).__name__


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def rule_id(sigma: SigmaRule, taken: set[str]) -> str:
    """sigma.<slug of the title> (of the Sigma id when the title gives none), unique in `taken`."""
    slug = _slug(sigma.title or "")[:110].strip("-")
    sid = str(sigma.id) if sigma.id else ""
    if len(slug) < 3:
        slug = _slug(sid) or "rule"
    candidate = f"sigma.{slug}"
    if candidate in taken and sid:
        candidate = f"sigma.{slug}-{sid[:8]}"
    n = 2
    base = candidate
    while candidate in taken:
        candidate, n = f"{base}-{n}", n + 1
    taken.add(candidate)
    return candidate


def attack_refs(tags: Iterable[str]) -> tuple[list[dict[str, str]], list[str]]:
    """ATT&CK pairs from Sigma tags, and the tags kept as plain tags.

    A technique tag (attack.t1078.004) is paired with each tactic tag of the rule
    (attack.privilege-escalation) it belongs to in attack.py; a technique with no such
    tactic tag is paired with its only tactic when it has exactly one. Tags attack.py does
    not know, tactic tags nothing was paired with, and every other tag stay plain tags.
    """
    tags = list(tags)
    tactics, techniques, plain = [], [], []
    for tag in tags:
        ns, _, name = tag.partition(".")
        if ns.lower() != "attack":
            plain.append(tag)
            continue
        name_norm = name.lower().replace("_", "-")
        if name_norm in attack.TACTIC_BY_SHORTNAME:
            tactics.append((tag, name_norm))
        elif re.fullmatch(r"t\d{4}(\.\d{3})?", name_norm) and name_norm.upper() in attack.TECHNIQUES:
            techniques.append((tag, name_norm.upper()))
        else:
            plain.append(tag)
    pairs: list[dict[str, str]] = []
    used_tactics: set[str] = set()
    for tag, technique in techniques:
        belongs = attack.TECHNIQUES[technique][1]
        chosen = [t for _, t in tactics if t in belongs]
        if not chosen and len(belongs) == 1:
            chosen = [belongs[0]]
        if not chosen:
            plain.append(tag)
        for tactic in chosen:
            if {"tactic": tactic, "technique": technique} not in pairs:
                pairs.append({"tactic": tactic, "technique": technique})
            used_tactics.add(tactic)
    plain += [tag for tag, t in tactics if t not in used_tactics]
    return pairs, [t for t in tags if t in plain]


def _modifiers(detection: SigmaDetection) -> Iterable[tuple[str | None, str]]:
    for item in detection.detection_items:
        if isinstance(item, SigmaDetection):
            yield from _modifiers(item)
        else:
            for mod in item.modifiers:
                yield item.field, reverse_modifier_mapping.get(mod.__name__, mod.__name__)


def _check_convertible(rule: SigmaRule) -> None:
    if rule.errors:
        raise Refused(_error_text(rule.errors[0]))
    ls = rule.logsource
    if (ls.product or "").lower() != "aws" or (ls.service or "").lower() != "cloudtrail" or ls.category:
        shown = ", ".join(f"{k}={v}" for k, v in (("product", ls.product), ("category", ls.category),
                                                   ("service", ls.service)) if v) or "none"
        raise Refused(f"logsource {shown} is not product=aws, service=cloudtrail")
    for cond in rule.detection.condition:
        if "|" in cond:
            what = "the near operator" if re.search(r"\|\s*near\b", cond) else "an aggregation (| count() ...)"
            raise Refused(f"condition {_one_line(cond)!r} uses {what}: Sigma 1 pipe conditions are not supported "
                          "(for counts write a trailhouse threshold rule)")
    for field_name, mod in _modifiers_of(rule):
        if mod not in SUPPORTED_MODIFIERS:
            raise Refused(f"modifier |{mod} on field {field_name!r} is not supported")
    if not rule._output:
        raise Refused("the rule only feeds a correlation rule (generate: false)")


def _modifiers_of(rule: SigmaRule) -> Iterable[tuple[str | None, str]]:
    for detection in rule.detection.detections.values():
        yield from _modifiers(detection)


def _description(rule: SigmaRule) -> str:
    text = (rule.description or "").strip()
    facts = [f"Sigma rule {rule.id}" if rule.id else "Sigma rule"]
    if rule.status:
        facts.append(f"status {rule.status}")
    if rule.author:
        facts.append(f"by {_one_line(rule.author)}")
    if rule.date:
        facts.append(f"of {rule.date}")
    if rule.modified:
        facts.append(f"modified {rule.modified}")
    parts = [text] if text else []
    parts.append("Imported from " + ", ".join(facts) + ".")
    if rule.falsepositives:
        parts.append("False positives:\n" + "\n".join(f"- {_one_line(fp)}" for fp in rule.falsepositives))
    return "\n\n".join(parts) + "\n"


def _trailhouse_block(rule: SigmaRule) -> dict[str, Any]:
    block = rule.custom_attributes.get("trailhouse") or {}
    if not isinstance(block, dict):
        raise Refused("the 'trailhouse' block must be a mapping (tests:, runbook:)")
    unknown = sorted(set(block) - {"tests", "runbook"})
    if unknown:
        raise Refused(f"the 'trailhouse' block has unknown keys {unknown}; allowed: tests, runbook")
    return block


def condition_of(rule: SigmaRule) -> str:
    """The rule's detection as one DuckDB boolean expression (several conditions: any of them)."""
    backend = TrailhouseBackend(processing_pipeline=cloudtrail_pipeline())
    queries = backend.convert_rule(rule)
    if not queries:
        raise Refused("the detection converted to no condition")
    return queries[0] if len(queries) == 1 else " OR ".join(f"({q})" for q in queries)


def layout(condition: str) -> str:
    """The condition one operand a line, each top-level AND/OR leading its line (as in
    sql/rules/); only whitespace outside string literals changes."""
    lines, start, depth, quoted, i = [], 0, 0, False, 0
    while i < len(condition):
        ch = condition[i]
        if ch == "'":
            quoted = not quoted
        elif not quoted and ch in "()":
            depth += 1 if ch == "(" else -1
        elif not quoted and depth == 0 and ch == " ":
            for op in (" AND ", " OR "):
                if condition.startswith(op, i):
                    lines.append(condition[start:i])
                    start = i + 1
                    i += len(op) - 1
                    break
        i += 1
    lines.append(condition[start:])
    return "\n".join(line.strip() for line in lines) + "\n"


def convert_rule(rule: SigmaRule, taken: set[str] | None = None) -> Rule:
    """One parsed Sigma rule to a trailhouse Rule; raises Refused with the reason."""
    _check_convertible(rule)
    block = _trailhouse_block(rule)
    try:
        condition = condition_of(rule)
    except Refused:
        raise
    except (SigmaError, NotImplementedError) as exc:
        raise Refused(_error_text(exc)) from None
    try:
        condition = layout(validate_condition(condition))
        validate_condition(condition)
    except UnsafeCondition as exc:
        raise Refused(f"the converted condition fails the custom-rule check: {exc}") from None
    pairs, tags = attack_refs(str(t) for t in rule.tags)
    status = str(rule.status) if rule.status else ""
    try:
        tests = Examples.model_validate(block.get("tests") or {})
    except ValidationError as exc:
        problems = "; ".join(f"trailhouse.tests.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise Refused(_one_line(problems)) from None
    try:
        return Rule(
            id=rule_id(rule, taken if taken is not None else set()),
            title=_one_line(rule.title),
            description=_description(rule),
            severity=LEVELS.get(str(rule.level).lower(), "medium") if rule.level else "medium",  # type: ignore[arg-type]
            references=[str(r) for r in rule.references],
            tags=["sigma", *tags],
            attack=pairs,  # type: ignore[arg-type]
            runbook=str(block.get("runbook") or ""),
            condition=condition,
            enabled=status not in ("deprecated", "unsupported"),
            builtin=False,
            tests=tests,
        )
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'rule'}: {e['msg']}" for e in exc.errors())
        raise Refused(_one_line(problems)) from None


def convert_yaml(text: str, source: str = "<string>", taken: set[str] | None = None) -> SigmaImport:
    """Every rule of one Sigma YAML text (one or several documents)."""
    out = SigmaImport()
    taken = taken if taken is not None else set()
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        out.refused.append((source, f"not valid YAML: {_one_line(str(exc).splitlines()[0])}"))
        return out
    if not docs or not all(isinstance(d, dict) for d in docs):
        out.refused.append((source, "not a Sigma rule: each YAML document must be a mapping"))
        return out
    try:
        collection = SigmaCollection.from_dicts(docs, collect_errors=True)
    except Exception as exc:  # collection-level problems (alias bombs, bad references)
        out.refused.append((source, _error_text(exc)))
        return out
    for err in collection.errors:
        if not any(err in getattr(r, "errors", []) for r in collection.rules):
            out.refused.append((source, _error_text(err)))
    for sigma_rule in collection.rules:
        title = _one_line(getattr(sigma_rule, "title", "") or "(untitled)")
        where = f"{source}: {title}"
        if isinstance(sigma_rule, SigmaCorrelationRule):
            kind = str(sigma_rule.type).lower().replace("_", "-") if sigma_rule.type else "correlation"
            out.refused.append((where, f"correlation rule ({kind}) is not supported; "
                                       "express counts as a trailhouse threshold rule"))
            continue
        if not isinstance(sigma_rule, SigmaRule):
            out.refused.append((where, f"{type(sigma_rule).__name__} documents are not supported"))
            continue
        try:
            out.rules.append(convert_rule(sigma_rule, taken))
        except Refused as exc:
            out.refused.append((where, _one_line(str(exc))))
        except Exception as exc:  # never crash on one rule: report it
            out.refused.append((where, f"conversion failed: {type(exc).__name__}: {_error_text(exc)}"))
    return out


def sigma_files(paths: Iterable[Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """The files to read: given files as they are, directories walked for *.yml / *.yaml."""
    files: list[Path] = []
    missing: list[tuple[str, str]] = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in (".yml", ".yaml"))
        elif path.is_file():
            files.append(path)
        else:
            missing.append((str(path), "no such file or directory"))
    return files, missing


def convert_paths(paths: list[Path]) -> SigmaImport:
    """Every Sigma rule in these files and directories, converted or refused with a reason."""
    files, missing = sigma_files(paths)
    out = SigmaImport(refused=list(missing))
    taken: set[str] = set()
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            out.refused.append((str(path), f"cannot read the file: {_one_line(str(exc))}"))
            continue
        out.extend(convert_yaml(text, str(path), taken))
    return out


# --- writing rule files ---------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    """Block style like the files in sql/rules/: lists indented under their key, text as |."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> Any:
        return super().increase_indent(flow, False)


def _str(dumper: yaml.SafeDumper, data: str) -> Any:
    style = "|" if "\n" in data and not any(line != line.rstrip() for line in data.splitlines()) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str)


def rule_yaml(rule: Rule) -> str:
    """The rule as a rule file (`<id>.yaml`), in the shape of those in sql/rules/."""
    data = rule.model_dump(mode="json", exclude_defaults=True,
                           exclude={"builtin", "owner", "scope_accounts"})
    order = ["id", "title", "description", "severity", "references", "tags", "attack", "runbook", "condition",
             "threshold", "dedup", "exclusions", "enabled", "tests"]
    out: dict[str, Any] = {"id": rule.id, "title": rule.title, "severity": rule.severity,
                           "condition": rule.condition if rule.condition.endswith("\n") else rule.condition + "\n"}
    for key in order:
        if key in data and key not in out:
            out[key] = data[key]
    out["dedup"] = rule.dedup.model_dump(mode="json")
    if rule.description:
        out["description"] = rule.description
    ordered = {k: out[k] for k in order if k in out}
    if not rule.enabled:
        ordered["enabled"] = False
    if "tests" in ordered:  # keep the order positive, negative and drop empty lists
        ordered["tests"] = {k: v for k, v in ordered["tests"].items() if v}
    return yaml.dump(ordered, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=110)
