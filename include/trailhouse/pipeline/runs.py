"""One-off runs of a MAV's DAG through Airflow (`trailhouse run`, the demo, the tests)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Any

from trailhouse import airflow_env
from trailhouse.deployment import Deployment


def _to_terminal(line: str) -> None:
    # sys.__stderr__: inside a task, Airflow's task runner redirects sys.stderr into the task log.
    print(line, file=sys.__stderr__, flush=True)


def run_mav(dep: Deployment, name: str, *, quiet: bool = False, at: datetime | None = None) -> dict[str, Any]:
    """Run the MAV's DAG once through Airflow (the latest hour plus look-back) and return its figures.

    Progress lines of every step go to the terminal unless `quiet`.
    """
    airflow_env.configure(dep.settings)
    import warnings

    # Library deprecation chatter from inside Airflow is noise to someone running a MAV.
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    mav = dep.mav(name)
    airflow_env.ensure_db()
    from trailhouse.pipeline import steps, workers
    from trailhouse.pipeline.dag_factory import build_dag

    sink = None if quiet else _to_terminal
    steps.show_progress(sink)
    try:
        dag = build_dag(mav, retries=0)
        now = at or datetime.now(UTC)
        if sink:
            sink(f"running DAG {dag.dag_id} for the hour before {now:%Y-%m-%d %H:00} UTC ...")
        # dag.test() runs the tasks one after another in this process: each transform task
        # spreads its batch over worker processes instead, so the run uses every core.
        with workers.transform_pool(dep.settings.transform_processes or workers.usable_cores()):
            # The logical date carries the seconds so that two runs in one hour are two DAG
            # runs; the timetable still gives each the last complete hour as its data interval.
            dr = dag.test(logical_date=now)
    finally:
        steps.show_progress(None)
    result = steps.summary(dep, mav, dr.run_id)
    result["dag_run_state"] = str(dr.state)
    tis = dr.get_task_instances()
    # run_verdict fails exactly when another task did: it says nothing the list does not.
    result["failed_tasks"] = sorted({ti.task_id for ti in tis if ti.state == "failed" and ti.task_id != "run_verdict"})
    # {task: the states of its instances (a mapped task has one per batch)}
    result["task_states"] = {t: sorted({str(ti.state) for ti in tis if ti.task_id == t}) for t in {ti.task_id for ti in tis}}
    result["quarantined"] = steps.quarantined(dep, mav, dr.run_id)
    return result
