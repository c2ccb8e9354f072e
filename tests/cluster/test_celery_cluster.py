"""The MAV DAGs on Airflow's CeleryExecutor, for real: the production shape of docker-compose.yaml on one machine.

PostgreSQL (Airflow's metadata DB, Celery's result backend, trailhouse's app DB), Redis as
the Celery broker, a moto S3 server holding both the CloudTrail bucket and the warehouse,
and real Airflow processes: api-server, scheduler, dag-processor and two Celery workers.
One triggered run of `trailhouse_mav_<name>` must succeed with its mapped transforms spread
over both workers, and leave exactly the synthetic events in the Delta table on S3.

A second test races two commits into one Delta table on S3 from two processes.

`make test-cluster` runs these (`make test` leaves them out). Needs PostgreSQL on
127.0.0.1:5432 (user postgres, trust; TRAILHOUSE_TEST_PG overrides) and Redis on
127.0.0.1:6379 (TRAILHOUSE_TEST_REDIS overrides).
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import secrets
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import sqlalchemy as sa

from trailhouse import airflow_env, settings
from trailhouse.dev.servers import free_port, moto_server
from trailhouse.dev.synth.files import generate, write_to_s3
from trailhouse.dev.synth.world import SynthSpec

pytestmark = pytest.mark.cluster

PG_ADMIN_URL = os.environ.get("TRAILHOUSE_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TRAILHOUSE_TEST_REDIS", "redis://127.0.0.1:6379")
PYTHON = sys.executable
VENV_BIN = Path(sys.executable).parent
MAV = "cluster"
DAG_ID = f"trailhouse_mav_{MAV}"
# Days in the past, so the run's logical date is too (the scheduler runs no future dates).
END_DAY = datetime.now(UTC).date() - timedelta(days=5)
# Triggered at 06:30 of the day after: the data interval is 05:00-06:00, and 72 h of look-back
# reach back over both synthetic days and the re-delivery file dated the day after END_DAY.
LOGICAL_DATE = datetime.combine(END_DAY + timedelta(days=1), datetime.min.time(), tzinfo=UTC) + timedelta(
    hours=6, minutes=30)
LOOKBACK_HOURS = 72
# 25 log files of ~5 KB: batches of 20,000 bytes make 8 mapped transforms.
SPEC = dict(seed=21, accounts=2, days=2, end=END_DAY, files_per_region_day=3, events_per_file=20,
            regions=("us-east-1", "eu-west-1"))
BATCH_BYTES = 20_000
WORKERS = ("airflow-worker-1", "airflow-worker-2")  # as the services of docker-compose.yaml
RUN_TIMEOUT = 180  # seconds for the DAG run once triggered
START_TIMEOUT = 90  # seconds for each component to come up
BUDGET = 270  # seconds for the whole cluster test, set-up included: every wait is cut to fit


# --------------------------------------------------------------------------- infrastructure


def _pg_url(name: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


@contextlib.contextmanager
def _pg_database(prefix: str) -> Iterator[str]:
    """A new PostgreSQL database (as the pg_url fixture makes them), dropped on exit."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_URL} (start it or set TRAILHOUSE_TEST_PG): {exc}")
    try:
        yield _pg_url(name)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextlib.contextmanager
def _redis_db() -> Iterator[str]:
    """An empty Redis database number as the Celery broker, flushed before and after."""
    import redis

    chosen = None
    try:
        for n in range(15, 0, -1):  # the high numbers: db 0 is everybody's default
            client = redis.Redis.from_url(f"{REDIS_URL}/{n}")
            if client.dbsize() == 0:
                chosen = client
                break
            client.close()
    except redis.exceptions.ConnectionError as exc:
        pytest.fail(f"Redis is not reachable at {REDIS_URL} (start it or set TRAILHOUSE_TEST_REDIS): {exc}")
    if chosen is None:
        pytest.fail(f"no empty Redis database among 1..15 on {REDIS_URL}")
    n = chosen.connection_pool.connection_kwargs["db"]
    chosen.flushdb()
    try:
        yield f"{REDIS_URL}/{n}"
    finally:
        chosen.flushdb()
        chosen.close()


