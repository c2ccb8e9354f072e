"""The DAG file: one DAG per MAV YAML, cheap to parse, with the settings a scheduler relies on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from trailhouse import settings
from trailhouse.config import Mav, save_mav

DAG_FILE = settings.PROJECT_ROOT / "dags" / "trailhouse_mavs.py"


def _dagbag():  # noqa: ANN202
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAG_FILE))


def test_one_dag_per_mav_file_and_broken_files_skipped(th_home: Path, airflow_db: None) -> None:
    mav_dir = settings.load().mav_dir
    save_mav(mav_dir, Mav(name="alpha", path="/data/alpha"))
    save_mav(mav_dir, Mav(name="beta", bucket="b", accounts=["012345678901"]))
    (mav_dir / "broken.yaml").write_text("bucket: x\npath: y\n")
    bag = _dagbag()
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == {"trailhouse_mav_alpha", "trailhouse_mav_beta", "trailhouse_maintenance"}
    dag = bag.get_dag("trailhouse_mav_beta")
    assert set(dag.task_ids) == {"validate_access", "discover", "transform", "commit", "evaluate_rules", "notify",
                                 "run_verdict"}
    # The verdict hangs below every task and runs only when one failed: Airflow judges the run by it.
    verdict = dag.get_task("run_verdict")
    assert verdict.upstream_task_ids == set(dag.task_ids) - {"run_verdict"} and verdict.trigger_rule == "one_failed"
    assert dag.max_active_runs == 1
    assert "trailhouse" in dag.tags
    assert dag.catchup is False
    assert all(t.retries >= 1 for t in dag.tasks if t.task_id != "run_verdict")  # the verdict has nothing to retry
    assert dag.timetable.expression == "0 * * * *"
    assert dag.get_task("commit").trigger_rule == "all_done"  # a failed batch does not hold back the others
    assert dag.get_task("commit").upstream_task_ids == {"transform", "discover"}
    assert dag.get_task("transform").upstream_task_ids == {"discover"}
    assert dag.doc_md and "012345678901" in dag.doc_md


def test_parsing_imports_nothing_heavy(th_home: Path) -> None:
    save_mav(settings.load().mav_dir, Mav(name="alpha", path="/data/alpha"))
    code = (
        "import sys, runpy; runpy.run_path(sys.argv[1]);"
        "heavy = [m for m in ('polars', 'boto3', 'duckdb', 'deltalake', 'pyarrow') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(DAG_FILE)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
