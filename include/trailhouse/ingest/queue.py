"""Notification mode: read a MAV's SQS queue of CloudTrail (SNS) or S3 event notifications into
the app database's inbox, deleting each message only once its keys are stored there.

A crash before the inbox is written leaves the messages in the queue (they come back after
their visibility timeout); a crash after it leaves them in the inbox, where the next run
finds them. The ledger decides what is new, so a key read twice is still loaded once.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from trailhouse.config import Mav
from trailhouse.db import appdb
from trailhouse.ingest.layout import parse_key

log = logging.getLogger(__name__)

# Long polling asks every SQS server, so an empty answer means an empty queue; the run's
# last receive waits this long.
WAIT_SECONDS = 1


@dataclass(frozen=True)
class Notified:
    """One key a notification named, with the ETag and size when the message carries them."""
    bucket: str
    key: str
    etag: str | None = None
    size: int | None = None


@dataclass
class QueueRead:
    """What one drain of the queue did: messages, relevant keys, and the SQS calls made."""
    messages: int = 0
    keys: int = 0
    unreadable: int = 0
    calls: int = 0


def parse_message(body: str) -> list[Notified]:
    """The keys of one SQS message body: CloudTrail's notification (``{"s3Bucket", "s3ObjectKey": [...]}``)
    or an S3 event notification (``Records[].s3``), either inside an SNS envelope or raw.

    Raises ValueError for a body that is neither.
    """
    try:
        doc = json.loads(body)
        if isinstance(doc, dict) and doc.get("Type") == "Notification" and isinstance(doc.get("Message"), str):
            doc = json.loads(doc["Message"])
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg})") from None
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    if "s3ObjectKey" in doc:
        keys = doc["s3ObjectKey"]
        return [Notified(str(doc.get("s3Bucket", "")), str(k)) for k in (keys if isinstance(keys, list) else [keys])]
    if isinstance(doc.get("Records"), list):
        return [_s3_record(r) for r in doc["Records"] if str(r.get("eventName", "")).startswith("ObjectCreated")]
    if doc.get("Event") == "s3:TestEvent":  # sent once when the notification is configured
        return []
    raise ValueError("neither a CloudTrail notification (s3ObjectKey) nor an S3 event (Records)")


def _s3_record(record: dict[str, Any]) -> Notified:
    s3 = record.get("s3") or {}
    obj = s3.get("object") or {}
    etag = obj.get("eTag")
    size = obj.get("size")
    return Notified(str((s3.get("bucket") or {}).get("name", "")), unquote_plus(str(obj.get("key", ""))),
                    str(etag).strip('"') if etag else None, int(size) if size is not None else None)


def relevant(mav: Mav, item: Notified) -> bool:
    """Whether a notified key is a delivery file of this MAV (its bucket, prefix and accounts)."""
    parsed = parse_key(item.key)
    return (item.bucket == mav.bucket and parsed is not None and item.key.startswith(mav.prefix)
            and parsed.name.endswith((".json.gz", ".json")) and (not mav.accounts or parsed.account in mav.accounts))


def drain(sqs: Any, eng: Any, mav: Mav, *, max_receives: int = 100_000) -> QueueRead:
    """Move the queue's messages into the MAV's inbox until the queue answers empty.

    Per receive of up to 10 messages: their relevant keys go into the inbox in one
    transaction, then the messages are deleted (one DeleteMessageBatch). Messages about other
    buckets, prefixes or accounts and unreadable ones are deleted too (and counted, and logged).
    """
    read = QueueRead()
    for _ in range(max_receives):
        answer = sqs.receive_message(QueueUrl=mav.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=WAIT_SECONDS)
        read.calls += 1
        messages = answer.get("Messages", [])
        if not messages:
            break
        items: list[Notified] = []
        for msg in messages:
            try:
                items += [i for i in parse_message(msg.get("Body", "")) if relevant(mav, i)]
            except ValueError as exc:
                read.unreadable += 1
                log.warning("queue %s: message %s is not an S3 notification (%s); deleted",
                            mav.queue_url, msg.get("MessageId"), exc)
        appdb.inbox_add(eng, mav.name, ({"key": i.key, "etag": i.etag, "size": i.size} for i in items))
        _delete(sqs, mav, messages)
        read.calls += 1
        read.messages += len(messages)
        read.keys += len(items)
    return read


def _delete(sqs: Any, mav: Mav, messages: list[dict[str, Any]]) -> None:
    entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
    failed = sqs.delete_message_batch(QueueUrl=mav.queue_url, Entries=entries).get("Failed", [])
    if failed:
        # The keys are in the inbox: a message that comes back again is harmless.
        log.warning("queue %s: %d messages not deleted (%s); they will be read again",
                    mav.queue_url, len(failed), failed[0].get("Code"))
