"""Notification mode on moto's server: CloudTrail's SNS topic -> SQS, and S3 event notifications -> SQS."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from trailhouse.config import Mav
from trailhouse.db import appdb
from trailhouse.dev.synth.files import late_file, write_to_s3
from trailhouse.dev.synth.world import SynthSpec
from trailhouse.ingest.discover import Discovery, discover
from trailhouse.ingest.layout import KIND_LOG
from trailhouse.ingest.queue import parse_message
from trailhouse.ingest.source import S3Source

END_DAY = date(2026, 11, 20)
# Run 1: the last hour of END_DAY, the first run of the 21st (it scans and lists).
START = datetime(2026, 11, 20, 23, tzinfo=UTC)
END = START + timedelta(hours=1)
FIRST_NOW = END + timedelta(minutes=5)
# Run 2: the next hour, same UTC day: remembered folders, so the queue replaces listing.
NEXT_START, NEXT_END = END, END + timedelta(hours=1)
NEXT_NOW = NEXT_END + timedelta(minutes=5)


def spec() -> SynthSpec:
    return SynthSpec(seed=3, accounts=3, days=2, end=END_DAY, files_per_region_day=3, events_per_file=5,
                           regions=("us-east-1", "eu-west-1"), duplicates=0)


@pytest.fixture
def eng(tmp_path: Path):  # noqa: ANN201
    return appdb.engine(f"sqlite:///{tmp_path / 'app.db'}")


def client(endpoint: str, service: str) -> Any:
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1")


def load(eng: Any, mav: Mav, found: Discovery, run_id: str) -> None:
    """What the transforms and the commit do to the ledger: every new key loaded, digests recorded."""
    rows = [{"key": o.key, "etag": o.etag, "size": o.size, "kind": KIND_LOG, "status": "loaded", "events": 1,
             "reason": ""} for o in found.new]
    rows += [{"key": o.key, "etag": o.etag, "size": o.size, "kind": kind, "status": "recorded", "events": 0,
              "reason": ""} for o, kind in found.routed]
    appdb.record_objects(eng, mav.name, run_id, rows)


def ledger_keys(eng: Any, mav: str) -> list[str]:
    with eng.connect() as conn:
        return [k for (k,) in conn.execute(appdb.ledger.select().with_only_columns(appdb.ledger.c.key)
                                           .where(appdb.ledger.c.mav == mav))]


def late_files(s: SynthSpec) -> list[tuple[str, bytes]]:
    """Files of run 2: two delivered in its hour, one delivered late into the day before."""
    return [late_file(s, NEXT_START + timedelta(minutes=10), account_index=0),
            late_file(s, NEXT_START + timedelta(minutes=20), account_index=2, region="eu-west-1"),
            late_file(s, START - timedelta(hours=3), account_index=1)]


def sns_queue(endpoint: str, name: str) -> tuple[str, str]:
    """(topic ARN, queue URL): an SNS topic as CloudTrail's, subscribed by an SQS queue."""
    sns, sqs = client(endpoint, "sns"), client(endpoint, "sqs")
    topic = sns.create_topic(Name=name)["TopicArn"]
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    return topic, url


def first_runs(s3: Any, sqs: Any, eng: Any, listed: Mav, notified: Mav) -> dict[str, Discovery]:
    """Run 1 of both MAVs (the day's first: both scan and list), loaded."""
    first = {m.name: discover(S3Source(s3, m.bucket), eng, m, START, END, now=FIRST_NOW,
                              queue=sqs if m.queue_url else None) for m in (listed, notified)}
    for m in (listed, notified):
        load(eng, m, first[m.name], "run1")
    return first


def test_cloudtrail_sns_notifications_load_exactly_what_listing_loads(s3_admin, s3_endpoint: str, eng) -> None:  # noqa: ANN001
    s = spec()
    s3_admin.create_bucket(Bucket="queue-ct")
    write_to_s3(s, s3_admin, "queue-ct")
    topic, url = sns_queue(s3_endpoint, "trailhouse-ct")
    sqs, sns = client(s3_endpoint, "sqs"), client(s3_endpoint, "sns")
    listed = Mav(name="listed", bucket="queue-ct")
    notified = Mav(name="notified", bucket="queue-ct", queue_url=url)
    first = first_runs(s3_admin, sqs, eng, listed, notified)
    assert first["notified"].scanned and not first["notified"].from_queue
    assert {o.key for o in first["notified"].new} == {o.key for o in first["listed"].new}

    # Run 2's files arrive with CloudTrail's notification; one already loaded key is notified again.
    files = late_files(s)
    for key, body in files:
        s3_admin.put_object(Bucket="queue-ct", Key=key, Body=body)
    again = first["listed"].new[0].key
    for key in [k for k, _ in files] + [again]:
        sns.publish(TopicArn=topic, Message=json.dumps({"s3Bucket": "queue-ct", "s3ObjectKey": [key]}))
    sns.publish(TopicArn=topic, Message="not a notification")  # deleted, counted, never blocks the queue

    second = {m.name: discover(S3Source(s3_admin, "queue-ct"), eng, m, NEXT_START, NEXT_END, now=NEXT_NOW,
                               queue=sqs if m.queue_url else None) for m in (listed, notified)}
    got, want = second["notified"], second["listed"]
    assert got.from_queue and not want.from_queue
    assert sorted(o.key for o in got.new) == sorted(o.key for o in want.new) == sorted(k for k, _ in files)
    assert got.queue_messages == len(files) + 2
    # one LIST per day folder of a notified key not yet in the ledger, instead of one per stream
    assert got.list_calls == len({k.rsplit("/", 1)[0] for k, _ in files})
    assert want.list_calls == want.streams > got.list_calls
    for m in (listed, notified):
        load(eng, m, second[m.name], "run2")

    # The next day's first run lists again (the safety net) while the queue is read too: nothing twice.
    day_after = NEXT_NOW + timedelta(days=1)
    third = discover(S3Source(s3_admin, "queue-ct"), eng, notified, NEXT_START + timedelta(days=1),
                     NEXT_END + timedelta(days=1), now=day_after, queue=sqs)
    assert third.scanned and third.new == []
    assert {r["key"] for r in appdb.inbox(eng, "notified")} <= set(ledger_keys(eng, "notified"))
    keys = ledger_keys(eng, "notified")
    assert sorted(keys) == sorted(ledger_keys(eng, "listed"))
    assert len(keys) == len(set(keys))


