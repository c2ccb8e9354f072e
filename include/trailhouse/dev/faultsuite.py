"""The fault-injection suite: kill a MAV run at every step, retry it, compare with a fault-free run;
and hostile input files (trailhouse.dev.hostile) mixed with good ones through one real run.

`python -m trailhouse.dev.faultsuite --out docs/reliability.md` writes the table; `make test` runs
the same scenarios (tests/test_faults.py). Each run is a real `trailhouse run` process: a
fault kills it with SIGKILL, and the retry runs the same interval again as a new DAG run
(what an operator does after a crash). That is stricter than Airflow's own task retry,
which keeps the run id: nothing may depend on the memory of the run that died.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from trailhouse.faults import POINTS

END_DAY = date(2026, 11, 20)
AT = datetime(2026, 11, 21, 6, 0, tzinfo=UTC)


@dataclass
class Snapshot:
    event_ids: list[str] = field(default_factory=list)
    alerts: set[tuple[str, str, int]] = field(default_factory=set)
    messages: list[tuple[str, str]] = field(default_factory=list)  # (recipient, Message-ID)


@dataclass
class Outcome:
    fault: str
    what: str
    killed: bool
    events_lost: int
    events_duplicated: int
    alerts_lost: int
    alerts_duplicated: int
    messages_lost: int
    messages_duplicated: int
    deliveries_repeated: int
    seconds: float

    @property
    def clean(self) -> bool:
        return self.killed and not any((self.events_lost, self.events_duplicated, self.alerts_lost,
                                        self.alerts_duplicated, self.messages_lost, self.messages_duplicated))


@contextmanager
def env_overrides(values: dict[str, str]) -> Iterator[None]:
    """These environment variables set for the block, the old values back afterwards."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class Lab:
    """A synthetic bucket, owners with email, a local SMTP server and a shared Airflow home."""

    def __init__(self, workdir: Path) -> None:
        from trailhouse.dev.synth.files import write_to_dir
        from trailhouse.dev.synth.world import SynthSpec

        self.workdir = workdir
        self.bucket = workdir / "bucket"
        spec = SynthSpec(seed=21, accounts=2, days=2, end=END_DAY, files_per_region_day=4, events_per_file=25,
                               regions=("us-east-1", "eu-west-1"))
        self.written = write_to_dir(spec, self.bucket)
        self.airflow_home = workdir / "airflow"
        self.owners = workdir / "owners.yaml"
        self.mailbox: list[Any] = []
        self._n = 0

    def env(self, scenario: str) -> dict[str, str]:
        home = self.workdir / scenario
        return {
            "TRAILHOUSE_HOME": str(home),
            "TRAILHOUSE_MAV_DIR": str(home / "mavs"),
            "TRAILHOUSE_WAREHOUSE": str(home / "warehouse"),
            "TRAILHOUSE_DB_URL": f"sqlite:///{home / 'trailhouse.db'}",
            "AIRFLOW_HOME": str(self.airflow_home),
            "TRAILHOUSE_OWNERS_FILE": str(self.owners),
        }

    def setup(self, smtp_port: int) -> None:
        from trailhouse.dev.demo import _demo_owners

        self.owners.parent.mkdir(parents=True, exist_ok=True)
        _demo_owners(self.written.accounts, self.workdir)
        code = ("import sys; from trailhouse.airflow_env import store_connection; "
                "store_connection('trailhouse_demo_smtp', '', '', {'from': 'trailhouse@example.com'}, "
                f"conn_type='smtp', host='127.0.0.1', port={smtp_port})")
        subprocess.run([sys.executable, "-c", code], env={**os.environ, **self.env("setup")}, check=True,
                       capture_output=True)

    def run(self, scenario: str, at: datetime, fault: str | None = None) -> int:
        env = {**os.environ, **self.env(scenario)}
        env.pop("TRAILHOUSE_FAULT", None)
        if fault:
            env["TRAILHOUSE_FAULT"] = fault
        mav_dir = Path(env["TRAILHOUSE_MAV_DIR"])
        if not (mav_dir / "lab.yaml").exists():
            from trailhouse.config import Mav, save_mav

            save_mav(mav_dir, Mav(name="lab", path=str(self.bucket), lookback_hours=48))
        proc = subprocess.run([sys.executable, "-m", "trailhouse.cli", "run", "lab", "--json", "--at", at.isoformat()],
                              env=env, capture_output=True, text=True, timeout=300)
        return proc.returncode

    def snapshot(self, scenario: str) -> Snapshot:

        from trailhouse.deployment import Deployment

        with env_overrides(self.env(scenario)):
            dep = Deployment()  # the scenario's own home
            got = snapshot(dep)
            dep.engine.dispose()
        return got


