"""Custom rules: conditions parsed and refused when unsafe; scopes enforced for owners; admins may do all."""

from __future__ import annotations

from pathlib import Path

import pytest

from trailhouse.alerting import rulebook, rules
from trailhouse.alerting.roles import Forbidden, actor, grant
from trailhouse.db import appdb

OWN, OTHER = "111122223333", "444455556666"


@pytest.fixture(params=["sqlite", "postgresql"])
def eng(request: pytest.FixtureRequest, tmp_path: Path):  # noqa: ANN201
    if request.param == "sqlite":
        return appdb.engine(f"sqlite:///{tmp_path / 'app.db'}")
    return appdb.engine(request.getfixturevalue("pg_url"))


@pytest.mark.parametrize(
    ("condition", "needle"),
    [
        ("read_csv('/etc/passwd') IS NOT NULL", "read_csv"),
        ("event_name = 'x'; DROP TABLE alerts", "';'"),
        ("event_name = 'x' -- and a comment", "comments"),
        ("event_name = 'x' /* hidden */", "comments"),
        ("event_name = 'x' UNION SELECT password FROM connection", "UNION"),
        ("event_name IN (SELECT event_name FROM cloudtrail_events)", "SUBQUERY"),
        ("COPY cloudtrail_events TO '/tmp/x.csv'", "COPY"),
        ("ATTACH '/tmp/evil.db' AS evil", "ATTACH"),
        ("event_name = getenv('HOME')", "getenv"),
        ("secret_column = 1", "unknown column"),
        ("t.event_name = 'x'", "qualified"),
        ("", "empty"),
        ("1 + 1", "boolean"),
    ],
)
def test_unsafe_conditions_are_refused_with_a_reason(condition: str, needle: str) -> None:
    with pytest.raises(rules.UnsafeCondition, match=needle):
        rules.validate_condition(condition)


def test_engine_cannot_read_files_even_with_a_trusted_condition(tmp_path: Path) -> None:
    secret = tmp_path / "secret.csv"
    secret.write_text("a\n1\n")
    rule = rules.Rule(id="x-reader", title="t", severity="low", condition=f"(SELECT count(*) FROM read_csv('{secret}')) > 0")
    con = rules.connect(rules.records_table([dict(rules.BASE_RECORD)]))
    result = rules.evaluate(con, [rule])
    assert result.matches == []
    assert "x-reader" in result.errors and "permission" in result.errors["x-reader"].lower()


def test_owner_creates_rules_only_for_own_accounts(eng) -> None:  # noqa: ANN001
    owner = grant(eng, "olivia", accounts=[OWN])
    rule = rulebook.create_rule(eng, owner, rule_id="olivia-deletes", title="Deletes", severity="medium",
                                condition="starts_with(event_name, 'Delete')", accounts=[OWN])
    assert rule.scope_accounts == [OWN]
    with pytest.raises(Forbidden, match=OTHER):
        rulebook.create_rule(eng, owner, rule_id="olivia-foreign", title="x", severity="low",
                             condition="event_name = 'x'", accounts=[OWN, OTHER])
    with pytest.raises(Forbidden, match="every account"):
        rulebook.create_rule(eng, owner, rule_id="olivia-all", title="x", severity="low",
                             condition="event_name = 'x'", accounts=[])
    # Widening the scope of an existing rule is refused like creating one.
    with pytest.raises(Forbidden, match=OTHER):
        rulebook.update_rule(eng, owner, "olivia-deletes", accounts=[OWN, OTHER])
    # Another owner may not touch it; an administrator may.
    stranger = grant(eng, "sam", accounts=[OTHER])
    with pytest.raises(Forbidden):
        rulebook.update_rule(eng, stranger, "olivia-deletes", title="mine now")
    with pytest.raises(Forbidden):
        rulebook.delete_rule(eng, stranger, "olivia-deletes")
    admin = grant(eng, "ada", admin=True)
    rulebook.update_rule(eng, admin, "olivia-deletes", accounts=[])
    assert [r.scope_accounts for r in rulebook.all_rules(eng) if r.id == "olivia-deletes"] == [[]]
    with pytest.raises(Forbidden, match="security administrators"):
        rulebook.set_enabled(eng, owner, "trailhouse.sg-open-to-world", False)
    rulebook.set_enabled(eng, admin, "trailhouse.sg-open-to-world", False)
    assert "trailhouse.sg-open-to-world" not in {r.id for r in rulebook.all_rules(eng, enabled_only=True)}


def test_scope_is_enforced_at_evaluation_not_trusted_from_the_condition(eng) -> None:  # noqa: ANN001
    owner = grant(eng, "olivia", accounts=[OWN])
    rulebook.create_rule(eng, owner, rule_id="olivia-any-delete", title="Deletes", severity="low",
                         condition="starts_with(event_name, 'Delete') OR account_id = '444455556666'", accounts=[OWN])
    base = rules.BASE_RECORD
    events = [
        {**base, "eventID": "own", "eventName": "DeleteBucket", "recipientAccountId": OWN},
        {**base, "eventID": "foreign", "eventName": "DeleteBucket", "recipientAccountId": OTHER},
    ]
    rule = next(r for r in rulebook.all_rules(eng) if r.id == "olivia-any-delete")
    result = rules.evaluate(rules.connect(rules.records_table(events)), [rule])
    assert [m.event["event_id"] for m in result.matches] == ["own"]


def test_no_role_no_access(eng) -> None:  # noqa: ANN001
    with pytest.raises(Forbidden, match="users grant mallory"):
        actor(eng, "mallory")


def test_a_custom_rule_keeps_its_attack_mapping_examples_and_origin(eng) -> None:  # noqa: ANN001
    grant(eng, "ada", admin=True)
    spec = {"attack": [{"tactic": "defense-evasion", "technique": "T1562.008"}], "tags": ["logging"],
            "references": ["https://example.org/rule"], "runbook": "Check who stopped the trail.",
            "origin": "sigma:0f1e (trail.yml)",
            "tests": {"positive": [{"name": "stop", "event": {"eventSource": "cloudtrail.amazonaws.com",
                                                               "eventName": "StopLogging"}}],
                      "negative": [{"name": "start", "event": {"eventSource": "cloudtrail.amazonaws.com",
                                                                "eventName": "StartLogging"}}]}}
    rulebook.create_rule(eng, actor(eng, "ada"), rule_id="sigma.trail-stopped", title="Trail stopped",
                         condition="event_name = 'StopLogging'", severity="high", accounts=[], spec=spec)
    (stored,) = [r for r in rulebook.all_rules(eng) if r.id == "sigma.trail-stopped"]
    assert [(a.tactic, a.technique) for a in stored.attack] == [("defense-evasion", "T1562.008")]
    assert stored.origin == "sigma:0f1e (trail.yml)" and stored.runbook and stored.tags == ["logging"]
    assert [r.ok for r in rules.test_rule(stored)] == [True, True]
    with pytest.raises(ValueError, match="T9999"):
        rulebook.create_rule(eng, actor(eng, "ada"), rule_id="sigma.bad", title="x", condition="error_code IS NOT NULL",
                             severity="low", accounts=[], spec={"attack": [{"tactic": "impact", "technique": "T9999"}]})
