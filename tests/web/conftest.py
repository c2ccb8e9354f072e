"""The web UI's test set-up: a small real warehouse, Airflow users with known passwords, tokens, a real API server.

One warehouse for the whole tests/web session (built in about a second through the real
load path: synth -> discover -> transform -> commit -> evaluate_rules), three Airflow users
of the simple auth manager with passwords from a passwords file we write (the manager keeps
passwords of users already in the file), and one JWT secret shared by this process and the
`airflow api-server` subprocess, so tokens minted here (the way Airflow mints them:
`auth_manager.generate_jwt`) and tokens from the server's own POST /auth/token both verify.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from webhelpers import AIRFLOW_ROLES, MOUNT, ODD_IDS, PASSWORDS, Server, Web

from trailhouse import settings
from trailhouse.deployment import Deployment
from trailhouse.dev.servers import free_port

REPO = settings.PROJECT_ROOT


def _add_odd_ids(bucket: Path, account: str) -> None:
    """A delivery file of `account` whose events' ids hold a slash, CR/LF and other URL-special
    characters (CloudTrail ids are UUIDs, but the id is whatever the file says)."""
    import gzip

    source = sorted(p for p in bucket.rglob(f"{account}_CloudTrail_*.json.gz"))[0]
    template = json.loads(gzip.decompress(source.read_bytes()))["Records"][0]
    records = [{**template, "eventID": event_id} for event_id in ODD_IDS]
    target = source.with_name(source.name.rsplit("_", 1)[0] + "_OddIdsOddIdsOdd1.json.gz")
    target.write_bytes(gzip.compress(json.dumps({"Records": records}).encode()))


def _build_warehouse(home: Path) -> list[str]:
    from trailhouse.alerting import roles
    from trailhouse.config import Mav, save_mav
    from trailhouse.dev.synth.files import write_to_dir
    from trailhouse.dev.synth.world import SynthSpec, account_ids
    from trailhouse.pipeline import steps as pipeline

    today = datetime.now(UTC).date()
    spec = SynthSpec(seed=3, accounts=3, days=2, end=today, events_per_file=20, files_per_region_day=3)
    write_to_dir(spec, home / "bucket")
    _add_odd_ids(home / "bucket", account_ids(spec)[0])
    mav = Mav(name="web", path=str(home / "bucket"))
    dep = Deployment()
    save_mav(dep.settings.mav_dir, mav)
    now = datetime.now(UTC)
    run_id = "manual__web_tests"
    batches = pipeline.discover_step(dep, mav, run_id, now - timedelta(days=3), now + timedelta(days=2), lookback_hours=1)
    results = [pipeline.transform_step(dep, mav, run_id, b) for b in batches]
    pipeline.commit_step(dep, mav, run_id, results)
    evaluation = pipeline.evaluate_step(dep, mav, run_id)
    assert evaluation["new_alerts"], "the synthetic data should raise alerts"
    accounts = account_ids(spec)
    eng = dep.engine
    roles.grant(eng, "ada", admin=True)
    roles.grant(eng, "olivia", accounts=[accounts[0]])
    return accounts


@pytest.fixture(scope="session")
def web(tmp_path_factory: pytest.TempPathFactory, airflow_db: None) -> Iterator[Web]:
    home = tmp_path_factory.mktemp("web")
    passwords_file = home / "passwords.json"
    passwords_file.write_text(json.dumps(PASSWORDS))
    env = {
        "TRAILHOUSE_MAV_DIR": str(home / "mavs"),
        "TRAILHOUSE_WAREHOUSE": str(home / "warehouse"),
        "TRAILHOUSE_DB_URL": f"sqlite:///{home / 'trailhouse.db'}",
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{u}:{r}" for u, r in AIRFLOW_ROLES.items()),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(48),
    }
    from airflow.api_fastapi.auth.managers.base_auth_manager import BaseAuthManager

    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        # Airflow caches its token validator per process: make it read this session's secret.
        BaseAuthManager._get_token_validator.cache_clear()
        accounts = _build_warehouse(home)
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        yield Web(home=home, accounts=accounts, start=today - timedelta(days=3), end=today + timedelta(days=2),
                  passwords_file=passwords_file)
    BaseAuthManager._get_token_validator.cache_clear()


@pytest.fixture(scope="session")
def token(web: Web) -> Any:
    """token(user): a JWT minted by Airflow's auth manager, as POST /auth/token would issue it."""
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    from trailhouse.web.context import auth_manager

    manager = auth_manager()

    def make(username: str, **kwargs: Any) -> str:
        user = SimpleAuthManagerUser(username=username, role=AIRFLOW_ROLES.get(username, "viewer"))
        return manager.generate_jwt(user, **kwargs)

    return make


@pytest.fixture(scope="session")
def asgi_app(web: Web) -> Any:
    """The app mounted at /trailhouse as Airflow mounts it (in-process, no server)."""
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from trailhouse.web.app import create_app

    return Starlette(routes=[Mount(MOUNT, app=create_app())])


@pytest.fixture(scope="session")
def client(asgi_app: Any) -> Iterator[Any]:
    from starlette.testclient import TestClient

    with TestClient(asgi_app, base_url="http://testserver", follow_redirects=False) as c:
        yield c


@pytest.fixture(scope="session")
def auth(token: Any) -> Any:
    """auth(user): Authorization headers for a user."""
    return lambda username: {"Authorization": f"Bearer {token(username)}"}


@pytest.fixture(scope="session")
def airflow_server(web: Web, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The real `airflow api-server` with the trailhouse plugin from plugins/, on a free port."""
    port = free_port()
    log = tmp_path_factory.mktemp("api-server") / "api-server.log"
    env = os.environ.copy()
    env["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(REPO / "plugins")
    env["AIRFLOW__CORE__LAZY_LOAD_PLUGINS"] = "False"
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    with log.open("wb") as out:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "airflow"), "api-server", "--port", str(port),
                                 "--host", "127.0.0.1", "--workers", "1"],
                                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"airflow api-server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/api/v2/version", timeout=2).status_code in (200, 401):
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"airflow api-server did not answer within 90 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield Server(url=url, log=log)
    finally:
        # The server runs in its own session (process group) that we started: stop exactly that group.
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
