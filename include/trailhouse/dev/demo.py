"""`make demo`: a local S3 endpoint, a synthetic aggregate bucket, the `demo` MAV run through Airflow."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from trailhouse.common import SEVERITIES
from trailhouse.deployment import Deployment
from trailhouse.dev.servers import moto_server, smtp_server

BUCKET = "trailhouse-demo"
DEMO_DAYS = 3
SAMPLE_SQL = """
SELECT account_id,
       count(*)                                        AS events,
       count(error_code)                               AS errors,
       count(*) FILTER (WHERE event_name = 'ConsoleLogin') AS console_logins,
       count(DISTINCT region)                          AS regions,
       min(event_time)                                 AS first_event,
       max(event_time)                                 AS last_event
FROM cloudtrail_events
GROUP BY account_id
ORDER BY account_id
""".strip()


def _demo_user(endpoint: str, policy: str) -> tuple[str, str]:
    """A read-only IAM user with the setup guide's policy, as a real deployment would have."""
    import boto3

    iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1",
                       aws_access_key_id="admin", aws_secret_access_key="admin")
    iam.create_user(UserName="trailhouse-reader")
    iam.put_user_policy(UserName="trailhouse-reader", PolicyName="trailhouse-read", PolicyDocument=policy)
    key = iam.create_access_key(UserName="trailhouse-reader")["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


def _demo_owners(accounts: list[str], home: Path) -> Path:
    """owners.yaml for the demo: two teams sharing the accounts, email through the local server."""
    import yaml

    half = (len(accounts) + 1) // 2
    owners = [
        {"name": "payments-team", "accounts": accounts[:half], "users": ["olivia"],
         "channels": [{"type": "email", "to": ["payments-sec@example.com"], "connection": "trailhouse_demo_smtp"}]},
        {"name": "platform-team", "accounts": accounts[half:], "users": ["sam"],
         "channels": [{"type": "email", "to": ["platform-sec@example.com"], "connection": "trailhouse_demo_smtp"}]},
    ]
    path = home / "owners.yaml"
    path.write_text("# demo owners (trailhouse demo writes this file)\n" + yaml.safe_dump({"owners": owners}, sort_keys=False))
    return path


def _show_alerts(eng: Any, run_id: str, mailbox: list[Any]) -> None:
    from trailhouse.alerting import alerts

    new = alerts.query(eng, run_id=run_id, limit=100_000)
    print(f"   alerts: {len(new)} new in this run")
    per_rule: dict[tuple[str, str], int] = {}
    for a in new:
        per_rule[(a["severity"], a["rule_id"])] = per_rule.get((a["severity"], a["rule_id"]), 0) + 1
    order = {s: i for i, s in enumerate(reversed(SEVERITIES))}
    for (severity, rule_id), n in sorted(per_rule.items(), key=lambda kv: (order.get(kv[0][0], 9), kv[0][1])):
        print(f"     {n:4}  {severity:8}  {rule_id}")
    print(f"   messages received by the local SMTP server: {len(mailbox)}")
    for rcpt, msg in mailbox:
        print(f"   --- to {', '.join(rcpt)}: {msg['Subject']}")
        lines = msg.get_body(preferencelist=("plain",)).get_content().splitlines()
        for line in lines[:8]:
            print(f"   | {line}")
        if len(lines) > 8:
            print(f"   | ... ({len(lines) - 8} more lines)")


def main(dep: Deployment) -> int:
    """`trailhouse demo` in the deployment `dep` (its home, app database and warehouse)."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "admin")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "admin")
    import boto3

    from trailhouse import output, settings
    from trailhouse.airflow_env import configure, store_connection
    from trailhouse.config import Mav
    from trailhouse.dev.synth.files import write_to_s3
    from trailhouse.dev.synth.world import SynthSpec
    from trailhouse.pipeline import runs, setup
    from trailhouse.pipeline.sql import run_sql

    configure(dep.settings)
    end = datetime.now(UTC).date() - timedelta(days=1)
    spec = SynthSpec(end=end, days=DEMO_DAYS, bucket=BUCKET)
    print(f"trailhouse demo (home: {dep.settings.home})")
    with moto_server() as endpoint, smtp_server() as (smtp_port, mailbox):
        print(f"1. local S3 endpoint (moto) at {endpoint}")
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        t0 = time.monotonic()
        written = write_to_s3(spec, s3, BUCKET)
        print(f"2. synthetic aggregate bucket s3://{BUCKET}: {written.objects:,} objects, {written.events:,} events, "
              f"{len(written.accounts)} accounts, {DEMO_DAYS} days to {end} ({time.monotonic() - t0:.1f}s)")
        policy = (settings.PROJECT_ROOT / "docs" / "iam-policy.json").read_text().replace("BUCKET", BUCKET)
        key_id, secret = _demo_user(endpoint, policy)
        print("3. registering MAV 'demo' (key pair into an Airflow connection, YAML without secrets)")
        mav = Mav(name="demo", bucket=BUCKET, endpoint_url=endpoint, lookback_hours=24 * (DEMO_DAYS + 1),
                  description="synthetic demo bucket on a local S3 endpoint")
        print(f"   MAV 'demo' saved to {setup.add_mav(dep.settings.mav_dir, mav, (key_id, secret))}")
        owners = _demo_owners(written.accounts, dep.settings.home)
        store_connection("trailhouse_demo_smtp", "", "", {"from": "trailhouse@example.com"}, conn_type="smtp",
                         host="127.0.0.1", port=smtp_port, description="demo SMTP server (aiosmtpd)")
        print(f"   owners of the accounts: {owners} (email through a local SMTP server on port {smtp_port})")
        print("4. permission report of the demo user:")
        report = setup.access_report(mav)
        assert report is not None
        print(report.render())
        print("5. running the MAV's DAG through Airflow")
        result = runs.run_mav(dep, "demo")
        output.print_summary(result)
        _show_alerts(dep.engine, result["run_id"], mailbox)
    print("6. sample query (trailhouse sql):")
    print(SAMPLE_SQL)
    cols, rows = run_sql(dep, SAMPLE_SQL)
    output.print_rows(cols, rows)
    print("\nTry: .venv/bin/trailhouse sql \"SELECT event_name, count(*) FROM cloudtrail_events "
          "GROUP BY 1 ORDER BY 2 DESC LIMIT 10\"")
    return 1 if result["failed_tasks"] else 0
