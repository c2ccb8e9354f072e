"""Faults beyond SIGKILL: the environment failing under a run, then a later run over the same files.

`python -m trailhouse.dev.envfaults --out docs/reliability.md` writes the table; `make test` runs
the same scenarios (tests/test_env_faults.py). One bucket on a local S3 endpoint (moto, with IAM
authentication on: a deleted key is refused as AWS refuses it) is read by a MAV per scenario,
each with its own warehouse and its own app database on PostgreSQL:

- `s3-403-midway`: a fault proxy in front of S3 answers 403 AccessDenied to every object GET
  after the first few, as when the key pair's policy is changed during a run;
- `key-rotated`: after a good run, the IAM user's key is rotated (a new key created, the old
  one deleted); the next run still holds the old key, then the operator stores the new one;
- `app-db-dropped`: PostgreSQL drops every connection to the app database right after the
  Delta commit, before the ledger write (what a restart does to its clients);
- `disk-full-at-commit`: the warehouse's filesystem (a small tmpfs) fills up just before the
  Delta commit.

Each scenario's faulted run must fail with a message that names the cause (or carry on by
itself), and the next run must leave the warehouse and the alerts equal to a fault-free run
over the same files: nothing lost, nothing twice.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from trailhouse.dev import faultsuite
from trailhouse.dev.faultsuite import Snapshot, env_overrides

BUCKET = "trailhouse-env-faults"
END_DAY = date(2026, 11, 20)
AT = datetime(2026, 11, 21, 6, 0, tzinfo=UTC)
PG_ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"

WHAT = {
    "s3-403-midway": "S3 answers 403 AccessDenied to every object GET after the first 3 (policy changed mid-run)",
    "key-rotated": "the key pair rotated between two runs (old key deleted), then the new key stored",
    "app-db-dropped": "PostgreSQL drops every app-database connection after the Delta commit, before the ledger",
    "disk-full-at-commit": "the warehouse's disk fills up just before the Delta commit",
}
SCENARIOS = tuple(WHAT)


@dataclass
class EnvOutcome:
    fault: str
    what: str
    faulted_run: str  # "failed" or "carried on"
    message: str  # what the faulted run said (its failure's reason)
    recovered: bool  # the next run succeeded
    events_lost: int
    events_duplicated: int
    alerts_lost: int
    alerts_duplicated: int
    seconds: float

    @property
    def clean(self) -> bool:
        return self.recovered and not any((self.events_lost, self.events_duplicated, self.alerts_lost,
                                           self.alerts_duplicated))


@contextlib.contextmanager
def small_filesystem(path: Path, size_mb: int = 64) -> Iterator[bool]:
    """Mount a tmpfs of `size_mb` at `path` (needs root); yields False when it cannot be mounted."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0700", "tmpfs", str(path)],
                          capture_output=True, check=False)
    try:
        yield done.returncode == 0
    finally:
        if done.returncode == 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


@contextlib.contextmanager
def pg_database(admin_url: str) -> Iterator[str]:
    """A new PostgreSQL database for one scenario's app database, dropped afterwards."""
    import sqlalchemy as sa

    name = f"trailhouse_envfault_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


