"""discover_step, the DAG's discover task, in notification mode: it reads the MAV's queue with the MAV's key pair."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest

from trailhouse.airflow_env import store_connection
from trailhouse.config import Mav, save_mav
from trailhouse.db import appdb
from trailhouse.deployment import Deployment
from trailhouse.dev.synth.files import late_file, write_to_s3
from trailhouse.dev.synth.world import SynthSpec
from trailhouse.ingest.layout import KIND_LOG
from trailhouse.pipeline.steps import discover_step

BUCKET = "step-queue"


def test_discover_step_reads_the_queue_of_a_mav_in_notification_mode(
        th_home: Path, airflow_db: None, s3_endpoint: str, s3_admin, caplog: pytest.LogCaptureFixture) -> None:  # noqa: ANN001
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    end = start + timedelta(hours=1)
    spec = SynthSpec(seed=4, accounts=2, days=2, end=start.date(), files_per_region_day=2, events_per_file=3,
                           regions=("us-east-1",), duplicates=0, bucket=BUCKET)
    s3_admin.create_bucket(Bucket=BUCKET)
    write_to_s3(spec, s3_admin, BUCKET)
    sns = boto3.client("sns", endpoint_url=s3_endpoint, region_name="us-east-1")
    sqs = boto3.client("sqs", endpoint_url=s3_endpoint, region_name="us-east-1")
    topic = sns.create_topic(Name="step-trail")["TopicArn"]
    url = sqs.create_queue(QueueName="step-trail")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    store_connection("trailhouse_stepq", "testing", "testing", {"region_name": "us-east-1"})
    mav = Mav(name="stepq", bucket=BUCKET, endpoint_url=s3_endpoint, queue_url=url)
    dep = Deployment()
    save_mav(dep.settings.mav_dir, mav)

    first = discover_step(dep, mav, "r1", start, end)
    eng = dep.engine
    appdb.record_objects(eng, mav.name, "r1", [
        {"key": k, "etag": e, "size": s, "kind": KIND_LOG, "status": "loaded", "events": 1, "reason": ""}
        for b in first for k, e, s in b["objects"]])
    key, body = late_file(spec, start + timedelta(minutes=10), account_index=1)
    s3_admin.put_object(Bucket=BUCKET, Key=key, Body=body)
    sns.publish(TopicArn=topic, Message=json.dumps({"s3Bucket": BUCKET, "s3ObjectKey": [key]}))

    with caplog.at_level(logging.INFO, logger="trailhouse.pipeline.steps"):
        second = discover_step(dep, mav, "r2", start, end)
    assert [k for b in second for k, _e, _s in b["objects"]] == [key]
    assert "1 queue messages" in caplog.text
    assert appdb.get_run(eng, mav.name, "r2")["objects_found"] >= 1
