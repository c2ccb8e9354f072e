"""`trailhouse rules eval`, `rules test`, `users grant` and `alerts` as a rule author and responder use them."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import msgspec
import pytest

from trailhouse.alerting import rules
from trailhouse.cli import main as cli

# Threshold rules whose condition a plain read call meets: eval lists their condition
# matches per event, and fires only when the window's count is crossed (its own line).
BURSTS = {r.id for r in rules.builtin_rules() if r.threshold}

WORLD = {"eventName": "AuthorizeSecurityGroupIngress", "readOnly": False,
         "requestParameters": {"ipPermissions": {"items": [{"ipRanges": {"items": [{"cidrIp": "0.0.0.0/0"}]}}]}}}
FAIL = {"eventSource": "signin.amazonaws.com", "eventName": "ConsoleLogin", "eventType": "AwsConsoleSignIn",
        "errorMessage": "Failed authentication", "responseElements": {"ConsoleLogin": "Failure"}}


def _event(i: int, over: dict) -> dict:
    rec = rules._merge(json.loads(json.dumps(rules.BASE_RECORD)), json.loads(json.dumps(over)))
    rec["eventID"] = f"ev-{i}"
    rec["eventTime"] = f"2026-11-20T10:0{i}:00Z"
    return rec


def test_rules_eval_on_a_delivery_file_and_json_lines(th_home: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    delivery = tmp_path / "x.json.gz"
    delivery.write_bytes(gzip.compress(msgspec.json.encode({"Records": [_event(0, WORLD), _event(1, {})]})))
    lines = tmp_path / "fails.jsonl"
    lines.write_text("\n".join(json.dumps(_event(i, FAIL)) for i in range(2, 8)) + "\n")
    assert cli.main(["rules", "eval", str(delivery), str(lines)]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    per_event = {o["event_id"]: o["rules"] for o in out if "event_id" in o}
    assert "trailhouse.sg-open-to-world" in per_event["ev-0"]
    assert set(per_event["ev-1"]) <= BURSTS
    # Each failed login meets the threshold rule's condition; the crossing is its own line.
    assert all("trailhouse.console-login-failures" in per_event[f"ev-{i}"] for i in range(2, 8))
    crossed = [o for o in out if o.get("threshold_crossed") == "trailhouse.console-login-failures"]
    assert crossed and set(crossed[0]["event_ids"]) <= {f"ev-{i}" for i in range(6, 8)}


def test_rules_eval_on_a_json_array_of_events(th_home: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    # Stratus Red Team's detonation logs and console exports are JSON arrays of events.
    listed = tmp_path / "detonation.json"
    listed.write_text(json.dumps([_event(0, WORLD), _event(1, {})], indent=2))
    assert cli.main(["rules", "eval", str(listed)]) == 0
    per_event = {o["event_id"]: o["rules"] for o in map(json.loads, capsys.readouterr().out.splitlines())}
    assert "trailhouse.sg-open-to-world" in per_event["ev-0"] and set(per_event["ev-1"]) <= BURSTS
    listed.write_text('[{"eventID": "a"}, 3]')
    assert cli.main(["rules", "eval", str(listed)]) == 2
    assert "event objects only" in capsys.readouterr().err


def test_rules_eval_names_a_bad_line(th_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"eventID": "a"}\n{not json\n')
    assert cli.main(["rules", "eval", str(bad)]) == 2
    assert "bad.jsonl:2" in capsys.readouterr().err


def test_rules_test_passes_on_the_builtin_packs(th_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["rules", "test"]) == 0
    assert " 0 failed" in capsys.readouterr().out


def test_owner_cannot_add_a_foreign_rule_from_the_cli(th_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["users", "grant", "olivia", "--owner", "111122223333"]) == 0
    assert cli.main(["rules", "add", "--as", "olivia", "--id", "olivia-x", "--title", "x", "--severity", "low",
                     "--condition", "event_name = 'DeleteBucket'", "--accounts", "111122223333,444455556666"]) == 2
    assert "444455556666" in capsys.readouterr().err
    assert cli.main(["rules", "add", "--as", "olivia", "--id", "olivia-x", "--title", "x", "--severity", "low",
                     "--condition", "read_csv('/etc/passwd') IS NOT NULL", "--accounts", "111122223333"]) == 2
    assert "read_csv" in capsys.readouterr().err
    assert cli.main(["rules", "add", "--as", "olivia", "--id", "olivia-x", "--title", "x", "--severity", "low",
                     "--condition", "event_name = 'DeleteBucket'", "--accounts", "111122223333"]) == 0
    assert cli.main(["rules", "list", "--json"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert {"id": "olivia-x", "scope": "111122223333"}.items() <= next(r for r in listed if r["id"] == "olivia-x").items()


def test_rules_coverage_prints_the_matrix_and_writes_a_navigator_layer(th_home: Path, tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from trailhouse.alerting import attack, coverage

    layer_path = tmp_path / "layer.json"
    assert cli.main(["rules", "coverage", "--navigator", str(layer_path)]) == 0
    out = capsys.readouterr().out
    cov = coverage.coverage(rules.builtin_rules())
    counts = cov.counts()
    assert f"{counts['tested']} techniques tested" in out and f"{counts['none']} none" in out
    for cell in cov.cells:
        if cell.rules:  # each covered cell is printed with its rules
            assert any(cell.technique in line and cell.rules[0] in line for line in out.splitlines())
    layer = json.loads(layer_path.read_text())
    assert layer["domain"] == "enterprise-attack"
    assert {(t["techniqueID"], t["tactic"]) for t in layer["techniques"]} == {
        (c.technique, c.tactic) for c in cov.cells if c.rules}
    for t in layer["techniques"]:
        assert t["tactic"] in attack.TECHNIQUES[t["techniqueID"]][1]
    assert cli.main(["rules", "coverage", "--json", "--covered"]) == 0
    cells = json.loads(capsys.readouterr().out)["cells"]
    assert all(c["rules"] for c in cells)


def test_rules_new_writes_a_skeleton_that_passes_its_examples(th_home: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["rules", "new", "trailhouse.my-first-rule", "--dir", str(tmp_path),
                     "--event-source", "iam.amazonaws.com", "--event-name", "CreateUser"]) == 0
    path = tmp_path / "trailhouse.my-first-rule.yaml"
    rule = rules.load_rule_file(path)
    assert rule.condition.count("CreateUser") == 1 and "iam.amazonaws.com" in rule.condition
    results = rules.test_rule(rule)
    assert [r.expected for r in results] == [True, False] and all(r.ok for r in results)
    assert cli.main(["rules", "new", "trailhouse.my-first-rule", "--dir", str(tmp_path)]) == 2
    assert "exists already" in capsys.readouterr().err
    assert cli.main(["rules", "new", "mine.rule", "--dir", str(tmp_path)]) == 2
    assert "trailhouse.<kebab-name>" in capsys.readouterr().err


def test_alerts_ack_resolve_reopen_only_by_the_accounts_owners_or_admins(th_home: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from trailhouse.alerting import alerts
    from trailhouse.deployment import Deployment

    rule = next(r for r in rules.builtin_rules() if r.id == "trailhouse.sg-open-to-world")
    found = rules.evaluate(rules.connect(rules.records_table([_event(0, WORLD)])), [rule]).matches
    eng = Deployment().engine
    (alert_id,) = alerts.store(eng, found, mav="m", run_id="r1", notify=True)  # account 111122223333
    assert cli.main(["users", "grant", "oscar", "--owner", "444455556666"]) == 0
    assert cli.main(["users", "grant", "olivia", "--owner", "111122223333"]) == 0
    assert cli.main(["users", "grant", "ada", "--admin"]) == 0
    capsys.readouterr()
    for action in ("ack", "resolve", "reopen"):
        assert cli.main(["alerts", action, str(alert_id), "--as", "oscar"]) == 2
        assert (f"alert {alert_id} is about account 111122223333, which 'oscar' does not own"
                in capsys.readouterr().err)
    assert alerts.get(eng, alert_id)["status_by"] is None
    assert cli.main(["alerts", "ack", str(alert_id), "--as", "olivia"]) == 0
    assert f"alert {alert_id} is acknowledged (by olivia" in capsys.readouterr().out
    assert cli.main(["alerts", "resolve", str(alert_id), "--as", "ada"]) == 0
    assert alerts.get(eng, alert_id)["status"] == "resolved"


STALL = "regexp_matches(coalesce(user_agent,''), '((((a*)*)*)*){1000}b')"


def test_a_runaway_regular_expression_is_refused_when_a_rule_is_added(th_home: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["users", "grant", "olivia", "--owner", "111122223333"]) == 0
    assert cli.main(["rules", "add", "--as", "olivia", "--id", "olivia-stall", "--title", "x", "--severity", "low",
                     "--condition", STALL, "--accounts", "111122223333"]) == 2
    err = capsys.readouterr().err
    assert "nested quantifier" in err and "'((((a*)*)*)*){1000}b'" in err
    assert cli.main(["rules", "add", "--as", "olivia", "--id", "olivia-ok", "--title", "x", "--severity", "low",
                     "--condition", "event_name = 'x'", "--accounts", "111122223333"]) == 0
    assert cli.main(["rules", "update", "olivia-ok", "--as", "olivia", "--condition",
                     "regexp_matches(user_agent, '(aws)\\1')"]) == 2
    assert "backreferences" in capsys.readouterr().err


def test_rules_eval_names_a_failing_rules_column_not_the_value(th_home: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["users", "grant", "olivia", "--owner", "111122223333"]) == 0
    assert cli.main(["rules", "add", "--as", "olivia", "--id", "olivia-cast", "--title", "x", "--severity", "low",
                     "--condition", "CAST(user_agent AS INTEGER) > 0", "--accounts", "111122223333"]) == 0
    events = tmp_path / "e.jsonl"
    events.write_text(json.dumps(_event(0, {"userAgent": "agent-with-SECRET-token-abc123"})) + "\n")
    capsys.readouterr()
    assert cli.main(["rules", "eval", str(events), "--rule", "olivia-cast"]) == 0
    err = capsys.readouterr().err
    assert "rule olivia-cast: error:" in err and "column user_agent" in err and "INT32" in err
    assert "SECRET" not in err