def _hostname_module(folder: Path) -> Path:
    """`[core] hostname_callable` for the workers: each reports its own name, as two containers would.

    Both workers run on this one machine, so the default (the FQDN) would give task
    instances the same hostname on either; docker-compose.yaml's workers are separate hosts.
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cluster_hostname.py").write_text(textwrap.dedent('''\
        import os


        def hostname() -> str:
            return os.environ["TRAILHOUSE_TEST_WORKER_HOST"]
    '''))
    return folder


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:])


@dataclass
class Cluster:
    tmp: Path
    env: dict[str, str]
    api_url: str
    metadata_url: str
    app_db_url: str
    broker_url: str
    marker: str
    procs: list[Proc] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    deadline: float = field(default_factory=lambda: time.monotonic() + BUDGET)

    def remaining(self, timeout: float) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"the cluster test ran out of its {BUDGET}s budget\n{self.diagnostics()}")
        return min(timeout, left)

    # -- processes

    def spawn(self, name: str, args: list[str], extra_env: dict[str, str] | None = None) -> Proc:
        log = self.tmp / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as out:
            popen = subprocess.Popen(
                [PYTHON, "-m", "airflow", *args], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**self.env, **(extra_env or {})}, cwd=self.tmp,
                # Its own process group: teardown ends it with everything it started.
                start_new_session=True,
            )
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def run(self, args: list[str], *, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """A one-off command with the cluster's environment; fails the test with its output."""
        proc = subprocess.run(args, env=self.env, cwd=self.tmp, capture_output=True, text=True,
                              timeout=self.remaining(timeout))
        if proc.returncode != 0:
            pytest.fail(f"`{' '.join(args[:4])} ...` exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return proc

    def check_alive(self) -> None:
        for p in self.procs:
            if p.popen.poll() is not None:
                pytest.fail(f"{p.name} exited with {p.popen.returncode}\n{self.diagnostics()}")

    def diagnostics(self) -> str:
        parts = []
        for p in self.procs:
            state = "running" if p.popen.poll() is None else f"exited {p.popen.returncode}"
            parts.append(f"----- {p.name} ({state}), {p.log}:\n{p.tail()}")
        with contextlib.suppress(Exception):
            parts.append(self._task_states())
        return "\n".join(parts)

    def _task_states(self) -> str:
        rows = self.query(
            "SELECT run_id, task_id, map_index, state, try_number, hostname FROM task_instance "
            "WHERE dag_id = :d ORDER BY run_id, task_id, map_index", d=DAG_ID)
        lines = ["----- task instances:"] + [" ".join(str(v) for v in r) for r in rows]
        logs = sorted((Path(self.env["AIRFLOW_HOME"]) / "logs").glob(f"dag_id={DAG_ID}/**/attempt=*.log"))
        bad = {(r[1], r[2]) for r in rows if r[3] in ("failed", "up_for_retry", "upstream_failed")}
        for path in logs:
            task = next((part.split("=", 1)[1] for part in path.parts if part.startswith("task_id=")), "")
            idx = next((int(part.split("=", 1)[1]) for part in path.parts if part.startswith("map_index=")), -1)
            if (task, idx) in bad:
                lines.append(f"----- task log {path}:\n" + "\n".join(path.read_text(errors="replace").splitlines()[-60:]))
        return "\n".join(lines)

    def stop(self) -> list[str]:
        """SIGTERM every process group (warm shutdown), then SIGKILL; returns what had to be killed."""
        killed = []
        for p in reversed(self.procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for p in reversed(self.procs):
            try:
                p.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                killed.append(p.name)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.popen.pid, signal.SIGKILL)  # children left in the group (pool processes)
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.popen.wait(timeout=5)
        # Anything started by these processes that left their group still carries the marker.
        for pid in _marked_pids(self.marker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed.append(f"pid {pid}")
        return killed

    # -- metadata database and REST API

    def query(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        eng = sa.create_engine(self.metadata_url, poolclass=sa.pool.NullPool)
        try:
            with eng.connect() as conn:
                return [tuple(r) for r in conn.execute(sa.text(sql), params)]
        finally:
            eng.dispose()

    def api(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.api_url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            pytest.fail(f"{method} {path} -> HTTP {exc.code}: {exc.read()[:2000]!r}\n{self.diagnostics()}")

    def wait(self, what: str, ready: Any, timeout: float = START_TIMEOUT, every: float = 0.5) -> Any:
        t0 = time.monotonic()
        timeout = self.remaining(timeout)
        deadline = t0 + timeout
        while True:
            self.check_alive()
            try:
                value = ready()
            except Exception:  # not up yet (connection refused, table missing, ...)
                value = None
            if value:
                self.timings[what] = round(time.monotonic() - t0, 1)
                return value
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{self.diagnostics()}")
            time.sleep(every)


def _marked_pids(marker: str) -> list[int]:
    """Processes of this user whose environment carries the cluster's marker variable."""
    needle = f"TRAILHOUSE_CLUSTER_TEST={marker}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def _http_ok(url: str) -> Any:
    """The JSON body of a 200 answer (True when it is not JSON), else None."""
    with urllib.request.urlopen(url, timeout=2) as resp:
        if resp.status != 200:
            return None
        body = resp.read()
    try:
        return json.loads(body)
    except ValueError:
        return True


def _celery_nodes(broker_url: str) -> set[str]:
    from celery import Celery

    app = Celery(broker=broker_url)
    try:
        return {name for reply in app.control.ping(timeout=1.0) or [] for name in reply}
    finally:
        app.close()


def _reader_key(endpoint: str, bucket: str, folder: Path) -> Path:
    """The MAV's read-only IAM user with the setup guide's policy; its key pair as the console's CSV."""
    import boto3

    iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1")
    user = f"cluster-reader-{uuid.uuid4().hex[:6]}"
    policy = (settings.PROJECT_ROOT / "docs" / "iam-policy.json").read_text().replace("BUCKET", bucket)
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName="read", PolicyDocument=policy)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    path = folder / f"{user}_accessKeys.csv"
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([["Access key ID", "Secret access key"], [key["AccessKeyId"], key["SecretAccessKey"]]])
    return path


def _environment(explicit: dict[str, str]) -> dict[str, str]:
    """The environment of every Airflow process: `explicit`, then airflow_env.configure()'s defaults.

    configure() only fills what is unset (a deployment's own AIRFLOW__* win); it also makes the
    Fernet key, kept owner-only in AIRFLOW_HOME. Nothing of the test process's own Airflow,
    trailhouse or AWS settings leaks in.
    """
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "TRAILHOUSE_", "AWS_"))}
    base["PATH"] = f"{VENV_BIN}{os.pathsep}{base.get('PATH', '')}"
    base.update(explicit)
    with mock.patch.dict(os.environ, base, clear=True):
        airflow_env.configure()
        return dict(os.environ)


