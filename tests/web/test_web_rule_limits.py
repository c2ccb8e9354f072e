"""Rule limits in the web UI: runaway regular expressions refused on save and preview, and a rule's
recorded problems shown to its owner and administrators only (docs/rules.md, "Limits per rule")."""

from __future__ import annotations

from typing import Any

from webhelpers import MOUNT, Web

from trailhouse import settings
from trailhouse.db import appdb

STALL = "regexp_matches(coalesce(user_agent,''), '((((a*)*)*)*){1000}b')"


def test_a_runaway_regular_expression_is_refused_on_save_and_preview(client: Any, auth: Any, web: Web) -> None:
    rule = {"id": "olivia.stall", "title": "Stall", "severity": "low", "condition": STALL, "accounts": [web.owned]}
    r = client.post(f"{MOUNT}/api/rules", json=rule, headers=auth("olivia"))
    assert r.status_code == 400 and "nested quantifier" in r.json()["detail"]
    r = client.post(f"{MOUNT}/api/rules/preview", json={"condition": STALL}, headers=auth("olivia"))
    assert r.status_code == 400 and "nested quantifier" in r.json()["detail"]
    r = client.post(f"{MOUNT}/api/rules/preview", json={"condition": "user_agent ~ 'x{1000}'"}, headers=auth("ada"))
    assert r.status_code == 400 and "above 100" in r.json()["detail"]


def test_rule_problems_are_shown_to_the_owner_and_administrators(client: Any, auth: Any, web: Web) -> None:
    rule = {"id": "olivia.agents", "title": "Agents", "severity": "low", "accounts": [web.owned],
            "condition": "starts_with(user_agent, 'aws-cli')"}
    assert client.post(f"{MOUNT}/api/rules", json=rule, headers=auth("olivia")).status_code == 201
    eng = appdb.engine(settings.load().app_db_url)
    appdb.record_rule_problems(eng, "web", "manual__problems", [
        {"rule_id": "olivia.agents", "kind": "timeout", "owner": "olivia",
         "detail": "took longer than its time budget of 30 s (TRAILHOUSE_RULE_TIME_BUDGET) and was stopped"},
        {"rule_id": "cis.root-account-usage", "kind": "timeout", "owner": None,
         "detail": "took longer than its time budget of 30 s (TRAILHOUSE_RULE_TIME_BUDGET) and was stopped"}])
    for user in ("olivia", "ada"):
        got = client.get(f"{MOUNT}/api/rules/olivia.agents", headers=auth(user)).json()["problems"]
        assert [(p["run_id"], p["kind"]) for p in got] == [("manual__problems", "timeout")], user
        page = client.get(f"{MOUNT}/rules/olivia.agents", headers=auth(user)).text
        assert "Problems in recent runs" in page and "stopped: time budget" in page
    builtin = f"{MOUNT}/api/rules/cis.root-account-usage"
    assert client.get(builtin, headers=auth("olivia")).json()["problems"] == []
    assert [p["kind"] for p in client.get(builtin, headers=auth("ada")).json()["problems"]] == ["timeout"]
    assert "Problems in recent runs" not in client.get(f"{MOUNT}/rules/cis.root-account-usage",
                                                       headers=auth("olivia")).text
