"""new_term rules through the pipeline: the baseline learns from each run's events alone, fires
once per new combination after its learning period, and stays right when files come late,
out of order, or when an evaluation is repeated after a crash."""

from __future__ import annotations

import gzip
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from trailhouse.alerting import baselines, rulebook, rules
from trailhouse.config import Mav, save_mav
from trailhouse.db import appdb
from trailhouse.deployment import Deployment
from trailhouse.dev import hostile
from trailhouse.pipeline import steps

RULE = "trailhouse.first-iam-change-by-principal"
DAY1 = date(2026, 10, 1)
ACCOUNT = "111122223333"


def _key_call(user: str, day: date, n: int = 0) -> dict:
    return hostile.record(
        f"{user}-{day:%m%d}-{n}", f"{day:%Y-%m-%d}T{10 + n:02d}:00:00Z", eventSource="iam.amazonaws.com",
        eventName="CreateAccessKey", readOnly=False, requestParameters={"userName": "svc"},
        userIdentity={"type": "IAMUser", "arn": f"arn:aws:iam::{ACCOUNT}:user/{user}", "accountId": ACCOUNT,
                      "userName": user})


class World:
    """A folder MAV whose runs load whatever was delivered since the last one."""

    def __init__(self, dep: Deployment, bucket: Path) -> None:
        self.dep, self.bucket, self.runs = dep, bucket, 0
        # Look-back over the whole test's history: a late file in an old day folder is still found.
        self.mav = Mav(name="nt", path=str(bucket), lookback_hours=744)
        save_mav(dep.settings.mav_dir, self.mav)

    def deliver(self, folder: date, *recs: dict) -> None:
        d = self.bucket / f"AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/{folder:%Y/%m/%d}"
        d.mkdir(parents=True, exist_ok=True)
        name = f"{ACCOUNT}_CloudTrail_us-east-1_{folder:%Y%m%d}T0000Z_{recs[0]['eventID']}.json.gz"
        (d / name).write_bytes(gzip.compress(hostile.envelope(*recs)))

    def run(self, at: date) -> dict:
        self.runs += 1
        run_id = f"manual__nt{self.runs}"
        end = datetime.combine(at + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
        batches = steps.discover_step(self.dep, self.mav, run_id, end - timedelta(hours=1), end)
        steps.commit_step(self.dep, self.mav, run_id, [steps.transform_step(self.dep, self.mav, run_id, b)
                                                         for b in batches])
        return steps.evaluate_step(self.dep, self.mav, run_id)

    def alerts(self) -> dict[str, tuple[int, str]]:
        """{principal: (count, first event id)} of the rule's alerts."""
        a = appdb.alerts
        with self.dep.engine.connect() as conn:
            rows = conn.execute(sa.select(a.c.principal, a.c.count, a.c.first_event_id)
                                .where(a.c.rule_id == RULE)).all()
        return {p.rsplit("/", 1)[-1]: (c, e) for p, c, e in rows}

    def first_seen(self, user: str) -> datetime:
        rule = next(r for r in rulebook.all_rules(self.dep.engine) if r.id == RULE)
        key = rules.KEY_SEPARATOR.join([f"arn:aws:iam::{ACCOUNT}:user/{user}", "CreateAccessKey"])
        held, _ = baselines.Store(self.dep.engine, self.mav.name).known(str(rule.baseline_id), [key])
        return held[key][0]


@pytest.fixture
def world(th_home: Path, tmp_path: Path) -> World:
    return World(Deployment(), tmp_path / "bucket")


def _day(n: int) -> date:
    return DAY1 + timedelta(days=n - 1)


def test_nothing_fires_while_learning_then_each_new_combination_fires_once(world: World) -> None:
    world.deliver(_day(1), _key_call("bob", _day(1)))
    world.run(_day(1))
    assert world.alerts() == {}  # day 1 of 14: learning

    world.deliver(_day(20), _key_call("alice", _day(20)), _key_call("bob", _day(20)))
    world.run(_day(20))
    assert world.alerts() == {"alice": (1, "alice-1020-0")}  # bob did it on day 1

    world.deliver(_day(21), _key_call("alice", _day(21)))
    world.run(_day(21))
    assert world.alerts() == {"alice": (1, "alice-1020-0")}  # not new any more: no new alert, no new event


def test_a_late_file_from_the_learning_period_keeps_a_later_call_from_looking_new(world: World) -> None:
    world.deliver(_day(1), _key_call("bob", _day(1)))
    world.run(_day(1))
    # carol's day-5 call is delivered late, in the same run as her day-22 one: she was no stranger.
    world.deliver(_day(5), _key_call("carol", _day(5)))
    world.deliver(_day(22), _key_call("carol", _day(22)))
    world.run(_day(22))
    assert "carol" not in world.alerts()
    assert world.first_seen("carol") == datetime(2026, 10, 5, 10, tzinfo=UTC)


def test_a_late_older_sighting_moves_the_first_sighting_back_and_adds_no_alert(world: World) -> None:
    world.deliver(_day(1), _key_call("bob", _day(1)))
    world.run(_day(1))
    world.deliver(_day(23), _key_call("erin", _day(23)))
    world.run(_day(23))
    assert world.alerts() == {"erin": (1, "erin-1023-0")}
    # A file of day 18 (after learning) arrives two days later: the first sighting moves back
    # to it, and it joins erin's one alert rather than raising a second.
    world.deliver(_day(18), _key_call("erin", _day(18)))
    world.run(_day(25))
    assert world.first_seen("erin") == datetime(2026, 10, 18, 10, tzinfo=UTC)
    assert world.alerts() == {"erin": (2, "erin-1023-0")}  # the event that raised it, and now two


def test_an_evaluation_repeated_after_a_crash_fires_nothing_twice(world: World) -> None:
    world.deliver(_day(1), _key_call("bob", _day(1)))
    world.run(_day(1))
    world.deliver(_day(20), _key_call("alice", _day(20)))
    world.run(_day(20))
    # As if the process died after recording the sightings and before marking the run's keys
    # evaluated (the fault point evaluate.after_store): the next evaluation takes them again.
    led = appdb.ledger
    with world.dep.engine.begin() as conn:
        conn.execute(led.update().where(led.c.run_id == "manual__nt2").values(evaluated_at=None))
    again = steps.evaluate_step(world.dep, world.mav, "manual__nt3")
    assert again["events"] == 1
    assert world.alerts() == {"alice": (1, "alice-1020-0")}


def test_the_store_keeps_the_earliest_first_and_the_latest_last_sighting(th_home: Path) -> None:
    import pyarrow as pa

    store = baselines.Store(Deployment().engine, "m")
    t = [datetime(2026, 10, d, tzinfo=UTC) for d in (1, 2, 3, 4)]

    def seen(first: datetime, last: datetime, event: str) -> dict:
        return {"b": pa.table({"_key": ["k"], "first_seen": [first], "first_event_id": [event], "last_seen": [last]})}

    store.record(seen(t[1], t[2], "e2"))
    store.record(seen(t[0], t[1], "e1"))  # an older sighting, delivered late
    store.record(seen(t[2], t[3], "e3"))
    store.record(seen(t[2], t[3], "e3"))  # recorded twice: changes nothing
    assert store.known("b", ["k", "other"]) == ({"k": (t[0], "e1")}, t[0])
    assert store.summary(["b"]) == {"b": {"combinations": 1, "since": t[0], "latest": t[3]}}
    assert baselines.Store(Deployment().engine, "another-mav").known("b", ["k"]) == ({}, None)


def test_rules_with_unknown_or_conflicting_new_term_settings_are_refused() -> None:
    base = {"id": "x.rule", "title": "t", "severity": "low", "condition": "TRUE"}
    with pytest.raises(ValueError, match="new_term.fields: 'no_such_column'"):
        rules.Rule.model_validate({**base, "new_term": {"fields": ["principal", "no_such_column"]}})
    with pytest.raises(ValueError, match="not both"):
        rules.Rule.model_validate({**base, "new_term": {"fields": ["principal"]},
                                   "threshold": {"count": 2, "window_minutes": 5}})
    rule = rules.Rule.model_validate({**base, "new_term": {"fields": ["account_id", "region"]}})
    assert rule.dedup.fields == ["account_id", "region"]  # one alert per combination, for good
    edited = rule.model_copy(update={"condition": "read_only = false"})
    assert edited.baseline_id != rule.baseline_id  # a changed condition learns a new baseline