# --------------------------------------------------------------------------- the cluster test


@pytest.fixture
def warehouse_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The warehouse store as docker-compose.yaml gives it to every Airflow process (moto for MinIO)."""
    env = {
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ALLOW_HTTP": "true",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "warehouse-writer",
        "AWS_SECRET_ACCESS_KEY": "warehouse-writer-secret",
        # boto3 (the MAV's CloudTrail reads) keeps to the MAV's own endpoint_url.
        "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)  # this process reads the warehouse with the same settings
    return env


@pytest.fixture
def cluster(tmp_path: Path, pg_url: str, s3_endpoint: str, warehouse_env: dict[str, str]) -> Iterator[Cluster]:
    t0 = time.monotonic()
    api_port = free_port()
    warehouse_bucket = f"warehouse-{uuid.uuid4().hex[:8]}"
    import boto3

    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=warehouse_bucket)
    marker = uuid.uuid4().hex
    with _pg_database("trailhouse_airflow") as metadata_url, _redis_db() as broker_url:
        # The driver named: SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3, not installed.
        result_backend = "db+" + metadata_url
        env = _environment({
            **warehouse_env,
            "TRAILHOUSE_CLUSTER_TEST": marker,
            "AIRFLOW_HOME": str(tmp_path / "airflow"),
            "TRAILHOUSE_HOME": str(tmp_path / "home"),
            "TRAILHOUSE_MAV_DIR": str(tmp_path / "home" / "mavs"),
            "TRAILHOUSE_DB_URL": pg_url,
            "TRAILHOUSE_WAREHOUSE": f"s3://{warehouse_bucket}/warehouse",
            "TRAILHOUSE_BATCH_BYTES": str(BATCH_BYTES),
            "TRAILHOUSE_DOWNLOAD_THREADS": "4",
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url,
            "AIRFLOW__CELERY__BROKER_URL": broker_url,
            "AIRFLOW__CELERY__RESULT_BACKEND": result_backend,
            "AIRFLOW__CORE__DAGS_FOLDER": str(settings.PROJECT_ROOT / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
            "AIRFLOW__API__PORT": str(api_port),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(tmp_path / "home" / "airflow-passwords.json"),
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(free_port()),
            # Only the run this test triggers: no hourly run of "now" beside it.
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        })
        c = Cluster(tmp=tmp_path, env=env, api_url=f"http://127.0.0.1:{api_port}", metadata_url=metadata_url,
                    app_db_url=pg_url, broker_url=broker_url, marker=marker)
        c.timings["setup"] = round(time.monotonic() - t0, 1)
        try:
            yield c
        finally:
            leftovers = c.stop()
            remaining = _marked_pids(marker)
            print(f"\ncluster timings (s): {c.timings}; killed on teardown: {leftovers or 'none'}")
            assert remaining == [], f"processes left running after teardown: {remaining}"


def test_mav_dag_runs_on_celery_workers(cluster: Cluster, s3_endpoint: str, tmp_path: Path) -> None:
    import boto3

    c = cluster
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    source_bucket = f"cloudtrail-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=source_bucket)
    spec = SynthSpec(**SPEC, bucket=source_bucket)  # type: ignore[arg-type]
    written = write_to_s3(spec, s3, source_bucket)
    log_keys = {k for k, _ in generate(spec) if "/CloudTrail/" in k}
    assert len(log_keys) == written.log_files

    # docker-compose.yaml's airflow-init, then the documented `trailhouse mav add` (YAML + connection).
    t = time.monotonic()
    c.run([PYTHON, "-m", "airflow", "db", "migrate"], timeout=180)
    c.timings["db migrate"] = round(time.monotonic() - t, 1)
    t = time.monotonic()
    csv_path = _reader_key(s3_endpoint, source_bucket, tmp_path)
    c.run([str(VENV_BIN / "trailhouse"), "mav", "add", MAV, "--bucket", source_bucket, "--credentials-csv",
           str(csv_path), "--endpoint-url", s3_endpoint, "--lookback-hours", str(LOOKBACK_HOURS),
           "--description", "CeleryExecutor cluster test"])
    c.timings["mav add"] = round(time.monotonic() - t, 1)
    assert (Path(c.env["TRAILHOUSE_MAV_DIR"]) / f"{MAV}.yaml").exists()

    t = time.monotonic()
    c.spawn("api-server", ["api-server", "--host", "127.0.0.1", "--port", c.env["AIRFLOW__API__PORT"]])
    c.spawn("scheduler", ["scheduler"])
    c.spawn("dag-processor", ["dag-processor"])
    hostnames = _hostname_module(tmp_path / "pylib")
    for i, host in enumerate(WORKERS, start=1):
        c.spawn(f"worker{i}", ["celery", "worker", "--celery-hostname", f"worker{i}@%h", "--concurrency", "2"], {
            "TRAILHOUSE_TEST_WORKER_HOST": host,
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "cluster_hostname.hostname",
            "PYTHONPATH": str(hostnames),
            # Each worker serves its task logs on its own port (one machine, two "hosts").
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        })
    health = c.wait("api-server", lambda: _http_ok(f"{c.api_url}/api/v2/monitor/health"))
    assert health["metadatabase"]["status"] == "healthy", health
    sched_port = c.env["AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT"]
    c.wait("scheduler", lambda: _http_ok(f"http://127.0.0.1:{sched_port}/health"))
    nodes = c.wait("workers", lambda: nodes if len(nodes := _celery_nodes(c.broker_url)) == 2 else None)
    assert {n.split("@", 1)[0] for n in nodes} == {"worker1", "worker2"}, nodes
    c.wait("DAG parsed", lambda: c.query(
        "SELECT 1 FROM dag d JOIN serialized_dag s ON s.dag_id = d.dag_id WHERE d.dag_id = :d AND NOT d.is_paused",
        d=DAG_ID))
    c.timings["components up"] = round(time.monotonic() - t, 1)

    # Trigger through the REST API, as the UI does: the simple auth manager's generated password.
    passwords = json.loads(Path(c.env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]).read_text())
    token = c.api("POST", "/auth/token", {"username": "admin", "password": passwords["admin"]})["access_token"]
    run = c.api("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", {"logical_date": LOGICAL_DATE.isoformat()}, token)
    run_id = run["dag_run_id"]
    interval = (datetime.fromisoformat(run["data_interval_start"]), datetime.fromisoformat(run["data_interval_end"]))
    assert interval == (LOGICAL_DATE.replace(minute=0) - timedelta(hours=1), LOGICAL_DATE.replace(minute=0))

    def finished() -> str | None:
        bad = c.query("SELECT task_id, map_index, state FROM task_instance WHERE dag_id = :d AND run_id = :r "
                      "AND state IN ('failed', 'up_for_retry', 'upstream_failed')", d=DAG_ID, r=run_id)
        if bad:
            pytest.fail(f"task(s) of {run_id} failed on the cluster: {bad}\n{c.diagnostics()}")
        (state,) = c.query("SELECT state FROM dag_run WHERE dag_id = :d AND run_id = :r", d=DAG_ID, r=run_id)[0]
        return state if state in ("success", "failed") else None

    state = c.wait("dag run", finished, timeout=RUN_TIMEOUT, every=1.0)
    assert state == "success", f"{run_id} ended {state}\n{c.diagnostics()}"

    # -- which worker ran what
    tis = c.query("SELECT task_id, map_index, state, hostname, external_executor_id, "
                  "EXTRACT(EPOCH FROM end_date - start_date) FROM task_instance "
                  "WHERE dag_id = :d AND run_id = :r ORDER BY task_id, map_index", d=DAG_ID, r=run_id)
    placement = "\n".join(f"  {task}[{idx}] {st} on {host} ({dur or 0:.1f}s)" for task, idx, st, host, _, dur in tis)
    print(f"\ntask instances of {run_id}:\n{placement}")
    # Nothing failed, so the verdict task had nothing to say: skipped, never sent to a worker.
    assert [ti[2] for ti in tis if ti[0] == "run_verdict"] == ["skipped"], placement
    tis = [ti for ti in tis if ti[0] != "run_verdict"]
    transforms = [ti for ti in tis if ti[0] == "transform"]
    assert len(transforms) >= 6, f"expected 6+ mapped transforms, got {len(transforms)}"
    assert {ti[2] for ti in tis} == {"success"}, placement
    assert {ti[3] for ti in transforms} == set(WORKERS), f"transforms did not run on both workers:\n{placement}"
    assert {ti[3] for ti in tis} <= set(WORKERS), placement
    # So the commit read batches that the other worker staged on S3.
    commit_host = next(ti[3] for ti in tis if ti[0] == "commit")
    assert any(ti[3] != commit_host for ti in transforms), placement
    # Celery agrees: each task's Celery id is in the log of the worker its hostname names.
    worker_logs = {host: (c.tmp / "logs" / f"worker{i}.log").read_text(errors="replace")
                   for i, host in enumerate(WORKERS, start=1)}
    for task, idx, _, host, celery_id, _ in tis:
        assert celery_id and celery_id in worker_logs[host], f"{task}[{idx}]: Celery task {celery_id} not in {host}'s log"
        other = next(h for h in WORKERS if h != host)
        assert celery_id not in worker_logs[other], f"{task}[{idx}] ran on both workers"

    # -- the warehouse on S3 holds exactly the synthetic events
    from trailhouse.warehouse.table import Warehouse

    wh = Warehouse(c.env["TRAILHOUSE_WAREHOUSE"])
    con = wh.duckdb()
    total, distinct = con.execute("SELECT count(*), count(DISTINCT event_id) FROM cloudtrail_events").fetchone()
    sources = {k for (k,) in con.execute("SELECT DISTINCT source_key FROM cloudtrail_events").fetchall()}
    con.close()
    assert (total, distinct) == (written.unique_events, written.unique_events)
    # Every file brought its events, except the re-delivery: its events were all in the table already.
    redelivered = {k for k in log_keys if f"/{END_DAY + timedelta(days=1):%Y/%m/%d}/" in k}
    assert len(redelivered) == 1 and sources == log_keys - redelivered

    # -- the transforms wrote their files into the table's folder on S3 (no staging copy);
    # the commit added them: every file of the table is one of those, in the table's layout
    bucket, prefix = c.env["TRAILHOUSE_WAREHOUSE"].removeprefix("s3://").split("/", 1)
    staged = s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/_staging/").get("Contents", [])
    assert staged == [], f"a staging copy was written: {staged}"
    written_files = {f"s3://{bucket}/{o['Key']}" for o in s3.list_objects_v2(
        Bucket=bucket, Prefix=f"{prefix}/cloudtrail_events/event_date=").get("Contents", [])}
    table_files = set(wh._table().file_uris())
    assert table_files and table_files <= written_files, (table_files, written_files)

    # -- the ledger (app DB on PostgreSQL) and the run's figures
    app = sa.create_engine(c.app_db_url, poolclass=sa.pool.NullPool)
    with app.connect() as conn:
        ledger = dict(conn.execute(sa.text(
            "SELECT key, status FROM ledger_objects WHERE mav = :m AND kind = 'CloudTrail'"), {"m": MAV}).all())
        figures = conn.execute(sa.text(
            "SELECT status, objects_loaded, events_loaded, duplicates_dropped FROM runs WHERE mav = :m AND run_id = :r"),
            {"m": MAV, "r": run_id}).one()
    app.dispose()
    assert ledger == {k: "loaded" for k in log_keys}
    assert tuple(figures) == ("success", written.log_files, written.unique_events, written.events - written.unique_events)
    print(f"cluster: {written.log_files} files, {written.unique_events} events, {len(transforms)} transforms; "
          f"{len(table_files)} table files written by the transforms")


# --------------------------------------------------------------------------- concurrent writers on S3

# One commit task of a run, as pipeline.commit_step makes it: the staged batch appended to
# the table under the deployment's writer lock (a PostgreSQL advisory lock in the app DB).
_COMMIT_SCRIPT = r"""
import json, sys, time
from pathlib import Path

