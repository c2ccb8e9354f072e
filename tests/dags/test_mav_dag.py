"""One full MAV DAG run through Airflow (dag.test) against a local S3 endpoint, app DB on PostgreSQL."""

from __future__ import annotations

import csv
import json
import os
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from trailhouse import output, settings
from trailhouse.cli import main as cli
from trailhouse.deployment import Deployment
from trailhouse.dev.synth.files import late_file, write_to_s3
from trailhouse.dev.synth.world import SynthSpec
from trailhouse.pipeline import runs
from trailhouse.warehouse.table import Warehouse

BUCKET = "e2e-trail-bucket"
END_DAY = date(2026, 11, 20)
AT = datetime(2026, 11, 21, 6, 30, tzinfo=UTC)  # runs the hour 05:00-06:00 of the next day


def _reader_key(endpoint: str, tmp_path: Path) -> tuple[Path, str, str]:
    import boto3

    iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1")
    policy = (settings.PROJECT_ROOT / "docs" / "iam-policy.json").read_text().replace("BUCKET", BUCKET)
    iam.create_user(UserName="e2e-reader")
    iam.put_user_policy(UserName="e2e-reader", PolicyName="read", PolicyDocument=policy)
    key = iam.create_access_key(UserName="e2e-reader")["AccessKey"]
    path = tmp_path / "e2e-reader_credentials.csv"
    # The form of the CSV the console gives when it creates a user with a password.
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([
            ["User name", "Password", "Access key ID", "Secret access key", "Console login link"],
            ["e2e-reader", "Pa55word!", key["AccessKeyId"], key["SecretAccessKey"], "https://console.aws.amazon.com"],
        ])
    return path, key["AccessKeyId"], key["SecretAccessKey"]


