"""S3 faults between boto3 and the bucket: throttling, 500s, resets, slow answers, permanent failures.

A fault-injecting reverse proxy (trailhouse.dev.faultproxy) sits in front of moto. Discovery and
transform_batch use a client configured as pipeline.s3_client configures it (adaptive
retries, max_attempts=8): transient faults must not change a single key or row, and permanent
ones must end in an error that says what failed and what to do.

Timing (measured): botocore backs off rand(0,1) * 2**i seconds after a throttling error
(SlowDown) but only rand(0,1) * 0.05 * 2**i after a 500, a reset or a timeout; and after
the first throttling error the adaptive mode's token bucket limits the client to about
0.5-1 request/s, rising over a few seconds: three SlowDowns at the start turn a 0.5 s
discovery into 7-12 s. So throttling is injected sparingly, the permanent GET failure uses
a code that is not throttling, and the permanent SlowDown is given a single retry.

Note: Config(retries={"max_attempts": 8}) means 8 retries, 9 attempts in all.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from trailhouse.config import Mav
from trailhouse.db import appdb
from trailhouse.dev.faultproxy import FaultProxy
from trailhouse.dev.synth.files import write_to_s3
from trailhouse.dev.synth.world import SynthSpec
from trailhouse.ingest.discover import discover
from trailhouse.ingest.source import ObjectInfo, S3Source, SourceError
from trailhouse.ingest.transform import DownloadError, transform_batch
from trailhouse.warehouse.table import read_files

BUCKET = "trailhouse-faults"
END_DAY = date(2026, 11, 20)
START = datetime(2026, 11, 20, 23, tzinfo=UTC)
END = START + timedelta(hours=1)
INGESTED_AT = datetime(2026, 11, 21, tzinfo=UTC)
SPEC = SynthSpec(seed=11, accounts=2, regions=("us-east-1",), days=2, end=END_DAY, files_per_region_day=3,
                       events_per_file=5, duplicates=0, bucket=BUCKET)
MAV = Mav(name="faults", bucket=BUCKET, lookback_hours=48)


def client(endpoint: str, *, read_timeout: float = 5, max_attempts: int = 8) -> Any:
    """A client as pipeline.s3_client builds it (no Airflow connection: moto takes any key)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        config=Config(
            retries={"max_attempts": max_attempts, "mode": "adaptive"},
            max_pool_connections=16,
            connect_timeout=2,
            read_timeout=read_timeout,
        ),
    )


@dataclass
class Run:
    new: list[tuple[str, str, int]]
    routed: list[tuple[str, str]]
    list_calls: int
    get_calls: int
    outcomes: list[tuple[Any, ...]]
    rows: int
    table: pa.Table
    seconds: float

    def same_result(self, other: Run) -> None:
        assert self.new == other.new
        assert self.routed == other.routed
        assert self.outcomes == other.outcomes
        assert self.rows == other.rows
        assert self.table.equals(other.table)
        # retries are invisible to the source: it counts calls, not attempts
        assert (self.list_calls, self.get_calls) == (other.list_calls, other.get_calls)


def run(endpoint: str, tmp: Path, **client_kw: Any) -> Run:
    """discover + transform_batch of every new object, on a fresh app database."""
    tmp.mkdir(parents=True, exist_ok=True)
    source = S3Source(client(endpoint, **client_kw), BUCKET)
    eng = appdb.engine(f"sqlite:///{tmp / 'app.db'}")
    t0 = time.monotonic()
    found = discover(source, eng, MAV, START, END)
    result = transform_batch(source, found.new, mav=MAV.name, staging_dir=str(tmp / "staging"),
                             ingested_at=INGESTED_AT)
    seconds = time.monotonic() - t0
    assert result.staged
    return Run(
        new=[(o.key, o.etag, o.size) for o in found.new],
        routed=sorted((o.key, kind) for o, kind in found.routed),
        list_calls=found.list_calls,
        get_calls=result.get_calls,
        outcomes=[tuple(o.__dict__.values()) for o in result.outcomes],
        rows=result.rows,
        table=read_files(result.staged),
        seconds=seconds,
    )