from trailhouse.db import appdb
from trailhouse.warehouse.table import Warehouse

staged, barrier, me, uri, db_url = sys.argv[1:6]
barrier = Path(barrier)
eng = appdb.engine(db_url)
(barrier / me).touch()
deadline = time.monotonic() + 60
while len(list(barrier.iterdir())) < 2 and time.monotonic() < deadline:
    time.sleep(0.005)  # both writers start their commit at the same moment
started = time.time()
result = Warehouse(uri).commit(staged.split(","), run_id=me, lock=appdb.writer_lock(eng))
print(json.dumps({"inserted": result.inserted, "duplicates": result.duplicates, "version": result.version,
                  "started": started, "ended": time.time()}))
"""


def _recorded_requests(path: Path) -> list[dict[str, Any]]:
    """moto's recording: one JSON object per request. Its server threads append concurrently,
    so two objects may share a line; each object is written whole."""
    text, decoder, at, out = path.read_text(), json.JSONDecoder(), 0, []
    while True:
        while at < len(text) and text[at].isspace():
            at += 1
        if at == len(text):
            return out
        obj, at = decoder.raw_decode(text, at)
        out.append(obj)


def test_concurrent_commits_into_one_delta_table_on_s3(tmp_path: Path, pg_url: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3
    from botocore.exceptions import ClientError

    from trailhouse.db import appdb
    from trailhouse.ingest.source import S3Source
    from trailhouse.ingest.transform import transform_batch
    from trailhouse.warehouse.table import Warehouse

    recording = tmp_path / "moto-requests.jsonl"
    # Its own moto server, recording every request with its headers.
    with moto_server(env={"MOTO_ENABLE_RECORDING": "True", "MOTO_RECORDER_FILEPATH": str(recording)}) as endpoint:
        env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ALLOW_HTTP": "true", "AWS_REGION": "us-east-1",
               "AWS_ACCESS_KEY_ID": "warehouse-writer", "AWS_SECRET_ACCESS_KEY": "warehouse-writer-secret",
               "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true"}
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        s3.create_bucket(Bucket="cloudtrail-src")
        s3.create_bucket(Bucket="warehouse")

        # The store refuses a second create of one key: what delta-rs relies on for its log.
        s3.put_object(Bucket="warehouse", Key="probe", Body=b"1", IfNoneMatch="*")
        with pytest.raises(ClientError) as refused:
            s3.put_object(Bucket="warehouse", Key="probe", Body=b"2", IfNoneMatch="*")
        assert refused.value.response["Error"]["Code"] == "PreconditionFailed"
        s3.delete_object(Bucket="warehouse", Key="probe")

        spec = SynthSpec(seed=5, accounts=2, days=1, end=date(2026, 1, 20), files_per_region_day=4,
                               events_per_file=20, regions=("us-east-1",), bucket="cloudtrail-src", duplicates=0)
        written = write_to_s3(spec, s3, "cloudtrail-src")
        source = S3Source(s3, "cloudtrail-src")
        logs = [o for o in source.list_objects("AWSLogs/") if "/CloudTrail/" in o.key]
        assert len(logs) == written.log_files >= 4
        half = len(logs) // 2
        # Two different batches sharing two files: both writers bring some of the same events.
        batches = [logs[: half + 1], logs[half - 1 :]]
        uri = "s3://warehouse/warehouse"
        # as the transform tasks do: straight into the table's folder, added by the commits
        results = [transform_batch(source, b, mav="race", staging_dir=Warehouse(uri).table_uri) for b in batches]
        staged = [",".join(r.staged) for r in results]
        assert all(staged)
        # The app DB's schema first (as the run's discover task makes it), and the table: the
        # two writers race on their commits only.
        appdb.engine(pg_url)
        Warehouse(uri).ensure_table()

        barrier = tmp_path / "barrier"
        barrier.mkdir()
        procs = [subprocess.Popen([PYTHON, "-c", _COMMIT_SCRIPT, path, str(barrier), f"writer{i}", uri, pg_url],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env={**os.environ, **env})
                 for i, path in enumerate(staged)]
        outputs = []
        try:
            for p in procs:
                out, err = p.communicate(timeout=120)
                assert p.returncode == 0, f"a concurrent commit failed:\n{err[-4000:]}"
                outputs.append(json.loads(out.strip().splitlines()[-1]))
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()

        # They did run at the same time.
        assert max(o["started"] for o in outputs) < min(o["ended"] for o in outputs), outputs
        wh = Warehouse(uri)
        con = wh.duckdb()
        total, distinct = con.execute("SELECT count(*), count(DISTINCT event_id) FROM cloudtrail_events").fetchone()
        con.close()
        # The union of both batches, each event once: nothing lost, nothing doubled.
        assert total == distinct == written.unique_events
        assert sum(o["inserted"] for o in outputs) == written.unique_events
        assert sum(o["inserted"] + o["duplicates"] for o in outputs) == sum(r.rows for r in results)
        writes = {h["version"]: h.get("trailhouse.run_id") for h in wh._table().history() if h["version"] > 0}
        assert sorted(writes.values()) == ["writer0", "writer1"], writes

    # Every commit of the Delta log was a conditional create (If-None-Match: *): two writers
    # can never both write version N, lock or no lock.
    log_puts = []
    for req in _recorded_requests(recording):
        path = req["url"].split("?", 1)[0]
        if req["method"] == "PUT" and "/_delta_log/" in path and path.endswith(".json"):
            log_puts.append((path.rsplit("/", 1)[1], req["headers"].get("If-None-Match")))
    assert len(log_puts) >= 3, log_puts  # the create, then the two commits
    assert all(header == "*" for _, header in log_puts), log_puts
    print(f"\nconcurrent commits: {outputs}; Delta log PUTs: {log_puts}")