class EnvLab:
    """The bucket behind moto (IAM auth on), a fault proxy, the reader's key pair and the runs."""

    def __init__(self, workdir: Path, endpoint: str, proxy: Any) -> None:
        self.workdir, self.endpoint, self.proxy = workdir, endpoint, proxy
        self.admin: tuple[str, str] = ("", "")
        self.reader: tuple[str, str] = ("", "")
        self._late: set[str] = set()

    # ---------------------------------------------------------------- set-up

    def client(self, service: str, key: tuple[str, str] | None = None) -> Any:
        import boto3

        key_id, secret = key or self.admin
        return boto3.client(service, endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=key_id, aws_secret_access_key=secret)

    def setup(self) -> None:
        """Bucket, data, an admin and the read-only user, then IAM authentication on for every call."""
        import urllib.request

        from trailhouse import settings
        from trailhouse.dev.synth.files import write_to_s3
        from trailhouse.dev.synth.world import SynthSpec

        iam = self.client("iam", ("setup", "setup"))
        iam.create_user(UserName="lab-admin")
        iam.put_user_policy(UserName="lab-admin", PolicyName="all", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
        k = iam.create_access_key(UserName="lab-admin")["AccessKey"]
        self.admin = (k["AccessKeyId"], k["SecretAccessKey"])
        policy = (settings.PROJECT_ROOT / "docs" / "iam-policy.json").read_text().replace("BUCKET", BUCKET)
        iam.create_user(UserName="lab-reader")
        iam.put_user_policy(UserName="lab-reader", PolicyName="read", PolicyDocument=policy)
        k = iam.create_access_key(UserName="lab-reader")["AccessKey"]
        self.reader = (k["AccessKeyId"], k["SecretAccessKey"])
        s3 = self.client("s3", ("setup", "setup"))
        s3.create_bucket(Bucket=BUCKET)
        self.spec = SynthSpec(seed=23, accounts=2, days=2, end=END_DAY, files_per_region_day=4, events_per_file=20,
                              regions=("us-east-1", "eu-west-1"), bucket=BUCKET)
        write_to_s3(self.spec, s3, BUCKET)
        # From here on moto checks every request's signature against IAM's keys, as AWS does.
        req = urllib.request.Request(f"{self.endpoint}/moto-api/reset-auth", data=b"0", method="POST",
                                     headers={"Content-Type": "application/octet-stream"})
        urllib.request.urlopen(req, timeout=10).read()

    def add_late_file(self) -> None:
        from trailhouse.dev.synth.files import late_file

        key, body = late_file(self.spec, datetime(2026, 11, 20, 0, 20, tzinfo=UTC), n_events=5)
        self.client("s3").put_object(Bucket=BUCKET, Key=key, Body=body)
        self._late = {r["eventID"] for r in json.loads(gzip.decompress(body))["Records"]}

    def rotate_reader_key(self) -> tuple[str, str]:
        """A new key for the reader, the old one deleted (what `aws iam` rotation does)."""
        iam = self.client("iam")
        k = iam.create_access_key(UserName="lab-reader")["AccessKey"]
        iam.delete_access_key(UserName="lab-reader", AccessKeyId=self.reader[0])
        old, self.reader = self.reader, (k["AccessKeyId"], k["SecretAccessKey"])
        return old

    # ---------------------------------------------------------------- runs

    def env(self, scenario: str, db_url: str, warehouse: Path | None = None) -> dict[str, str]:
        home = self.workdir / scenario
        return {
            "TRAILHOUSE_HOME": str(home),
            "TRAILHOUSE_MAV_DIR": str(home / "mavs"),
            "TRAILHOUSE_WAREHOUSE": str(warehouse or home / "warehouse"),
            "TRAILHOUSE_DB_URL": db_url,
            "TRAILHOUSE_FAULT": "",
        }

    def store_mav(self, name: str, key: tuple[str, str], *, via_proxy: bool = False) -> None:
        from trailhouse import settings
        from trailhouse.config import Mav
        from trailhouse.pipeline import setup

        endpoint = self.proxy.url if via_proxy else self.endpoint
        mav = Mav(name=name, bucket=BUCKET, endpoint_url=endpoint, lookback_hours=48)
        setup.add_mav(settings.load().mav_dir, mav, key)

    def run(self, name: str, at: datetime) -> dict[str, Any]:
        from trailhouse.deployment import Deployment
        from trailhouse.pipeline import runs

        return runs.run_mav(Deployment(), name, quiet=True, at=at)

    def snapshot(self) -> Snapshot:
        from trailhouse.deployment import Deployment

        return faultsuite.snapshot(Deployment())


def compare(base: Snapshot, got: Snapshot) -> dict[str, int]:
    """The kill suite's comparison, events and alerts only (these scenarios send no mail)."""
    return {k: v for k, v in faultsuite.compare(base, got, [], []).items() if k.startswith(("events", "alerts"))}


def _reason(result: dict[str, Any]) -> str:
    return str(result.get("message") or "")


def run_suite(workdir: Path, *, pg_admin_url: str = PG_ADMIN_URL, scenarios: tuple[str, ...] = SCENARIOS,
              say: Callable[[str], Any] = print) -> list[EnvOutcome]:
    """Run the scenarios against one bucket; the disk scenario needs root (a tmpfs) or is left out."""
    from trailhouse.dev.faultproxy import FaultProxy
    from trailhouse.dev.servers import moto_server

    outcomes: list[EnvOutcome] = []
    with moto_server() as endpoint, FaultProxy(endpoint) as proxy, contextlib.ExitStack() as stack:
        lab = EnvLab(workdir, endpoint, proxy)
        lab.setup()

        def scenario_env(name: str, warehouse: Path | None = None) -> dict[str, str]:
            return lab.env(name, stack.enter_context(pg_database(pg_admin_url)), warehouse)

        # key-rotated's first run sees the bucket before the late file; every other run after it.
        rotated_env = scenario_env("key-rotated")
        if "key-rotated" in scenarios:
            with env_overrides(rotated_env):
                lab.store_mav("rotated", lab.reader)
                first = lab.run("rotated", AT)
                assert not first["failed_tasks"], f"key-rotated: the run before the rotation failed: {_reason(first)}"
        lab.add_late_file()
        old_key = lab.rotate_reader_key()

        t0 = time.monotonic()
        with env_overrides(scenario_env("baseline")):
            lab.store_mav("baseline", lab.reader)
            result = lab.run("baseline", AT)
            assert not result["failed_tasks"], f"the fault-free run failed: {_reason(result)}"
            base = lab.snapshot()
        say(f"baseline: {len(base.event_ids)} events, {len(base.alerts)} alerts ({time.monotonic() - t0:.0f}s)")

        for i, name in enumerate(scenarios, 1):
            t0 = time.monotonic()
            at = AT + timedelta(seconds=i)
            env = rotated_env
            if name == "disk-full-at-commit":
                mount = workdir / "small-disk"
                mounted = stack.enter_context(small_filesystem(mount))
                if not mounted:
                    say(f"{name}: left out (mounting a tmpfs needs root)")
                    continue
                env = scenario_env(name, mount / "warehouse")
            elif name != "key-rotated":
                env = scenario_env(name)
            with env_overrides(env):
                mav = name.replace("-", "_")[:30]
                if name == "s3-403-midway":
                    lab.store_mav(mav, lab.reader, via_proxy=True)
                    proxy.clear().fail_after(3, op="get")
                    faulted = lab.run(mav, at)
                    proxy.clear()
                elif name == "key-rotated":
                    mav = "rotated"
                    faulted = lab.run(mav, at)  # still holding the deleted key
                    assert old_key != lab.reader
                    csv_path = lab.workdir / "new-key.csv"  # what the IAM console hands out
                    csv_path.write_text(f"Access key ID,Secret access key\n{lab.reader[0]},{lab.reader[1]}\n")
                    subprocess.run([sys.executable, "-m", "trailhouse.cli", "mav", "rotate-key", mav,
                                    "--credentials-csv", str(csv_path)], check=True, capture_output=True)
                    csv_path.unlink()
                elif name == "app-db-dropped":
                    lab.store_mav(mav, lab.reader)
                    with env_overrides({"TRAILHOUSE_FAULT": "commit.after_delta_commit:drop-db"}):
                        faulted = lab.run(mav, at)
                else:
                    lab.store_mav(mav, lab.reader)
                    with env_overrides({"TRAILHOUSE_FAULT": "commit.before_delta_commit:fill-disk"}):
                        faulted = lab.run(mav, at)
                    (Path(env["TRAILHOUSE_WAREHOUSE"]) / ".fill-disk").unlink(missing_ok=True)
                retry = lab.run(mav, at + timedelta(minutes=1))
                diff = compare(base, lab.snapshot())
            out = EnvOutcome(name, WHAT[name], "failed" if faulted["failed_tasks"] else "carried on",
                             _reason(faulted), not retry["failed_tasks"], seconds=round(time.monotonic() - t0, 1),
                             **diff)
            outcomes.append(out)
            say(f"{name}: faulted run {out.faulted_run} ({out.message[:200]!r}); next run "
                f"{'succeeded' if out.recovered else 'FAILED: ' + _reason(retry)}; {diff}")
    return outcomes


def render(outcomes: list[EnvOutcome], command: str) -> str:
    head = ("| fault | what happened | the faulted run | what it said | next run | events lost "
            "| events duplicated | alerts lost | alerts duplicated |")
    rows = [head, "|" + "---|" * 9]
    for o in outcomes:
        said = re.sub(r"AWSLogs/\S+?\.json\.gz", "AWSLogs/...json.gz", o.message)
        said = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", said).replace("|", "\\|").replace("\n", " ")
        said = said if len(said) <= 700 else said[:697] + "..."
        rows.append(f"| `{o.fault}` | {o.what} | {o.faulted_run} | {said or '-'} "
                    f"| {'succeeded' if o.recovered else 'FAILED'} | {o.events_lost} | {o.events_duplicated} "
                    f"| {o.alerts_lost} | {o.alerts_duplicated} |")
    return "\n".join(rows) + f"\n\nProduced by `{command}` on {datetime.now(UTC):%Y-%m-%d}.\n"


def main(argv: list[str] | None = None) -> int:
    import os

    p = argparse.ArgumentParser(prog="python -m trailhouse.dev.envfaults", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, help="write the table into this markdown file (between the markers)")
    p.add_argument("--pg", default=os.environ.get("TRAILHOUSE_TEST_PG", PG_ADMIN_URL),
                   help="a PostgreSQL URL allowed to create databases (default: the local server)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="trailhouse-envfaults-") as tmp:
        # A throw-away Airflow home, set before Airflow is first imported (it reads it then).
        os.environ["AIRFLOW_HOME"] = str(Path(tmp) / "airflow")
        from trailhouse import airflow_env

        airflow_env.configure()
        airflow_env.ensure_db()
        outcomes = run_suite(Path(tmp), pg_admin_url=args.pg)
    table = render(outcomes, "python -m trailhouse.dev.envfaults --out docs/reliability.md")
    print(table)
    if args.out:
        start, end = "<!-- environment fault table -->", "<!-- /environment fault table -->"
        text = args.out.read_text() if args.out.exists() else f"{start}\n{end}\n"
        before, rest = text.split(start, 1)
        after = rest.split(end, 1)[1]
        args.out.write_text(f"{before}{start}\n{table}{end}{after}")
    return 0 if all(o.clean for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
