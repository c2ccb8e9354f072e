"""Test set-up: an isolated trailhouse home and Airflow home, a local S3 endpoint, PostgreSQL."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# Airflow reads its configuration when first imported: point it at a throw-away home
# before any test module imports it.
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="trailhouse-tests-"))
os.environ["TRAILHOUSE_HOME"] = str(_SESSION_DIR / "home")
os.environ["AIRFLOW_HOME"] = str(_SESSION_DIR / "airflow")
for _name in ("AIRFLOW__CORE__DAGS_FOLDER", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CORE__EXECUTOR"):
    os.environ.pop(_name, None)
# Admin calls to moto use these; the MAV's own key pair always comes from its connection.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing-admin")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing-admin")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

from trailhouse import airflow_env  # noqa: E402

airflow_env.configure()

PG_ADMIN_URL = os.environ.get("TRAILHOUSE_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def th_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh MAV folder, warehouse and app database for one test (Airflow's home is shared)."""
    home = tmp_path / "home"
    monkeypatch.setenv("TRAILHOUSE_MAV_DIR", str(home / "mavs"))
    monkeypatch.setenv("TRAILHOUSE_WAREHOUSE", str(home / "warehouse"))
    monkeypatch.setenv("TRAILHOUSE_DB_URL", f"sqlite:///{home / 'trailhouse.db'}")
    return home


@pytest.fixture(scope="session")
def airflow_db() -> None:
    airflow_env.ensure_db()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 (a real HTTP endpoint, as boto3 sees AWS)."""
    from trailhouse.dev.servers import moto_server

    with moto_server() as url:
        yield url


@pytest.fixture
def s3_admin(s3_endpoint: str):  # noqa: ANN201 - a boto3 client
    import boto3

    return boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A new, empty PostgreSQL database on the local server, dropped afterwards."""
    import sqlalchemy as sa

    name = f"trailhouse_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_URL} (start it or set TRAILHOUSE_TEST_PG): {exc}")
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        from trailhouse.db import appdb

        eng = appdb._ENGINES.pop(url, None)
        if eng is not None:
            eng.dispose()
        appdb._MIGRATED.discard(url)
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
