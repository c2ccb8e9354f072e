"""The built-in rule packs in sql/rules: every rule proven on its own examples with the
production engine, the packs' invariants, and silence on benign real-world CloudTrail."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from trailhouse.alerting import rules
from trailhouse.alerting.rules import SEVERITIES, Rule
from trailhouse.ingest.records import event_file

RULES: list[Rule] = rules.builtin_rules()
BY_ID = {r.id: r for r in RULES}
CIS = [r for r in RULES if r.id.startswith("cis.")]
PRODUCT = [r for r in RULES if r.id.startswith("trailhouse.")]
CORPORA = Path(__file__).resolve().parents[1] / "fixtures" / "corpora"

# The 15 monitoring controls of the CIS AWS Foundations Benchmark (v1.4 / v3.0 4.1-4.15).
CIS_IDS = [
    "cis.unauthorized-api-calls",         # 4.1
    "cis.console-signin-without-mfa",     # 4.2
    "cis.root-account-usage",             # 4.3
    "cis.iam-policy-changes",             # 4.4
    "cis.cloudtrail-config-changes",      # 4.5
    "cis.console-auth-failures",          # 4.6
    "cis.kms-cmk-disable-or-deletion",    # 4.7
    "cis.s3-bucket-policy-changes",       # 4.8
    "cis.config-changes",                 # 4.9
    "cis.security-group-changes",         # 4.10
    "cis.nacl-changes",                   # 4.11
    "cis.network-gateway-changes",        # 4.12
    "cis.route-table-changes",            # 4.13
    "cis.vpc-changes",                    # 4.14
    "cis.organizations-changes",          # 4.15
]
# The two CIS patterns that name no event: they select on errorCode / userIdentity.type.
CIS_WITHOUT_EVENT_NAMES = {"cis.unauthorized-api-calls", "cis.root-account-usage"}

# `event_name = 'X'`, `event_name_base = 'X'` and `event_name IN ('X', 'Y')` (not `<>`, `!=` or NOT IN).
EVENT_NAME_TERM = re.compile(r"\bevent_name(?:_base)?\s*(?:(?<![<>!])=\s*'([^']+)'|\s+IN\s*\(([^)]*)\))", re.IGNORECASE)


def _by_id(selection: list[Rule]) -> dict:
    return {"argvalues": selection, "ids": [r.id for r in selection]}


@pytest.fixture(scope="module")
def example_results() -> dict[str, list[rules.ExampleResult]]:
    """Every built-in rule's examples, evaluated as `trailhouse rules test` does (rules.test_rules)."""
    by_rule: dict[str, list[rules.ExampleResult]] = {r.id: [] for r in RULES}
    for res in rules.test_rules(RULES):
        by_rule[res.rule_id].append(res)
    return by_rule


@pytest.mark.parametrize("rule", **_by_id(RULES))
def test_examples(rule: Rule, example_results: dict[str, list[rules.ExampleResult]]) -> None:
    results = example_results[rule.id]
    assert results, f"{rule.id}: no examples"
    failures = [
        f"{r.rule_id} / {r.example!r}: expected {'a match' if r.expected else 'no match'}, "
        f"{'fired' if r.fired else 'did not fire'}" + (f"; engine error: {r.error}" if r.error else "")
        for r in results if not r.ok
    ]
    assert not failures, "\n".join(failures)


# Built-ins that build a regular expression per event from its account id: a custom rule may
# not (its pattern is a string literal, compiled once), reviewed repo code may.
PATTERN_PER_EVENT = {"trailhouse.iam-role-created-with-external-trust", "trailhouse.iam-role-trust-external-account",
                     "trailhouse.rds-snapshot-copied-elsewhere", "trailhouse.s3-bucket-policy-cross-account",
                     "trailhouse.s3-encryption-external-kms-key"}


@pytest.mark.parametrize("rule", **_by_id(RULES))
def test_condition_passes_the_custom_rule_validator(rule: Rule) -> None:
    # Built-ins are trusted repo code, but none needs more than a custom rule may use, its
    # regular expressions included (docs/rules.md, "Regular expressions"), but for those above.
    if rule.id in PATTERN_PER_EVENT:
        with pytest.raises(rules.UnsafeCondition, match="must be a string literal"):
            rules.validate_condition(rule.condition)
        return
    rules.validate_condition(rule.condition)


