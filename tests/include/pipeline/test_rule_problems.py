"""evaluate_rules with rules that fail, match everything or were stored before the regex check:
each is recorded on the run (never with an event's value), shown to its owner and administrators,
and every other rule's alerts are stored."""

from __future__ import annotations

import json
import logging
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from trailhouse.alerting import roles, rulebook
from trailhouse.cli import main as cli
from trailhouse.config import Mav, save_mav
from trailhouse.db import appdb
from trailhouse.deployment import Deployment
from trailhouse.dev.synth.files import write_to_dir
from trailhouse.dev.synth.world import SynthSpec, account_ids
from trailhouse.pipeline import steps

SPEC = SynthSpec(seed=11, accounts=2, days=1, end=date(2026, 11, 20), files_per_region_day=3,
                 events_per_file=40, regions=("us-east-1",))
RUN = "manual__limits"
CAP = 5


@pytest.fixture
def loaded(th_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Deployment, Mav]:
    monkeypatch.setenv("TRAILHOUSE_RULE_MAX_MATCHES", str(CAP))
    write_to_dir(SPEC, tmp_path / "bucket")
    dep = Deployment()
    mav = Mav(name="limits", path=str(tmp_path / "bucket"), lookback_hours=48)
    save_mav(dep.settings.mav_dir, mav)
    start, end = datetime(2026, 11, 20, tzinfo=UTC), datetime(2026, 11, 21, tzinfo=UTC)
    batches = steps.discover_step(dep, mav, RUN, start, end)
    steps.commit_step(dep, mav, RUN, [steps.transform_step(dep, mav, RUN, b) for b in batches])
    own, other = account_ids(SPEC)
    olivia = roles.grant(dep.engine, "olivia", accounts=[own])
    roles.grant(dep.engine, "oscar", accounts=[other])
    roles.grant(dep.engine, "ada", admin=True)
    rulebook.create_rule(dep.engine, olivia, rule_id="olivia-cast", title="Numeric agents", severity="low",
                         condition="CAST(user_agent AS INTEGER) > 0", accounts=[own])
    rulebook.create_rule(dep.engine, olivia, rule_id="olivia-all", title="Everything", severity="low",
                         condition="event_name IS NOT NULL", accounts=[own])
    # The condition, saved before the regex check existed.
    now = appdb.now()
    with dep.engine.begin() as conn:
        conn.execute(appdb.custom_rules.insert().values(
            id="olivia-stall", title="Stall", description="", severity="low", owner="olivia", enabled=True,
            condition="regexp_matches(coalesce(user_agent,''), '((((a*)*)*)*){1000}b')", scope_accounts=own,
            dedup_fields="", dedup_period_minutes=60, created_at=now, updated_at=now, updated_by="olivia"))
    return dep, mav


def _agents(dep: Deployment) -> set[str]:
    con = dep.warehouse.duckdb()
    try:
        return {a for (a,) in con.sql("SELECT DISTINCT user_agent FROM cloudtrail_events "
                                      "WHERE user_agent IS NOT NULL").fetchall()}
    finally:
        con.close()


def test_rule_problems_are_recorded_on_the_run_without_event_values(loaded: tuple[Deployment, Mav],
                                                                    caplog: pytest.LogCaptureFixture,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    dep, mav = loaded
    with caplog.at_level(logging.INFO):
        out = steps.evaluate_step(dep, mav, RUN)
    problems = {p["rule_id"]: p for p in out["rule_problems"]}
    assert problems["olivia-cast"]["kind"] == "error" and "column user_agent" in problems["olivia-cast"]["detail"]
    assert problems["olivia-all"]["kind"] == "truncated" and f"more than {CAP} events" in problems["olivia-all"]["detail"]
    assert problems["olivia-stall"]["kind"] == "refused" and "nested quantifier" in problems["olivia-stall"]["detail"]
    assert set(out["rule_errors"]) >= {"olivia-cast", "olivia-stall"} and "olivia-all" not in out["rule_errors"]

    # The other rules ran: their alerts, and the first CAP matches of the truncated one, are stored.
    with dep.engine.connect() as conn:
        by_rule = dict(conn.execute(sa.select(appdb.alerts.c.rule_id, sa.func.sum(appdb.alerts.c.count))
                                    .group_by(appdb.alerts.c.rule_id)).all())
        stored = [dict(r) for r in conn.execute(sa.select(appdb.rule_problems)).mappings()]
    assert by_rule.get("olivia-all") == CAP
    assert {r for r in by_rule if not r.startswith("olivia-")}, "built-in rules should still raise alerts"
    assert {(r["run_id"], r["rule_id"], r["kind"]) for r in stored} >= {
        (RUN, "olivia-cast", "error"), (RUN, "olivia-all", "truncated"), (RUN, "olivia-stall", "refused")}

    # No user agent (what CAST quoted) in the XCom value, the task log or the app database.
    agents = _agents(dep)
    assert agents
    leaked = [a for a in agents if a in json.dumps(out) or a in caplog.text or a in json.dumps(stored, default=str)]
    assert leaked == []
    assert "rule olivia-cast: error: ConversionException" in caplog.text

    # The run's summary (`trailhouse run` prints it) and `trailhouse status` show them.
    summary = {p["rule_id"]: p["kind"] for p in steps.summary(dep, mav, RUN)["rule_problems"]}
    assert {"olivia-cast": "error", "olivia-all": "truncated", "olivia-stall": "refused"}.items() <= summary.items()
    capsys.readouterr()
    assert cli.main(["status", "limits"]) == 0
    assert f"rule problem in {RUN}: olivia-cast (error)" in capsys.readouterr().out


def _problems_cli(capsys: pytest.CaptureFixture[str], *args: str) -> set[tuple[str, str]]:
    capsys.readouterr()
    assert cli.main(["rules", "problems", "--json", *args]) == 0
    return {(r["rule_id"], r["kind"]) for r in map(json.loads, capsys.readouterr().out.splitlines())}


def test_problems_are_shown_to_the_rules_owner_and_administrators(loaded: tuple[Deployment, Mav],
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    dep, mav = loaded
    steps.evaluate_step(dep, mav, RUN)
    # A built-in rule stopped in another run: administrators' business, not an owner's.
    appdb.record_rule_problems(dep.engine, mav.name, "manual__other", [
        {"rule_id": "cis.root-account-usage", "kind": "timeout", "detail": "took longer than its time budget",
         "owner": None}])
    olivias = {("olivia-cast", "error"), ("olivia-all", "truncated"), ("olivia-stall", "refused")}
    mine = _problems_cli(capsys, "--as", "olivia")
    assert mine == olivias  # her rules' problems, not the built-ins' (administrators' business)
    assert _problems_cli(capsys, "--as", "oscar") == set()
    everything = _problems_cli(capsys, "--as", "ada")
    assert everything == olivias | {("cis.root-account-usage", "timeout")}
    assert _problems_cli(capsys, "--rule", "olivia-cast") == {("olivia-cast", "error")}
    capsys.readouterr()
    assert cli.main(["rules", "list", "--json"]) == 0
    listed = {r["id"]: r for r in map(json.loads, capsys.readouterr().out.splitlines()) if r}
    assert listed["olivia-cast"]["problem"] == "error" and listed["olivia-all"]["problem"] == "truncated"