def snapshot(dep: Any) -> Snapshot:
    """The event ids in the deployment's warehouse and its alerts (rule, dedup hash, count)."""
    import sqlalchemy as sa

    from trailhouse.db import appdb

    ids = [r[0] for r in dep.warehouse.duckdb().execute("SELECT event_id FROM cloudtrail_events").fetchall()]
    with dep.engine.connect() as conn:
        a = appdb.alerts.c
        # Row.count is tuple.count: the column must be selected by name.
        alerts = {(rule, dedup, n) for rule, dedup, n in conn.execute(sa.select(a.rule_id, a.dedup_hash, a.count))}
    return Snapshot(ids, alerts)


def compare(base: Snapshot, got: Snapshot, base_msgs: list[tuple[str, str]], msgs: list[tuple[str, str]]) -> dict[str, int]:
    base_ids, ids = set(base.event_ids), set(got.event_ids)
    base_alerts = {(rule, key): count for rule, key, count in base.alerts}
    alerts = {(rule, key): count for rule, key, count in got.alerts}
    # A message is one (recipient, Message-ID). A repeat of the same id is what an
    # at-least-once sender may do after a crash mid-send, and what the receiver drops.
    distinct = set(msgs)
    recipients = [r for r, _ in distinct]
    return {
        "events_lost": len(base_ids - ids),
        "events_duplicated": len(got.event_ids) - len(ids) + len(ids - base_ids),
        "alerts_lost": sum(1 for k in base_alerts if k not in alerts),
        # An extra alert, or an alert counting an event twice.
        "alerts_duplicated": sum(1 for k, n in alerts.items() if k not in base_alerts or n > base_alerts[k]),
        "messages_lost": len({r for r, _ in base_msgs} - set(recipients)),
        "messages_duplicated": len(recipients) - len(set(recipients)),
        "deliveries_repeated": len(msgs) - len(distinct),
    }


WHAT = {
    "transform.after_download": "killed while downloading a batch",
    "transform.before_stage": "killed after parsing, before the staged file was written",
    "commit.before_delta_commit": "killed before the Delta commit",
    "commit.after_delta_commit": "killed after the Delta commit, before the ledger write",
    "commit.after_ledger": "killed after the ledger write, before the run's figures",
    "evaluate.after_store": "killed after alerts were stored, before the task returned",
    "notify.after_plan": "killed after the outbox was planned, before sending",
    "notify.after_send": "killed after the SMTP server accepted a message, before it was marked sent",
}


def run_suite(workdir: Path, points: tuple[str, ...] = POINTS, say: Any = print) -> list[Outcome]:
    from trailhouse.dev.servers import smtp_server

    lab = Lab(workdir)
    outcomes: list[Outcome] = []
    with smtp_server() as (port, mailbox):
        lab.setup(port)

        def messages(since: int) -> list[tuple[str, str]]:
            return [(r, str(m["Message-ID"])) for rcpt, m in mailbox[since:] for r in rcpt]

        start = len(mailbox)
        t0 = time.monotonic()
        assert lab.run("baseline", AT) == 0, "the fault-free run failed"
        base = lab.snapshot("baseline")
        base_msgs = messages(start)
        say(f"baseline: {len(base.event_ids)} events, {len(base.alerts)} alerts, {len(base_msgs)} messages "
            f"({time.monotonic() - t0:.0f}s)")
        for i, fault in enumerate(points, 1):
            t0 = time.monotonic()
            start = len(mailbox)
            at = AT + timedelta(seconds=i)  # its own DAG runs, the same data interval
            killed = lab.run(fault, at, fault) == -9
            if fault == "notify.after_send":
                # The claimed message's lease must run out before a retry may send it again.
                _expire_leases(lab, fault)
            rc = lab.run(fault, at)
            got = lab.snapshot(fault)
            diff = compare(base, got, base_msgs, messages(start))
            out = Outcome(fault, WHAT[fault], killed and rc == 0, seconds=round(time.monotonic() - t0, 1), **diff)
            outcomes.append(out)
            say(f"{fault}: killed={killed} retry_rc={rc} {diff}")
    return outcomes