@pytest.mark.parametrize("rule", **_by_id(RULES))
def test_rule_is_well_formed(rule: Rule) -> None:
    assert rule.id.split(".", 1)[0] in ("cis", "trailhouse"), f"{rule.id}: ids are cis.* or trailhouse.*"
    assert rule.title.strip(), f"{rule.id}: empty title"
    assert rule.description.strip(), f"{rule.id}: empty description"
    assert rule.severity in SEVERITIES
    assert rule.attack, f"{rule.id}: names no ATT&CK technique (attack:)"
    assert rule.runbook.strip(), f"{rule.id}: no runbook (what to check next)"
    assert rule.tests.positive, f"{rule.id}: no positive example"
    assert rule.tests.negative, f"{rule.id}: no negative example"
    names = [e.name for e in (*rule.tests.positive, *rule.tests.negative)]
    assert len(names) == len(set(names)), f"{rule.id}: example names repeat"
    if rule.id.startswith("cis."):
        assert "cis" in rule.tags and any(t.startswith("cis-v3.0-4.") for t in rule.tags), rule.tags
        assert any(t.startswith("cis-v1.4-4.") for t in rule.tags), rule.tags
        assert rule.references, f"{rule.id}: a CIS rule cites where its pattern comes from"


def test_ids_are_unique_and_files_are_named_after_them() -> None:
    ids = [r.id for r in RULES]
    assert len(ids) == len(set(ids))
    for path in sorted(rules.RULES_DIR.glob("*.yaml")):
        assert yaml.safe_load(path.read_text())["id"] == path.stem, path
    assert sorted(p.stem for p in rules.RULES_DIR.glob("*.yaml")) == sorted(ids)


def test_pack_sizes() -> None:
    assert sorted(r.id for r in CIS) == sorted(CIS_IDS), "the CIS pack is exactly the 15 monitoring controls"
    assert len(PRODUCT) >= 25
    assert len(RULES) == len(CIS) + len(PRODUCT)


def _event_names(condition: str) -> list[str]:
    names: list[str] = []
    for single, listed in EVENT_NAME_TERM.findall(condition):
        names += [single] if single else re.findall(r"'([^']+)'", listed)
    return names


def test_event_name_parser() -> None:
    cond = "event_name IN ('A', 'B') AND event_name_base = 'C' AND event_name <> 'D' AND event_name NOT IN ('E')"
    assert _event_names(cond) == ["A", "B", "C"]


@pytest.mark.parametrize("rule", **_by_id(CIS))
def test_cis_examples_cover_every_event_name(rule: Rule) -> None:
    names = _event_names(rule.condition)
    if rule.id in CIS_WITHOUT_EVENT_NAMES:
        assert not names
        return
    assert names, f"{rule.id}: no event names found in the condition"
    default = rules.BASE_RECORD["eventName"]
    positives = {e.event.get("eventName", default) for e in rule.tests.positive}
    negatives = {e.event.get("eventName", default) for e in rule.tests.negative}
    assert not set(names) - positives, f"{rule.id}: no positive example for {sorted(set(names) - positives)}"
    assert not set(names) - negatives, f"{rule.id}: no negative example for {sorted(set(names) - negatives)}"


# --- benign real-world CloudTrail ---------------------------------------------------------


# new_term rules replay real logs against a baseline that finished learning long ago and
# holds nothing: every combination in the logs is a first sighting, the loudest they can be.
LEARNED = datetime(2000, 1, 1, tzinfo=UTC)


def _fired(records: list[dict]) -> dict[str, set[str]]:
    """{rule id: event names it matched} for every enabled built-in rule over `records`."""
    con = rules.connect(rules.records_table(records))
    try:
        ev = rules.evaluate(con, [r for r in RULES if r.enabled], baselines=rules.MemoryBaselines(since=LEARNED))
    finally:
        con.close()
    assert not ev.errors, ev.errors
    fired: dict[str, set[str]] = {}
    for m in ev.matches:
        fired.setdefault(m.rule.id, set()).add(m.event["event_name"])
    return fired


def _loud(fired: dict[str, set[str]]) -> dict[str, set[str]]:
    return {rid: names for rid, names in fired.items() if BY_ID[rid].severity in ("high", "critical")}


