"""Airflow on the embedded default: its home, config and database set up on first use; connections."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from trailhouse import settings


def configure(cfg: settings.Settings | None = None) -> Path:
    """Point Airflow at this project (dags/, plugins/) and a home under TRAILHOUSE_HOME.

    Only sets what the environment does not already set, so a deployment's own
    AIRFLOW__* variables win. Must run before airflow is imported. `cfg`: the entry point's
    settings (read now when not given).
    """
    cfg = cfg or settings.load()
    settings.owner_only()  # Airflow's database, Fernet key and generated passwords: owner-only
    home = cfg.airflow_home
    home.mkdir(parents=True, exist_ok=True)
    defaults = {
        "TRAILHOUSE_HOME": str(cfg.home),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(settings.PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(settings.PROJECT_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__FERNET_KEY": _fernet_key(home),
        # Tasks of `trailhouse run` print their logs to the terminal only on failure.
        "AIRFLOW__LOGGING__LOGGING_LEVEL": os.environ.get("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING"),
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    return home


def _fernet_key(home: Path) -> str:
    # Airflow 3 writes no airflow.cfg with a generated key: without one, connections (the
    # IAM key pair) would be stored in clear. Keep a key beside the database, owner-only.
    path = home / "fernet.key"
    if not path.exists():
        from cryptography.fernet import Fernet

        path.touch(mode=0o600)
        path.write_bytes(Fernet.generate_key())
    return path.read_text().strip()


def ensure_db() -> None:
    """Create or upgrade Airflow's database once per database URL and Airflow version."""
    configure()
    import airflow
    from airflow.configuration import conf

    url = conf.get("database", "sql_alchemy_conn")
    stamp = hashlib.sha256(f"{url}|{airflow.__version__}".encode()).hexdigest()[:16]
    marker = Path(os.environ["AIRFLOW_HOME"]) / f".migrated-{stamp}"
    if marker.exists():
        return
    print("Setting up Airflow's database (first use only)...", file=sys.stderr, flush=True)
    proc = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], capture_output=True, text=True, env=os.environ.copy()
    )
    if proc.returncode != 0:
        raise RuntimeError(f"`airflow db migrate` failed:\n{proc.stderr[-3000:]}")
    marker.touch()


def store_connection(conn_id: str, access_key_id: str, secret: str, extra: dict[str, Any], *,
                     conn_type: str = "aws", host: str | None = None, port: int | None = None,
                     description: str = "trailhouse MAV read-only IAM user") -> None:
    """Store a secret (the IAM key pair, SMTP login) as an Airflow connection, encrypted."""
    ensure_db()
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session

    with create_session() as session:
        session.query(Connection).filter(Connection.conn_id == conn_id).delete()
        session.add(
            Connection(
                conn_id=conn_id,
                conn_type=conn_type,
                description=description,
                host=host,
                port=port,
                login=access_key_id,
                password=secret,
                extra=json.dumps(extra),
            )
        )


def get_connection(conn_id: str) -> Any:
    """An Airflow connection, inside a task (Task SDK) or in the CLI (Airflow's secrets backends).

    LookupError when there is none.
    """
    try:
        from airflow.sdk import BaseHook

        return BaseHook.get_connection(conn_id)
    except Exception as task_sdk_error:  # outside a task: read Airflow's secrets backends directly
        ensure_db()
        try:
            from airflow.models.connection import Connection

            return Connection.get_connection_from_secrets(conn_id)
        except Exception:
            raise LookupError(conn_id) from task_sdk_error


def get_credentials(conn_id: str) -> tuple[str, str]:
    """The key pair of a MAV's connection."""
    try:
        conn = get_connection(conn_id)
    except LookupError:
        raise MissingConnection(conn_id) from None
    if not conn.login or not conn.password:
        raise MissingConnection(conn_id)
    return conn.login, conn.password


class MissingConnection(RuntimeError):
    def __init__(self, conn_id: str) -> None:
        super().__init__(
            f"no usable Airflow connection {conn_id!r} with the MAV's key pair; store it with "
            f"`trailhouse mav add NAME --bucket ... --credentials-csv FILE` (or `airflow connections add`)"
        )
