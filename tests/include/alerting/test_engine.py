"""The rule engine reads only the sources a condition can match, yet finds every match a plain scan finds."""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb
import pytest

from trailhouse.alerting import rules

RULES = [r for r in rules.builtin_rules() if r.enabled]


def positives_of_all_rules() -> list[dict]:
    """Every built-in rule's positive examples, in one batch of many event sources (interleaved)."""
    recs = []
    for rule in RULES:
        for ex in rule.tests.positive:
            recs.extend(rules.example_records(ex, f"engine/{rule.id}/{ex.name}"))
    return recs[::2] + recs[1::2]  # sources interleaved: connect has to group them itself


def plain_scan(table, rule: rules.Rule) -> set[str]:  # noqa: ANN001
    """The events a rule's predicate selects, scanning the whole table (no per-source split);
    for a new_term rule with an empty, long-learned baseline, the first of each combination."""
    con = duckdb.connect()
    con.register("t", table)
    derived = ", ".join(f"{sql} AS {name}" for name, sql in rules.DERIVED.items())
    con.execute(f"CREATE VIEW events AS SELECT *, {derived} FROM t")
    query = f"SELECT event_id FROM events WHERE {rules.rule_predicate(rule)}"
    if rule.new_term:
        fields = rule.new_term.fields
        present = " AND ".join(f"{f} IS NOT NULL" for f in fields)
        query = (f"SELECT arg_min(event_id, struct_pack(t := event_time, i := event_id)) FROM events "
                 f"WHERE ({rules.rule_predicate(rule)}) AND {present} GROUP BY {', '.join(fields)}")
    found = {e for (e,) in con.execute(query).fetchall()}
    con.close()
    return found


def test_every_rule_finds_what_a_plain_scan_finds() -> None:
    table = rules.records_table(positives_of_all_rules())
    assert len(table.column("event_source").unique()) > 10
    con = rules.connect(table)
    per_event = [r.model_copy(update={"threshold": None}) for r in RULES]
    learned = rules.MemoryBaselines(since=datetime(2000, 1, 1, tzinfo=UTC))
    result = rules.evaluate(con, per_event, baselines=learned)
    assert not rules.evaluate(con, [r for r in RULES if r.threshold]).errors  # windows over the regrouped batch
    con.close()
    assert not result.errors
    got: dict[str, set[str]] = {}
    for m in result.matches:
        got.setdefault(m.rule.id, set()).add(m.event["event_id"])
    for rule in per_event:
        assert got.get(rule.id, set()) == plain_scan(table, rule), rule.id


@pytest.mark.parametrize(("condition", "sources"), [
    ("event_source = 'iam.amazonaws.com' AND event_name = 'CreateUser'", {"iam.amazonaws.com"}),
    ("event_source IN ('s3.amazonaws.com', 'kms.amazonaws.com') AND (read_only OR 'kms.amazonaws.com' = event_source)",
     {"s3.amazonaws.com", "kms.amazonaws.com"}),
    ("event_source IN ('s3.amazonaws.com', 'kms.amazonaws.com') AND ('kms.amazonaws.com' = event_source AND read_only)",
     {"kms.amazonaws.com"}),
    ("event_source = 'iam.amazonaws.com' OR event_name = 'ConsoleLogin'", None),
    ("lower(event_source) = 'iam.amazonaws.com'", None),
    ("NOT event_source = 'iam.amazonaws.com'", None),
    ("event_name = 'ConsoleLogin'", None),
])
def test_sources_are_read_from_top_level_conjuncts_only(condition: str, sources: set[str] | None) -> None:
    assert rules.rule_sources([condition]) == [None if sources is None else frozenset(sources)]


def test_threshold_counts_history_but_alerts_only_on_new_events() -> None:
    rule = next(r for r in RULES if r.id == "trailhouse.console-login-failures")
    recs = []
    for ex in rule.tests.positive:
        recs.extend(rules.example_records(ex, f"engine/{ex.name}"))
    table = rules.records_table(recs).sort_by("event_time")
    old, new = table.slice(0, table.num_rows - 1), table.slice(table.num_rows - 1)
    # The last failure crosses the threshold only with the earlier ones counted as history.
    assert not rules.evaluate(rules.connect(new), [rule]).matches
    crossed = rules.evaluate(rules.connect(new, old), [rule]).matches
    assert [m.event["event_id"] for m in crossed] == new.column("event_id").to_pylist()
    # History that overlaps the batch counts each event once.
    assert len(rules.evaluate(rules.connect(table, table), [rule]).matches) == len(
        rules.evaluate(rules.connect(table), [rule]).matches)


