"""`trailhouse status` gives a verdict monitoring can use (its exit code), and `alerts list`
refuses filter values that cannot match instead of printing no rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from trailhouse import settings
from trailhouse.cli import main as cli
from trailhouse.config import Mav, save_mav
from trailhouse.db import appdb


def _status(capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    code = cli.main(["status", "lab"])
    return code, capsys.readouterr().out.strip().splitlines()[-1]


def test_status_exits_1_when_the_latest_run_failed_or_none_started_lately(
        th_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    save_mav(settings.load().mav_dir, Mav(name="lab", path=str(tmp_path)))
    eng = appdb.engine(settings.load().app_db_url)
    assert _status(capsys) == (1, "stale: no run yet: trailhouse run NAME, or start the scheduler (trailhouse serve)")

    now = datetime.now(UTC)
    appdb.save_run(eng, "lab", "r1", started_at=now - timedelta(minutes=20), status="success")
    code, verdict = _status(capsys)
    assert code == 0 and verdict.startswith("healthy: the latest run r1 succeeded, started 0:20:")

    appdb.save_run(eng, "lab", "r2", started_at=now - timedelta(minutes=5), status="failed",
                   message="validate_access: AccessCheckError: ...")
    code, verdict = _status(capsys)
    assert code == 1 and verdict.startswith("failing: the latest run r2") and "AccessCheckError" in verdict

    appdb.save_run(eng, "lab", "r3", started_at=now - timedelta(hours=4), status="success")
    for old in ("r1", "r2"):  # the history before it
        appdb.save_run(eng, "lab", old, started_at=now - timedelta(hours=5))
    code, verdict = _status(capsys)
    assert code == 1 and verdict.startswith("stale: the latest run r3 started 4:00:") and "scheduler" in verdict
    assert cli.main(["status", "lab", "--stale-after", "6"]) == 0


def test_alerts_list_refuses_unknown_severity_status_and_rule(th_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for flag, value in (("--severity", "hgh"), ("--status", "closed")):
        with pytest.raises(SystemExit) as exited:
            cli.main(["alerts", "list", flag, value])
        assert exited.value.code == 2 and "invalid choice" in capsys.readouterr().err
    assert cli.main(["alerts", "list", "--rule", "trailhouse.sg-opn-to-world"]) == 2
    assert "no rule 'trailhouse.sg-opn-to-world'; did you mean trailhouse.sg-open-to-world" in capsys.readouterr().err
    assert cli.main(["alerts", "list", "--rule", "trailhouse.sg-open-to-world"]) == 0