@pytest.fixture(scope="module")
def direct(s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The synthetic bucket in moto, and what discovery and transform make of it without faults."""
    import boto3

    admin = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    admin.create_bucket(Bucket=BUCKET)
    write_to_s3(SPEC, admin, BUCKET)
    baseline = run(s3_endpoint, tmp_path_factory.mktemp("direct"))
    assert len(baseline.new) == 12 and baseline.rows > 0 and baseline.routed
    return baseline


@pytest.fixture
def proxy(s3_endpoint: str) -> Iterator[FaultProxy]:
    with FaultProxy(s3_endpoint) as p:
        yield p


def report(name: str, proxy: FaultProxy, seconds: float) -> None:
    print(f"\n{name}: {proxy.requests} requests {dict(proxy.ops)}, injected {dict(proxy.injected)}, {seconds:.2f} s")


def test_clean_proxy_is_transparent(direct: Run, proxy: FaultProxy, tmp_path: Path) -> None:
    got = run(proxy.url, tmp_path)
    got.same_result(direct)
    assert proxy.requests == direct.list_calls + direct.get_calls
    assert proxy.ops == {"list": direct.list_calls, "get": direct.get_calls}
    assert proxy.faults == 0


def test_throttling_at_start_is_retried(direct: Run, proxy: FaultProxy, tmp_path: Path) -> None:
    # Three SlowDowns on the very first LIST: attempts 1-3 fail, the 4th succeeds. (Five would
    # cost 15 s of backoff on average, up to 31 s, plus the token bucket's wait.)
    proxy.fail_first(3, 503, "SlowDown")
    got = run(proxy.url, tmp_path)
    report("throttling", proxy, got.seconds)
    got.same_result(direct)
    assert proxy.injected == {"503 SlowDown": 3}
    assert proxy.requests == direct.list_calls + direct.get_calls + 3


def test_500s_and_connection_resets_are_retried(direct: Run, proxy: FaultProxy, tmp_path: Path) -> None:
    proxy.fail_every(7, 500, "InternalError").reset_every(11)
    got = run(proxy.url, tmp_path)
    report("500s and resets", proxy, got.seconds)
    got.same_result(direct)
    assert proxy.injected["500 InternalError"] >= 5 and proxy.injected["reset"] >= 3
    # every fault cost exactly one more attempt
    assert proxy.requests == direct.list_calls + direct.get_calls + proxy.faults


def test_slow_answers_time_out_and_are_retried(direct: Run, proxy: FaultProxy, tmp_path: Path) -> None:
    # Every 3rd answer waits 0.3 s, longer than the read timeout: the client gives up on it
    # and asks again (the proxy's late answer goes to a closed connection).
    proxy.slow_every(3, 0.3)
    got = run(proxy.url, tmp_path, read_timeout=0.2)
    report("slow answers", proxy, got.seconds)
    got.same_result(direct)
    assert proxy.injected["slow"] >= 8
    assert proxy.requests >= direct.list_calls + direct.get_calls + proxy.injected["slow"]


def test_latency_delays_every_request_and_changes_nothing_else(direct: Run, proxy: FaultProxy, tmp_path: Path) -> None:
    # The benchmark's distant-S3 setting (bench/product.py): every answer 20 ms late.
    proxy.latency(0.02)
    got = run(proxy.url, tmp_path)
    report("latency 20 ms", proxy, got.seconds)
    got.same_result(direct)
    assert proxy.faults == 0
    assert proxy.injected["slow"] == proxy.requests == direct.list_calls + direct.get_calls


def test_permanent_get_failure_fails_the_batch_without_staging(direct: Run, proxy: FaultProxy,
                                                              tmp_path: Path) -> None:
    objects = [ObjectInfo(*o) for o in direct.new]
    broken = objects[4].key
    proxy.always(503, "ServiceUnavailable", op="get", key=broken)
    staging = tmp_path / "staging"
    t0 = time.monotonic()
    with pytest.raises(DownloadError) as err:
        transform_batch(S3Source(client(proxy.url), BUCKET), objects, mav=MAV.name, staging_dir=str(staging))
    report("permanent GET failure", proxy, time.monotonic() - t0)
    message = str(err.value)
    assert f"1 of {len(objects)} objects could not be downloaded" in message
    assert "its files stay pending" in message
    assert f"{broken}: SourceError: S3 GET s3://{BUCKET}/{broken}" in message
    assert "failed after 8 retries: ServiceUnavailable (Service is unable to handle request.)" in message
    assert os.environ["AWS_ACCESS_KEY_ID"] not in message and os.environ["AWS_SECRET_ACCESS_KEY"] not in message
    # Config(retries={"max_attempts": 8}) means 8 RETRIES, 9 attempts in all (unlike
    # AWS_MAX_ATTEMPTS and the config file's max_attempts, which count the first attempt);
    # the other objects were read meanwhile
    assert proxy.injected == {"503 ServiceUnavailable": 9}
    assert proxy.ops["get"] == len(objects) + 8
    # nothing staged: no rows of the batch reach the warehouse or the ledger this try
    assert not staging.exists() or not any(staging.rglob("*.parquet"))


def test_permanent_list_failure_names_the_prefix_and_the_code(direct: Run, proxy: FaultProxy,
                                                              tmp_path: Path) -> None:
    # One retry only (max_attempts=1): with the pipeline's 8, a SlowDown that never ends costs
    # 0.5 * (1+2+4+8+16+20+20+20) = 45.5 s of backoff on average per call, plus the waits of the
    # adaptive token bucket. The exhaustion of all 8 retries is test_permanent_get_failure's.
    proxy.always(503, "SlowDown", op="list")
    eng = appdb.engine(f"sqlite:///{tmp_path / 'app.db'}")
    t0 = time.monotonic()
    with pytest.raises(SourceError) as err:
        discover(S3Source(client(proxy.url, max_attempts=1), BUCKET), eng, MAV, START, END)
    report("permanent LIST failure", proxy, time.monotonic() - t0)
    assert str(err.value) == (
        f"S3 LIST s3://{BUCKET}/AWSLogs/ (endpoint {proxy.url}) failed after 1 retry: SlowDown (Please reduce "
        "your request rate.); check the endpoint and the bucket's request rate (other readers of the bucket, "
        "fewer download threads), then re-run"
    )
    assert proxy.requests == 2
    assert err.value.__cause__ is not None  # botocore's error stays chained for the task log


@pytest.mark.parametrize(("op", "action"), [("list", "s3:ListBucket"), ("get", "s3:GetObject")])
def test_access_denied_is_not_retried_and_names_the_action(direct: Run, proxy: FaultProxy, op: str,
                                                           action: str) -> None:
    proxy.always(403, "AccessDenied", op=op)
    source = S3Source(client(proxy.url), BUCKET)
    with pytest.raises(SourceError) as err:
        source.list_objects("AWSLogs/") if op == "list" else source.get(direct.new[0][0])
    message = str(err.value)
    assert "was refused: AccessDenied (Access Denied)" in message
    assert action in message and "trailhouse mav validate" in message
    assert "retries" not in message and "request rate" not in message
    assert proxy.requests == 1


def test_a_missing_object_keeps_its_s3_code(direct: Run, s3_endpoint: str) -> None:
    # Callers (the integrity check) tell "gone from the bucket" apart from a failure by the
    # code, as they did on botocore's ClientError.
    source = S3Source(client(s3_endpoint), BUCKET)
    with pytest.raises(SourceError, match=r"S3 GET s3://trailhouse-faults/AWSLogs/gone\.json\.gz .* failed: "
                                          r"NoSuchKey \(.*\); the object was deleted after it was listed") as err:
        source.get("AWSLogs/gone.json.gz")
    assert err.value.code == "NoSuchKey"
    assert err.value.response["Error"]["Code"] == "NoSuchKey"
