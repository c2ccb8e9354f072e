"""Rules are cost-bounded: a time budget per rule (DuckDB interrupted), a match cap per rule, errors
that name the rule's columns and never an event's values, and stored conditions checked again."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from trailhouse.alerting import rules

SECRET = "hunter2-SECRET-VALUE-0000000000000000000001"


def _records(n: int, **over: object) -> list[dict]:
    base = datetime(2026, 11, 20, 10, tzinfo=UTC)
    recs = []
    for i in range(n):
        rec = json.loads(json.dumps(rules.BASE_RECORD))
        rec.update(eventID=f"ev-{i:05d}", eventTime=(base + timedelta(seconds=n - i)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                   **over)
        recs.append(rec)
    return recs


def _rule(rule_id: str, condition: str, **kw: object) -> rules.Rule:
    return rules.Rule(id=rule_id, title=rule_id, severity="low", condition=condition, **kw)


def test_a_rule_past_its_time_budget_is_stopped_and_the_others_still_run() -> None:
    con = rules.connect(rules.records_table(_records(20)))
    # A trusted (built-in style) condition that would scan 10^12 rows: only the interrupt ends it.
    endless = _rule("endless-rule", "(SELECT count(*) FROM range(1000000000000)) > 0")
    after = _rule("after-rule", "event_name = 'DescribeInstances'")
    result = rules.evaluate(con, [_rule("before-rule", "TRUE"), endless, after], rules.Limits(0.5, None))
    con.close()
    problem = result.problems["endless-rule"]
    assert problem.kind == rules.TIMEOUT and "0.5 s" in problem.detail and "TRAILHOUSE_RULE_TIME_BUDGET" in problem.detail
    assert set(result.errors) == {"endless-rule"}
    fired = {m.rule.id for m in result.matches}
    assert fired == {"before-rule", "after-rule"}  # the interrupt never reached the rule after it
    assert sum(1 for m in result.matches if m.rule.id == "after-rule") == 20


def test_a_rule_matching_everything_keeps_the_earliest_matches_up_to_the_cap() -> None:
    table = rules.records_table(_records(50))
    con = rules.connect(table)
    everything = _rule("everything", "TRUE", builtin=False, owner="olivia")
    burst = _rule("burst", "TRUE", threshold={"count": 2, "window_minutes": 60}, builtin=False, owner="olivia")
    few = _rule("few-rule", "event_id IN ('ev-00001', 'ev-00002')", builtin=False, owner="olivia")
    # Built-in rules are reviewed and measured: the cap never cuts their alerts short.
    builtin = _rule("builtin-everything", "TRUE")
    result = rules.evaluate(con, [everything, burst, few, builtin], rules.Limits(None, 10))
    con.close()
    by_rule: dict[str, list[dict]] = {}
    for m in result.matches:
        by_rule.setdefault(m.rule.id, []).append(m.event)
    earliest = sorted(table.to_pylist(), key=lambda e: e["event_time"])[:10]
    assert [e["event_id"] for e in by_rule["everything"]] == [e["event_id"] for e in earliest]
    assert len(by_rule["burst"]) == 10
    assert len(by_rule["few-rule"]) == 2 and "few-rule" not in result.problems
    assert len(by_rule["builtin-everything"]) == 50 and "builtin-everything" not in result.problems
    for rule_id in ("everything", "burst"):
        p = result.problems[rule_id]
        assert p.kind == rules.TRUNCATED and "more than 10 events" in p.detail and "TRAILHOUSE_RULE_MAX_MATCHES" in p.detail
    assert result.errors == {}  # truncated rules are not failed ones: their alerts are raised


@pytest.mark.parametrize(("condition", "column", "what"), [
    ("CAST(user_agent AS INTEGER) > 1", "user_agent", "converted to INT32"),
    ("CAST(json_extract_string(request_parameters, '$.n') AS BIGINT) > 0", "request_parameters", "converted to INT64"),
    ("json_extract(json_extract_string(request_parameters, '$.policy'), '$.a') IS NULL", "request_parameters",
     "not valid JSON"),
    ("CAST(user_agent AS DATE) IS NULL", "user_agent", "not a valid date"),
    ("CAST(user_agent AS TIMESTAMP) IS NULL", "user_agent", "not a valid timestamp"),
])
def test_a_failing_rule_names_its_column_and_never_an_event_value(condition: str, column: str, what: str) -> None:
    recs = _records(3, userAgent=SECRET, requestParameters={"policy": SECRET + "{", "n": SECRET})
    con = rules.connect(rules.records_table(recs))
    result = rules.evaluate(con, [_rule("olivia-broken", condition, builtin=False, owner="olivia"),
                                  _rule("still-runs", "TRUE")])
    con.close()
    problem = result.problems["olivia-broken"]
    assert problem.kind == rules.ERROR and problem.owner == "olivia"
    assert f"column {column}" in problem.detail and what in problem.detail
    assert "hunter2" not in problem.detail and "SECRET" not in problem.detail
    assert len(result.matches) == 3  # the other rule's matches stay


def test_a_stored_custom_condition_outside_the_check_is_refused_at_evaluation() -> None:
    # Saved before the check refused it (or written to the database by hand): the engine checks again.
    issue = "regexp_matches(coalesce(user_agent,''), '((((a*)*)*)*){1000}b')"
    con = rules.connect(rules.records_table(_records(3)))
    result = rules.evaluate(con, [_rule("olivia-stall", issue, builtin=False, owner="olivia"),
                                  _rule("olivia-fine", "event_name = 'DescribeInstances'", builtin=False,
                                        owner="olivia")])
    con.close()
    assert result.problems["olivia-stall"].kind == rules.REFUSED
    assert "nested quantifier" in result.problems["olivia-stall"].detail
    assert {m.rule.id for m in result.matches} == {"olivia-fine"}


def test_limits_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from trailhouse import settings

    assert rules.Limits.of(settings.load()) == rules.Limits(30.0, 10_000)
    monkeypatch.setenv("TRAILHOUSE_RULE_TIME_BUDGET", "2.5")
    monkeypatch.setenv("TRAILHOUSE_RULE_MAX_MATCHES", "0")
    assert rules.Limits.of(settings.load()) == rules.Limits(2.5, None)
    monkeypatch.setenv("TRAILHOUSE_RULE_MAX_MATCHES", "lots")
    with pytest.raises(ValueError, match="TRAILHOUSE_RULE_MAX_MATCHES='lots' is not a number"):
        settings.load()