def test_examples_evaluated_together_are_judged_each_on_its_own_events() -> None:
    """rules.test_rules evaluates the examples of many rules in one connection: an event of one
    rule's example that another rule matches must not count for that other rule's examples."""
    from trailhouse.alerting.rules import Example, Examples, Rule

    def rule(rid: str, condition: str, pos: dict, neg: dict) -> Rule:
        return Rule(id=rid, title=rid, severity="low", condition=condition,
                    tests=Examples(positive=[Example(name="pos", event=pos)], negative=[Example(name="neg", event=neg)]))

    a = rule("t.a", "event_name = 'DeleteTrail'", {"eventName": "DeleteTrail"}, {"eventName": "StopLogging"})
    # b matches both of a's examples' events, and a's positive matches nothing of b's negative.
    b = rule("t.b", "event_name IN ('DeleteTrail', 'StopLogging')", {"eventName": "StopLogging"},
             {"eventName": "CreateTrail"})
    broken = rule("t.broken", "CAST(event_name AS INTEGER) = 1", {"eventName": "X"}, {"eventName": "Y"})
    together = rules.test_rules([a, b, broken])
    alone = [r for x in (a, b, broken) for r in rules.test_rules([x])]
    assert [(r.rule_id, r.example, r.fired, bool(r.error)) for r in together] == \
           [(r.rule_id, r.example, r.fired, bool(r.error)) for r in alone]
    assert [(r.rule_id, r.example, r.ok) for r in together[:4]] == [
        ("t.a", "pos", True), ("t.a", "neg", True), ("t.b", "pos", True), ("t.b", "neg", True)]
    assert all(r.error for r in together[4:]), "a failing rule's examples carry its error"


def test_a_distinct_threshold_counts_different_values_not_events() -> None:
    """threshold.distinct: five failures of one user stay quiet; three users within the window
    fire at the third; a third user outside the window does not; nulls do not count."""
    from datetime import UTC, datetime, timedelta

    from trailhouse.alerting.rules import Rule, Threshold

    rule = Rule(id="t.spray", title="spray", severity="low", builtin=False,
                condition="event_name = 'ConsoleLogin' AND error_message = 'Failed authentication'",
                threshold=Threshold(count=3, window_minutes=10, group_by=["source_ip_address"], distinct="user_name"))
    t0 = datetime(2026, 11, 20, 12, tzinfo=UTC)

    def fail(i: int, minutes: int, user: str | None, ip: str = "203.0.113.9") -> dict:
        return {**rules.BASE_RECORD, "eventID": f"e{i}", "eventName": "ConsoleLogin",
               "errorMessage": "Failed authentication", "sourceIPAddress": ip,
               "eventTime": (t0 + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ"),
               "userIdentity": {"type": "IAMUser", "accountId": "111122223333", **({"userName": user} if user else {})}}

    def fired(recs: list[dict]) -> list[str]:
        con = rules.connect(rules.records_table(recs))
        ev = rules.evaluate(con, [rule])
        con.close()
        return sorted(m.event["event_id"] for m in ev.matches)

    assert fired([fail(i, i, "alice") for i in range(5)]) == []
    assert fired([fail(0, 0, "alice"), fail(1, 1, None), fail(2, 2, "bob"), fail(3, 3, "alice"), fail(4, 4, "carol")]) == ["e4"]
    assert fired([fail(0, 0, "alice"), fail(1, 1, "bob"), fail(2, 30, "carol")]) == []
    assert fired([fail(0, 0, "alice"), fail(1, 1, "bob"), fail(2, 2, "carol", ip="198.51.100.7")]) == []
    with pytest.raises(ValueError, match="distinct"):  # a group counts one value of its own column
        Rule(id="t.bad", title="bad", severity="low", condition="TRUE", builtin=False,
             threshold=Threshold(count=3, window_minutes=10, group_by=["user_name"], distinct="user_name"))
