"""Deployment knobs: environment variables with defaults, read in one place."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The repo is the deployment unit (dags/, plugins/, include/ side by side), so defaults are
# anchored on it rather than on the caller's working directory, which differs between the
# CLI, the scheduler and a Celery worker.
PROJECT_ROOT = Path(__file__).resolve().parents[2]

# What one rule may cost per evaluation (docs/rules.md, "Limits per rule"): seconds of DuckDB time,
# and matches collected per run. 0 in the environment means no limit.
DEFAULT_RULE_TIME_BUDGET = 30.0
DEFAULT_RULE_MAX_MATCHES = 10_000


def owner_only() -> None:
    """From now on, files this process (and what it starts) creates are its user's alone: 0600
    files, 0700 folders. The warehouse, the app database, the MAV files, Airflow's database,
    Fernet key and generated passwords hold events and secrets; no other local user reads them.
    """
    os.umask(os.umask(0o077) | 0o077)


@dataclass(frozen=True)
class Settings:
    """Where trailhouse keeps its state and how it runs, read from the environment by `load()`
    (every knob is documented in docs/architecture.md).
    """
    home: Path
    mav_dir: Path
    warehouse_uri: str
    app_db_url: str
    airflow_home: Path
    batch_bytes: int
    download_threads: int
    transform_processes: int
    max_inflated_bytes: int
    max_inflate_ratio: int
    owners_file: Path
    base_url: str
    fault: str | None
    web: WebLimits
    rule_time_budget: float | None = DEFAULT_RULE_TIME_BUDGET
    rule_max_matches: int | None = DEFAULT_RULE_MAX_MATCHES


@dataclass(frozen=True)
class WebLimits:
    """What one request to the web UI may cost the API server (docs/web.md, "Limits")."""

    max_body_bytes: int  # a bigger request body is refused (413) while it streams in
    query_seconds: float  # an events query running longer is interrupted ("narrow the range")
    query_memory: str  # DuckDB memory_limit of each events query (it spills or fails beyond)
    queries: int  # events queries the server runs at once; more wait for a turn
    heavy_per_user: int  # summaries, exports, previews one user runs at once; more get 429
    previews: int  # rule previews the server runs at once, all users (their rows are in Python, not DuckDB)


def load() -> Settings:
    """Read the environment now (tests change it between calls, so nothing is cached)."""
    home = Path(os.environ.get("TRAILHOUSE_HOME", PROJECT_ROOT / ".trailhouse")).resolve()
    return Settings(
        home=home,
        mav_dir=Path(os.environ.get("TRAILHOUSE_MAV_DIR", home / "mavs")),
        warehouse_uri=os.environ.get("TRAILHOUSE_WAREHOUSE", str(home / "warehouse")),
        app_db_url=os.environ.get("TRAILHOUSE_DB_URL", f"sqlite:///{home / 'trailhouse.db'}"),
        airflow_home=Path(os.environ.get("AIRFLOW_HOME", home / "airflow")),
        # ~32 MB of gzip is ~250 MB of JSON: big enough to amortise task start-up, small
        # enough that one transform worker stays far below 1 GiB.
        batch_bytes=int(os.environ.get("TRAILHOUSE_BATCH_BYTES", 32 * 1024 * 1024)),
        download_threads=int(os.environ.get("TRAILHOUSE_DOWNLOAD_THREADS", 64)),
        # Worker processes `trailhouse run` spreads each batch over (0: every usable core).
        transform_processes=int(os.environ.get("TRAILHOUSE_TRANSFORM_PROCESSES", 0)),
        # What one delivery file may inflate to (ingest.records.inflate_cap): past it, quarantined.
        max_inflated_bytes=int(os.environ.get("TRAILHOUSE_MAX_INFLATED_BYTES", 256 * 1024 * 1024)),
        max_inflate_ratio=int(os.environ.get("TRAILHOUSE_MAX_INFLATE_RATIO", 100)),
        owners_file=Path(os.environ.get("TRAILHOUSE_OWNERS_FILE", home / "owners.yaml")),
        # Where people open trailhouse: alert e-mails and messages link to its pages.
        base_url=os.environ.get("TRAILHOUSE_BASE_URL", "http://localhost:8080").rstrip("/"),
        # Fault injection for the fault suite and its tests (trailhouse.faults); unset in production.
        fault=os.environ.get("TRAILHOUSE_FAULT") or None,
        web=WebLimits(
            max_body_bytes=int(os.environ.get("TRAILHOUSE_WEB_MAX_BODY_BYTES", 2 * 1024 * 1024)),
            query_seconds=float(os.environ.get("TRAILHOUSE_WEB_QUERY_SECONDS", 30)),
            query_memory=os.environ.get("TRAILHOUSE_WEB_QUERY_MEMORY", "192MB"),
            queries=int(os.environ.get("TRAILHOUSE_WEB_QUERIES", 4)),
            heavy_per_user=int(os.environ.get("TRAILHOUSE_WEB_HEAVY_PER_USER", 2)),
            previews=int(os.environ.get("TRAILHOUSE_WEB_PREVIEWS", 1)),
        ),
        rule_time_budget=_positive(float, "TRAILHOUSE_RULE_TIME_BUDGET", DEFAULT_RULE_TIME_BUDGET),
        rule_max_matches=_positive(int, "TRAILHOUSE_RULE_MAX_MATCHES", DEFAULT_RULE_MAX_MATCHES),
    )


def _positive(kind: type[float] | type[int], name: str, default: float) -> Any:
    """A limit from the environment: a positive number, 0 for none (None), or the default when unset."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = kind(text)
    except ValueError:
        raise ValueError(f"{name}={text!r} is not a number: set it to a positive {kind.__name__}, "
                         "or 0 for no limit") from None
    if value < 0:
        raise ValueError(f"{name}={text!r} is negative: set it to a positive {kind.__name__}, or 0 for no limit")
    return value or None