def _expire_leases(lab: Lab, scenario: str) -> None:
    from trailhouse.db import appdb
    from trailhouse.deployment import Deployment

    with env_overrides(lab.env(scenario)):
        eng = Deployment().engine
        with eng.begin() as conn:
            conn.execute(appdb.notifications.update().where(appdb.notifications.c.status == "pending")
                         .values(next_attempt_at=datetime(2000, 1, 1, tzinfo=UTC)))
        eng.dispose()


@dataclass
class InputOutcome:
    """One hostile file of trailhouse.dev.hostile after a real run over a bucket that also holds good files."""
    name: str
    what: str
    status: str  # its ledger status: quarantined, as expected
    reason: str
    expected: str  # what the reason must say

    @property
    def clean(self) -> bool:
        return self.status == "quarantined" and self.expected in self.reason


@dataclass
class InputRun:
    files: list[InputOutcome]
    exit_code: int
    good_files: int
    good_loaded: int
    events_expected: int  # the good files' events and the odd records
    events_loaded: int
    odd_loaded: int
    odd_records: int

    @property
    def clean(self) -> bool:
        return (self.exit_code == 0 and self.good_loaded == self.good_files and self.events_loaded == self.events_expected
                and self.odd_loaded == self.odd_records and all(f.clean for f in self.files))


def run_inputs(workdir: Path, say: Any = print) -> InputRun:
    """The lab's bucket plus every hostile file (and a file of odd but loadable records) in one of
    its day folders, through one real `trailhouse run`: the good files must all load, each hostile
    one be quarantined with its reason, and the run succeed."""
    import gzip

    import sqlalchemy as sa

    from trailhouse.db import appdb
    from trailhouse.deployment import Deployment
    from trailhouse.dev.hostile import envelope, hostile_files, odd_records
    from trailhouse.dev.servers import smtp_server

    lab = Lab(workdir)
    sample = min(p for p in lab.bucket.rglob("*_CloudTrail_*.json.gz"))
    folder, account = sample.parent, sample.name.split("_", 1)[0]
    stamp = sample.name.split("_")[3]  # delivered like the lab's own files: inside the run's window

    def put(suffix: str, body: bytes) -> str:
        path = folder / f"{account}_CloudTrail_us-east-1_{stamp}_{suffix}.json.gz"
        path.write_bytes(body)
        return path.relative_to(lab.bucket).as_posix()

    hostile = hostile_files()
    keys = {name: put(name, h.body) for name, h in hostile.items()}
    odd = odd_records()
    odd_key = put("oddbutloadable1", gzip.compress(envelope(*odd)))
    with smtp_server() as (port, _mailbox):
        lab.setup(port)
        t0 = time.monotonic()
        rc = lab.run("inputs", AT)
    with env_overrides(lab.env("inputs")):
        dep = Deployment()
        led = appdb.ledger.c
        with dep.engine.connect() as conn:
            ledger = {k: (st, r) for k, st, r in conn.execute(sa.select(led.key, led.status, led.reason))}
        con = dep.warehouse.duckdb()
        events = con.execute("SELECT count(*) FROM cloudtrail_events").fetchone()[0]
        odd_loaded = con.execute("SELECT count(*) FROM cloudtrail_events WHERE source_key = $k", {"k": odd_key}).fetchone()[0]
        dep.engine.dispose()
    good = [k for k in ledger if "CloudTrail/" in k and k not in keys.values() and k != odd_key]
    files = [InputOutcome(name, h.what, ledger.get(keys[name], ("missing", ""))[0], ledger.get(keys[name], ("", ""))[1],
                          h.reason) for name, h in hostile.items()]
    out = InputRun(files, rc, lab.written.log_files, sum(1 for k in good if ledger[k][0] == "loaded"),
                   lab.written.unique_events + len(odd), events, odd_loaded, len(odd))
    say(f"hostile inputs: rc={rc} good {out.good_loaded}/{out.good_files} events {events}/{out.events_expected} "
        f"odd {odd_loaded}/{len(odd)} quarantined {sum(f.clean for f in files)}/{len(files)} "
        f"({time.monotonic() - t0:.0f}s)")
    return out


