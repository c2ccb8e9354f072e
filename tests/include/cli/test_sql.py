"""`trailhouse sql`: the events table and, when a query names them, the alert tables beside it."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from trailhouse.cli import main as cli
from trailhouse.config import Mav
from trailhouse.db import appdb
from trailhouse.deployment import Deployment
from trailhouse.dev.synth.files import write_to_dir
from trailhouse.dev.synth.world import SynthSpec
from trailhouse.pipeline import steps

SPEC = SynthSpec(seed=9, accounts=2, days=1, end=date(2026, 11, 20), files_per_region_day=3,
                       events_per_file=40, regions=("us-east-1",))


def _load(tmp_path: Path) -> Deployment:
    """The synthetic day loaded and evaluated with the run's steps (no Airflow needed here)."""
    write_to_dir(SPEC, tmp_path / "bucket")
    dep = Deployment()
    mav = Mav(name="q", path=str(tmp_path / "bucket"), lookback_hours=48)
    start, end = datetime(2026, 11, 20, tzinfo=UTC), datetime(2026, 11, 21, tzinfo=UTC)
    batches = steps.discover_step(dep, mav, "manual__q", start, end)
    steps.commit_step(dep, mav, "manual__q", [steps.transform_step(dep, mav, "manual__q", b) for b in batches])
    steps.evaluate_step(dep, mav, "manual__q")
    return dep


def _sql(capsys: pytest.CaptureFixture[str], query: str) -> list[dict]:
    assert cli.main(["sql", query, "--format", "json"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_sql_counts_events_and_queries_the_alert_tables_by_name(th_home: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    dep = _load(tmp_path)
    with dep.engine.connect() as conn:
        events = conn.execute(sa.select(sa.func.sum(appdb.runs.c.events_loaded))).scalar()
        alerts = conn.execute(sa.select(sa.func.count()).select_from(appdb.alerts)).scalar()
    assert events and alerts, "the synthetic day should load events and raise alerts"

    [row] = _sql(capsys, "SELECT count(*) AS n FROM cloudtrail_events")
    assert row["n"] == events
    # The alert tables, named in any case, joined to the events they point at.
    [row] = _sql(capsys, "SELECT count(DISTINCT a.id) AS n FROM ALERTS a JOIN alert_events ae ON ae.alert_id = a.id "
                         "JOIN cloudtrail_events e USING (event_id)")
    assert row["n"] == alerts


def test_the_head_revision_read_from_the_files_is_alembics(th_home: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(Path(appdb.__file__).with_name("migrations")))
    assert appdb.head_revision() == script.get_current_head()
    url = f"sqlite:///{tmp_path / 'app.db'}"
    code = f"import sys; from trailhouse.db import appdb; appdb.engine({url!r}); print('alembic' in sys.modules)"
    # A new database is migrated (Alembic loaded); one already at head is opened without it.
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    again = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert (first.stdout.strip(), again.stdout.strip()) == ("True", "False")
    with sa.create_engine(url).connect() as conn:
        assert conn.execute(sa.text(f"SELECT version_num FROM {appdb.VERSION_TABLE}")).scalar() == appdb.head_revision()
