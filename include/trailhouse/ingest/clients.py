"""AWS clients signed with a MAV's key pair (from its Airflow connection), and the MAV's source.

The one place that turns a MAV into boto3 clients: the pipeline's S3 reads, the permission
report and the integrity check's cloudtrail:ListPublicKeys calls all come through here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from trailhouse.config import Mav, queue_url_parts
from trailhouse.ingest.source import LocalSource, S3Source, Source


def _key_pair(mav: Mav) -> tuple[str, str]:
    from trailhouse.airflow_env import get_credentials

    assert mav.connection_id is not None
    return get_credentials(mav.connection_id)


def s3_client(mav: Mav, *, connections: int = 10) -> Any:
    """A boto3 S3 client signed with the MAV's key pair from its Airflow connection, keeping up to
    `connections` HTTP connections open (at least as many as the threads that use it at once)."""
    import boto3
    from botocore.config import Config

    key_id, secret = _key_pair(mav)
    return boto3.client(
        "s3",
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        region_name=mav.region,
        endpoint_url=mav.endpoint_url,
        config=Config(
            # Throttling (SlowDown, 503) and resets are retried with backoff before a task fails.
            retries={"max_attempts": 8, "mode": "adaptive"},
            max_pool_connections=max(10, connections),
            connect_timeout=10,
            read_timeout=60,
        ),
    )


def cloudtrail_clients(mav: Mav) -> Callable[[str], Any]:
    """Per-region boto3 CloudTrail clients signed with the MAV's key pair, made on first use."""
    import boto3

    key_id, secret = _key_pair(mav)
    clients: dict[str, Any] = {}

    def client(region: str) -> Any:
        if region not in clients:
            clients[region] = boto3.client(
                "cloudtrail", aws_access_key_id=key_id, aws_secret_access_key=secret, region_name=region,
                endpoint_url=mav.endpoint_url,
            )
        return clients[region]

    return client


def sqs_client(mav: Mav) -> Any:
    """A boto3 SQS client for the MAV's notification queue, signed with the MAV's key pair.

    The region is the queue URL's (``https://sqs.<region>.amazonaws.com/...``), else the MAV's.
    """
    import boto3

    assert mav.queue_url is not None
    key_id, secret = _key_pair(mav)
    parts = queue_url_parts(mav.queue_url)
    return boto3.client("sqs", aws_access_key_id=key_id, aws_secret_access_key=secret,
                        region_name=(parts and parts[0]) or mav.region, endpoint_url=mav.endpoint_url)


def open_source(mav: Mav, *, connections: int = 10) -> Source:
    """Where the MAV's delivery files are read: its local folder, or its bucket with its key pair
    (`connections` as for s3_client)."""
    if mav.path is not None:
        return LocalSource(mav.path)
    assert mav.bucket is not None
    return S3Source(s3_client(mav, connections=connections), mav.bucket)
