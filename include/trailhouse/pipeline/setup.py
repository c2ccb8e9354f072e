"""MAV set-up: register a MAV (its YAML and its key pair's Airflow connection) and check its access.

`trailhouse mav add` / `mav validate` and the demo use these, so a MAV is set up one way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trailhouse import airflow_env
from trailhouse.config import Mav, save_mav
from trailhouse.ingest import access
from trailhouse.ingest.clients import open_source, s3_client, sqs_client


def add_mav(mav_dir: Path, mav: Mav, key_pair: tuple[str, str] | None = None) -> Path:
    """Save the MAV's YAML; a bucket MAV's key pair goes into its Airflow connection only."""
    if mav.connection_id:
        if key_pair is None:
            raise ValueError(f"MAV {mav.name!r} reads a bucket: it needs the IAM user's key pair")
        extra: dict[str, Any] = {"region_name": mav.region}
        if mav.endpoint_url:
            extra["endpoint_url"] = mav.endpoint_url
        airflow_env.store_connection(mav.connection_id, key_pair[0], key_pair[1], extra)
    return save_mav(mav_dir, mav)


def access_report(mav: Mav) -> access.AccessReport | None:
    """The IAM user's permission report for a bucket MAV; None for a local folder, once it is readable."""
    if mav.path is not None:
        open_source(mav)  # raises a clear error when the folder is missing
        return None
    assert mav.bucket
    queue = (sqs_client(mav), mav.queue_url) if mav.queue_url else None
    return access.check_access(s3_client(mav), mav.bucket, mav.prefix, queue=queue)