def test_a_crash_after_reading_the_queue_loses_nothing_and_loads_nothing_twice(
        s3_admin, s3_endpoint: str, eng) -> None:  # noqa: ANN001
    s = spec()
    s3_admin.create_bucket(Bucket="queue-crash")
    write_to_s3(s, s3_admin, "queue-crash")
    topic, url = sns_queue(s3_endpoint, "trailhouse-crash")
    sqs, sns = client(s3_endpoint, "sqs"), client(s3_endpoint, "sns")
    mav = Mav(name="notified", bucket="queue-crash", queue_url=url)
    load(eng, mav, discover(S3Source(s3_admin, "queue-crash"), eng, mav, START, END, now=FIRST_NOW, queue=sqs), "r1")
    files = late_files(s)
    for key, body in files:
        s3_admin.put_object(Bucket="queue-crash", Key=key, Body=body)
        sns.publish(TopicArn=topic, Message=json.dumps({"s3Bucket": "queue-crash", "s3ObjectKey": [key]}))

    crashed = discover(S3Source(s3_admin, "queue-crash"), eng, mav, NEXT_START, NEXT_END, now=NEXT_NOW, queue=sqs)
    assert sorted(o.key for o in crashed.new) == sorted(k for k, _ in files)
    # ... the run dies before its commit: the messages are gone from the queue, the keys are not.
    assert sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", []) == []
    retry = discover(S3Source(s3_admin, "queue-crash"), eng, mav, NEXT_START, NEXT_END, now=NEXT_NOW, queue=sqs)
    assert retry.from_queue and sorted(o.key for o in retry.new) == sorted(k for k, _ in files)
    load(eng, mav, retry, "r2")
    after = discover(S3Source(s3_admin, "queue-crash"), eng, mav, NEXT_START, NEXT_END, now=NEXT_NOW, queue=sqs)
    assert after.from_queue and after.new == [] and appdb.inbox(eng, mav.name) == []


def test_s3_event_notifications_need_no_list_call(s3_admin, s3_endpoint: str, eng) -> None:  # noqa: ANN001
    s = spec()
    s3_admin.create_bucket(Bucket="queue-s3")
    write_to_s3(s, s3_admin, "queue-s3")
    sqs = client(s3_endpoint, "sqs")
    url = sqs.create_queue(QueueName="trailhouse-s3")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    listed = Mav(name="listed", bucket="queue-s3")
    notified = Mav(name="notified", bucket="queue-s3", queue_url=url)
    first_runs(s3_admin, sqs, eng, listed, notified)
    s3_admin.put_bucket_notification_configuration(Bucket="queue-s3", NotificationConfiguration={
        "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]})
    files = late_files(s)
    for key, body in files:
        s3_admin.put_object(Bucket="queue-s3", Key=key, Body=body)
    second = {m.name: discover(S3Source(s3_admin, "queue-s3"), eng, m, NEXT_START, NEXT_END, now=NEXT_NOW,
                               queue=sqs if m.queue_url else None) for m in (listed, notified)}
    got, want = second["notified"], second["listed"]
    assert got.from_queue and got.list_calls == 0
    assert sorted(o.key for o in got.new) == sorted(o.key for o in want.new) == sorted(k for k, _ in files)
    assert {(o.key, o.etag, o.size) for o in got.new} == {(o.key, o.etag, o.size) for o in want.new}


def test_message_formats() -> None:
    ct = {"s3Bucket": "b", "s3ObjectKey": ["AWSLogs/1/CloudTrail/x.json.gz"]}
    envelope = json.dumps({"Type": "Notification", "Message": json.dumps(ct)})
    assert [(n.bucket, n.key, n.etag) for n in parse_message(envelope)] == [("b", "AWSLogs/1/CloudTrail/x.json.gz", None)]
    event = {"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}, "object": {
        "key": "AWSLogs/o-abc/a+b%3D.json.gz", "size": 12, "eTag": "e1"}}},
        {"eventName": "ObjectRemoved:Delete", "s3": {"bucket": {"name": "b"}, "object": {"key": "gone"}}}]}
    assert [(n.key, n.etag, n.size) for n in parse_message(json.dumps(event))] == [("AWSLogs/o-abc/a b=.json.gz", "e1", 12)]
    assert parse_message(json.dumps({"Event": "s3:TestEvent"})) == []
    with pytest.raises(ValueError, match="neither a CloudTrail notification"):
        parse_message(json.dumps({"hello": 1}))
