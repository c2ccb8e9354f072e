"""Alerts: one per rule, dedup key and period with a count; idempotent storage; lifecycle with who and when."""

from __future__ import annotations

from pathlib import Path

import pytest

from trailhouse.alerting import alerts, rules
from trailhouse.alerting.roles import Actor, Forbidden
from trailhouse.db import appdb

# A built-in rule with an hourly window, so that one test day holds several periods.
RULE = next(r for r in rules.builtin_rules() if r.id == "trailhouse.sg-open-to-world").model_copy(
    update={"dedup": rules.Dedup(fields=["account_id", "principal"], period_minutes=60)})
WORLD = {"eventName": "AuthorizeSecurityGroupIngress", "readOnly": False,
         "requestParameters": {"ipPermissions": {"items": [{"ipRanges": {"items": [{"cidrIp": "0.0.0.0/0"}]}}]}}}


def matches(times: list[str], principal: str = "alice") -> list[rules.Match]:
    recs = []
    for i, t in enumerate(times):
        rec = rules._merge(dict(rules.BASE_RECORD), dict(WORLD))
        rec.update(eventID=f"{principal}-{i}", eventTime=t)
        rec["userIdentity"] = {**rec["userIdentity"], "arn": f"arn:aws:iam::111122223333:user/{principal}"}
        recs.append(rec)
    return rules.evaluate(rules.connect(rules.records_table(recs)), [RULE]).matches


@pytest.fixture
def eng(tmp_path: Path):  # noqa: ANN201
    return appdb.engine(f"sqlite:///{tmp_path / 'app.db'}")


def test_dedup_by_key_and_period_with_count_and_idempotent_retry(eng) -> None:  # noqa: ANN001
    # Three events in one hour by alice, one the next hour, one by bob: three alerts.
    found = matches(["2026-11-20T10:01:00Z", "2026-11-20T10:20:00Z", "2026-11-20T10:59:00Z", "2026-11-20T11:05:00Z"])
    found += matches(["2026-11-20T10:30:00Z"], principal="bob")
    created = alerts.store(eng, found, mav="m", run_id="r1", notify=True)
    assert len(created) == 3
    again = alerts.store(eng, found, mav="m", run_id="r1", notify=True)  # the task retried
    assert again == created
    rows = {(r["principal"].rsplit("/", 1)[-1], r["count"]) for r in alerts.query(eng)}
    assert rows == {("alice", 3), ("alice", 1), ("bob", 1)}
    first = min(alerts.query(eng, rule=RULE.id), key=lambda r: r["first_event_time"])
    assert alerts.event_ids(eng, first["id"]) == ["alice-0", "alice-1", "alice-2"]
    # A later run adding an event to an existing alert does not report it as new.
    later = matches(["2026-11-20T10:45:00Z"])
    later[0].event["event_id"] = "alice-late"
    assert alerts.store(eng, later, mav="m", run_id="r2", notify=True) == []
    assert alerts.get(eng, first["id"])["count"] == 4


ADA = Actor("ada", is_admin=True, accounts=frozenset())


def test_lifecycle_records_who_and_when(eng) -> None:  # noqa: ANN001
    (alert_id,) = alerts.store(eng, matches(["2026-11-20T10:01:00Z"]), mav="m", run_id="r1", notify=True)
    olivia = Actor("olivia", is_admin=False, accounts=frozenset({alerts.get(eng, alert_id)["account_id"]}))
    acked = alerts.set_status(eng, alert_id, "acknowledged", actor=olivia)
    assert (acked["status"], acked["status_by"]) == ("acknowledged", "olivia") and acked["status_at"] is not None
    assert alerts.set_status(eng, alert_id, "resolved", actor=ADA)["status"] == "resolved"
    with pytest.raises(ValueError):
        alerts.set_status(eng, alert_id, "deleted", actor=ADA)
    with pytest.raises(LookupError):
        alerts.set_status(eng, 999, "resolved", actor=ADA)


def test_owners_change_only_alerts_of_their_own_accounts(eng) -> None:  # noqa: ANN001
    (alert_id,) = alerts.store(eng, matches(["2026-11-20T10:01:00Z"]), mav="m", run_id="r1", notify=True)
    account = alerts.get(eng, alert_id)["account_id"]
    other = Actor("oscar", is_admin=False, accounts=frozenset({"999988887777"}))
    for status in ("acknowledged", "resolved", "open"):
        with pytest.raises(Forbidden, match=f"alert {alert_id} is about account {account}, which 'oscar' does not own"):
            alerts.set_status(eng, alert_id, status, actor=other)
    assert alerts.get(eng, alert_id)["status"] == "open" and alerts.get(eng, alert_id)["status_by"] is None
    assert alerts.may_act(ADA, alerts.get(eng, alert_id)) and not alerts.may_act(other, alerts.get(eng, alert_id))
    # An unknown alert is still "no such alert" for an owner, not a refusal that names nothing.
    with pytest.raises(LookupError):
        alerts.set_status(eng, 999, "resolved", actor=other)