def render_inputs(run: InputRun, command: str) -> str:
    rows = ["| object | result | quarantine reason (start) |", "|---|---|---|"]
    for f in run.files:
        # a backtick in the reason (msgspec quotes field names so) would end the code span
        shown = (f.reason.split(":")[0] if f.reason.startswith("could not") else f.reason[:90].rstrip()).replace("`", "'")
        result = "quarantined" if f.clean else f"**{f.status.upper()}** (expected: quarantined, `{f.expected}`)"
        rows.append(f"| {f.what} | {result} | `{shown}{'...' if len(f.reason) > 90 else ''}` |")
    good = "all" if run.good_loaded == run.good_files else f"**only {run.good_loaded} of**"
    summary = (f"In the same run, {good} {run.good_files} good files loaded, {run.events_loaded:,} events of "
               f"{run.events_expected:,} expected (the good files' and {run.odd_records} odd records: times in year 0 "
               f"and a number beyond int64, which load with the original text in `extra_fields`, "
               f"{run.odd_loaded} loaded), and `trailhouse run` exited {run.exit_code}.")
    return "\n".join(rows) + f"\n\n{summary}\n\nProduced by `{command}` on {datetime.now(UTC):%Y-%m-%d}.\n"


def _replace_between(text: str, marker: str, table: str) -> str:
    start, end = f"<!-- {marker} -->", f"<!-- /{marker} -->"
    if start not in text:
        return text + f"\n{start}\n{table}{end}\n"
    before, rest = text.split(start, 1)
    after = rest.split(end, 1)[1]
    return f"{before}{start}\n{table}{end}{after}"


def render(outcomes: list[Outcome], command: str) -> str:
    head = ("| fault | what happened | killed, then retried | events lost | events duplicated | alerts lost "
            "| alerts duplicated | messages lost | messages duplicated | repeated deliveries (same Message-ID) |")
    rows = [head, "|" + "---|" * 10]
    for o in outcomes:
        rows.append(f"| `{o.fault}` | {o.what} | {'yes' if o.killed else 'NO'} | {o.events_lost} | {o.events_duplicated} "
                    f"| {o.alerts_lost} | {o.alerts_duplicated} | {o.messages_lost} | {o.messages_duplicated} "
                    f"| {o.deliveries_repeated} |")
    return "\n".join(rows) + f"\n\nProduced by `{command}` on {datetime.now(UTC):%Y-%m-%d}.\n"


def main(argv: list[str] | None = None) -> int:
    import tempfile

    p = argparse.ArgumentParser(prog="python -m trailhouse.dev.faultsuite", description=__doc__)
    p.add_argument("--out", type=Path, help="write the table into this markdown file (between the markers)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="trailhouse-faults-") as tmp:
        outcomes = run_suite(Path(tmp) / "kills")
        inputs = run_inputs(Path(tmp) / "inputs")
    command = "python -m trailhouse.dev.faultsuite --out docs/reliability.md"
    table, input_table = render(outcomes, command), render_inputs(inputs, command)
    print(table)
    print(input_table)
    if args.out:
        text = args.out.read_text() if args.out.exists() else ""
        text = _replace_between(text, "fault table", table)
        args.out.write_text(_replace_between(text, "input table", input_table))
    return 0 if all(o.clean for o in outcomes) and inputs.clean else 1


if __name__ == "__main__":
    sys.exit(main())