@pytest.fixture
def pg_app_db(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("TRAILHOUSE_DB_URL", pg_url)
    return pg_url


def test_full_run_idempotent_rerun_late_and_broken_files(
    th_home: Path, pg_app_db: str, airflow_db: None, s3_endpoint: str, s3_admin, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = SynthSpec(seed=11, accounts=3, days=2, end=END_DAY, files_per_region_day=3, events_per_file=15,
                           regions=("us-east-1", "eu-west-1"), bucket=BUCKET)
    s3_admin.create_bucket(Bucket=BUCKET)
    written = write_to_s3(spec, s3_admin, BUCKET)
    csv_path, key_id, secret = _reader_key(s3_endpoint, tmp_path)

    assert cli.main(["mav", "add", "e2e", "--bucket", BUCKET, "--credentials-csv", str(csv_path),
                     "--endpoint-url", s3_endpoint, "--lookback-hours", "72"]) == 0
    yaml_text = (settings.load().mav_dir / "e2e.yaml").read_text()
    assert secret not in yaml_text and key_id not in yaml_text

    from trailhouse.airflow_env import store_connection
    from trailhouse.dev.demo import _demo_owners
    from trailhouse.dev.servers import smtp_server

    _demo_owners(written.accounts, th_home)
    monkeypatch.setenv("TRAILHOUSE_OWNERS_FILE", str(th_home / "owners.yaml"))
    with smtp_server() as (smtp_port, mailbox):
        store_connection("trailhouse_demo_smtp", "", "", {"from": "trailhouse@example.com"}, conn_type="smtp",
                         host="127.0.0.1", port=smtp_port)
        first = runs.run_mav(Deployment(), "e2e", at=AT)
        repeat = runs.run_mav(Deployment(), "e2e", at=AT)
    assert first["failed_tasks"] == [] and repeat["failed_tasks"] == []
    _assert_alerts_once(first["run_id"], mailbox)
    assert first["objects_found"] == written.log_files
    assert first["objects_loaded"] == written.log_files
    assert first["objects_quarantined"] == 0
    assert first["objects_recorded"] == written.digest_files + written.insight_files
    assert first["events_loaded"] == written.unique_events
    assert first["duplicates_dropped"] == written.events - written.unique_events == spec.duplicates
    assert first["list_calls"] > 0 and first["get_calls"] == written.log_files

    con = Warehouse(settings.load().warehouse_uri).duckdb()
    total, distinct = con.execute("SELECT count(*), count(DISTINCT event_id) FROM cloudtrail_events").fetchone()
    assert total == distinct == written.unique_events
    # Partitioned by the event's own date: the events of 00:00-00:15 delivered in the
    # next day's folder still land on the day they happened.
    misplaced = con.execute(
        "SELECT count(*) FROM cloudtrail_events WHERE event_time IS NOT NULL AND event_date <> CAST(event_time AS DATE)"
    ).fetchone()[0]
    assert misplaced == 0

    second = repeat
    assert (second["objects_loaded"], second["events_loaded"], second["objects_skipped"]) == (0, 0, written.log_files)

    late_key, late_body = late_file(spec, datetime(2026, 11, 20, 0, 20, tzinfo=UTC), n_events=5)
    s3_admin.put_object(Bucket=BUCKET, Key=late_key, Body=late_body)
    broken_key = late_key.replace(".json.gz", "-broken.json.gz").replace("_2026", "_2026", 1)
    s3_admin.put_object(Bucket=BUCKET, Key=broken_key, Body=late_body[: len(late_body) // 2])
    third = runs.run_mav(Deployment(), "e2e", at=AT)
    assert third["objects_loaded"] == 1 and third["events_loaded"] == 5
    assert third["objects_quarantined"] == 1
    assert third["quarantined"][0]["key"] == broken_key and "gzip" in third["quarantined"][0]["reason"]
    assert Warehouse(settings.load().warehouse_uri).duckdb().execute(
        "SELECT count(*) FROM cloudtrail_events").fetchone()[0] == written.unique_events + 5

    output.print_summary(third)
    assert cli.main(["run", "e2e", "--json", "--at", AT.isoformat()]) == 0
    out = capsys.readouterr().out
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["objects_found"] == written.log_files + 2 and summary["events_loaded"] == 0
    assert {"objects_found", "objects_loaded", "objects_quarantined", "events_loaded", "duplicates_dropped",
            "list_calls"} <= set(summary)

    _assert_secret_nowhere(secret, key_id, out, th_home)


def _assert_alerts_once(run_id: str, mailbox: list) -> None:
    """Alerts of the run were stored, each event evaluated once, one email per owner."""
    import sqlalchemy as sa

    from trailhouse.alerting import alerts
    from trailhouse.db import appdb

    eng = appdb.engine(settings.load().app_db_url)
    new = alerts.query(eng, run_id=run_id, limit=100_000)
    assert new, "the synthetic data holds security group changes, root activity and failed logins"
    assert {a["rule_id"] for a in new} >= {"trailhouse.sg-open-to-world"}
    with eng.connect() as conn:
        links = conn.execute(sa.select(sa.func.count()).select_from(appdb.alert_events)).scalar()
    # Counts are the links (the primary key makes each alert-event link unique).
    assert links == sum(a["count"] for a in alerts.query(eng, limit=100_000))
    # One message per owner for the first run; the idempotent second run sends none.
    recipients = sorted(r for rcpt, _ in mailbox for r in rcpt)
    assert recipients == ["payments-sec@example.com", "platform-sec@example.com"]
    for _, msg in mailbox:
        assert "new alert" in msg["Subject"]


def _assert_secret_nowhere(secret: str, key_id: str, output: str, home: Path) -> None:
    """The key pair is only in Airflow's connection table (encrypted), nowhere else."""
    import sqlalchemy as sa
    from airflow.configuration import conf

    assert secret not in output and key_id not in output
    eng = sa.create_engine(conf.get("database", "sql_alchemy_conn"))
    with eng.connect() as conn:
        xcoms = [str(v) for (v,) in conn.execute(sa.text("SELECT value FROM xcom"))]
        stored = conn.execute(sa.text("SELECT password, is_encrypted FROM connection WHERE conn_id='trailhouse_e2e'")).one()
    assert xcoms and not any(secret in v or key_id in v for v in xcoms)
    assert stored.is_encrypted and secret not in stored.password
    for root in (home, Path(os.environ["AIRFLOW_HOME"]) / "logs"):
        for path in root.rglob("*"):
            if path.is_file() and path.suffix in {".yaml", ".log", ".json", ".txt"}:
                text = path.read_text(errors="replace")
                assert secret not in text, path
    # The warehouse, the MAV files and the ledger hold events: no other local user reads them.
    readable = [p for p in home.rglob("*") if p.stat().st_mode & 0o077]
    assert not readable, f"group/other may read {readable[:5]}"


def test_a_failed_run_says_why(th_home: Path, airflow_db: None, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    from trailhouse.config import Mav, save_mav

    save_mav(settings.load().mav_dir, Mav(name="gone", path=str(tmp_path / "no-such-folder")))
    result = runs.run_mav(Deployment(), "gone")
    assert result["failed_tasks"] == ["validate_access"] and result["dag_run_state"] == "failed"
    assert cli.main(["run", "gone"]) == 1
    out = capsys.readouterr().out
    assert "FAILED tasks: validate_access\n" in out
    assert "no-such-folder does not exist" in out and "--path" in out
    # commit runs after failed transforms (trigger rule all_done), but not without discover's
    # batches: it is skipped and does not record the run as a success over its failure
    from trailhouse.db import appdb

    (run,) = appdb.latest_runs(Deployment().engine, "gone", 1)
    assert run["status"] == "failed" and run["message"].startswith("validate_access: ")