def _benign_records() -> list[dict]:
    """Everyday, non-attack CloudTrail: trailscraper's CLI usage, the CloudTrail user guide's
    examples and plaso's LookupEvents export."""
    records = []
    for path in sorted((CORPORA / "trailscraper").rglob("*.json")):
        records += json.loads(path.read_text())["Records"]
    for line in (CORPORA / "awsdocs_cloudtrail_user_guide" / "examples.jsonl").read_text().splitlines():
        doc = json.loads(line)
        event = doc.get("event")
        if doc.get("kind") == "records_file":
            records += event["Records"]
        elif doc.get("kind") == "record" and isinstance(event, dict) and "eventName" in event:
            records.append(event)
    for line in (CORPORA / "plaso" / "aws_cloudtrail.jsonl").read_text().splitlines():
        records.append(json.loads(json.loads(line)["CloudTrailEvent"]))
    return records


def test_benign_corpora_fire_nothing_high_or_critical() -> None:
    records = _benign_records()
    assert len(records) >= 25
    # The exceptions are legitimate: the user guide documents root sign-ins and a root
    # password change, and trailscraper's smoke-test file carries an AWS documentation
    # sample, an API Gateway GetResource call made with the *root* user's access key. Root
    # usage is exactly what the root rules report, whatever the call.
    root_rules = {"cis.root-account-usage", "trailhouse.root-activity", "trailhouse.root-console-login"}
    loud = _loud(_fired(records))
    assert set(loud) <= root_rules, loud
    assert "GetResource" in loud["trailhouse.root-activity"]


def test_silent_on_read_only_error_free_events() -> None:
    records = []
    for path in sorted((CORPORA / "invictus_aws_dataset" / "CloudTrail").glob("*.json")):
        records += [r for r in json.loads(path.read_text())["Records"]
                    if r.get("readOnly") is True and not r.get("errorCode")]
    assert len(records) >= 1500
    # Read-only, error-free calls change nothing, but reading data can itself be the
    # attack: the dataset holds the Stratus detonation secretsmanager-retrieve-secrets,
    # whose bursts of 20 GetSecretValue calls within seconds are what the secrets rules
    # exist to catch. Nothing else may fire at high or critical.
    loud = _loud(_fired(records))
    assert set(loud) <= {rid for rid in BY_ID if "secret" in rid}, loud


# --- real attack logs: each rule fires on the real logs it names ----------------------------

STRATUS = CORPORA / "stratus_red_team" / "detonation-logs"
# Rules that fire on almost any attack because the attacker's calls were refused or made by
# root: true, but not a detection of the technique itself.
GENERIC = {"cis.unauthorized-api-calls", "trailhouse.access-denied-storm", "cis.root-account-usage",
           "trailhouse.root-activity"}


def corpus_records(path: Path) -> list[dict]:
    """Records of one corpus file, read as `trailhouse rules eval` reads them."""
    return event_file(path)


CORPUS_CASES = [(r, f) for r in RULES for f in r.tests.corpus]


@pytest.mark.parametrize(("rule", "name"), CORPUS_CASES, ids=[f"{r.id}:{Path(f).name}" for r, f in CORPUS_CASES])
def test_fires_on_the_real_logs_it_names(rule: Rule, name: str) -> None:
    path = CORPORA / name
    assert path.is_file(), f"{rule.id}: tests.corpus names {name}, which is not in tests/fixtures/corpora"
    con = rules.connect(rules.records_table(corpus_records(path)))
    try:
        ev = rules.evaluate(con, [rule], baselines=rules.MemoryBaselines(since=LEARNED))
    finally:
        con.close()
    assert not ev.errors, ev.errors
    assert ev.matches, f"{rule.id} does not fire on {name}"


@pytest.mark.parametrize("path", sorted(STRATUS.glob("*.json")), ids=lambda p: p.stem)
def test_every_stratus_technique_fires_a_rule_specific_to_it(path: Path) -> None:
    name = str(path.relative_to(CORPORA))
    specific = [r.id for r in RULES if name in r.tests.corpus and r.id not in GENERIC]
    assert specific, f"no rule specific to {path.stem} names it in tests.corpus"


def test_the_stratus_suite_is_whole() -> None:
    assert len(list(STRATUS.glob("*.json"))) == 35
