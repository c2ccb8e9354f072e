"""One Airflow DAG per MAV YAML file: validate_access >> discover >> transform[batches] >> commit >> evaluate_rules >> notify,
and run_verdict, which fails the DAG run when any of them failed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from trailhouse.config import ConfigError, Mav
from trailhouse.deployment import Deployment

DOC = """
### trailhouse MAV `{name}`

{description}

Reads CloudTrail from `{source}` ({accounts}) with the key pair in the Airflow connection
`{conn}`, and loads new delivery files into the warehouse table `cloudtrail_events`.

1. **validate_access** - the IAM user's permission report; fails when ListBucket/GetObject are missing.
2. **discover** - lists the day folders of this interval plus {lookback} h of look-back, minus the ledger.
3. **transform** - one mapped task per batch of keys: download, parse, stage (broken files quarantined).
4. **commit** - adds the batches' new `event_id`s to the table in one Delta commit and ledgers the keys
   (also when a transform failed: that batch's keys stay `pending` and are loaded by the next run).
5. **evaluate_rules** - every enabled rule over the events this run committed; alerts stored deduplicated.
6. **notify** - one message per recipient per run through the outbox (owners.yaml).
7. **run_verdict** - skipped when every task succeeded; fails (so the DAG run does) when one did.
"""


def build_dag(mav: Mav, *, retries: int = 2) -> Any:
    """The MAV's DAG `trailhouse_mav_<name>`, tasks as in DOC; `retries` applies to every task."""
    from airflow.sdk import DAG, CronDataIntervalTimetable

    with DAG(
        dag_id=mav.dag_id,
        # Interval semantics (start, end) on purpose: each run loads the files delivered in
        # its own hour, so a retry or a backfill of that hour does the same work.
        schedule=CronDataIntervalTimetable(mav.schedule, timezone="UTC"),
        start_date=datetime.combine(mav.start_date, datetime.min.time(), tzinfo=UTC),
        catchup=False,
        max_active_runs=1,
        tags=["trailhouse", "mav"],
        doc_md=_doc_md(mav),
        default_args={"retries": retries, "retry_delay": timedelta(seconds=30), "retry_exponential_backoff": True},
    ) as dag:
        validate_access, discover, transform, commit = _load_tasks(mav.name)
        evaluate_rules, notify = _alert_tasks(mav.name)
        batches = discover()
        validate_access() >> batches
        committed = commit(transform.expand(batch=batches), batches)
        evaluation = evaluate_rules()
        committed >> evaluation
        notify(evaluation)  # TaskFlow: the XComArg resolves to the dict at run time
        # Airflow judges a DAG run by its leaves: with commit running after a failed batch
        # (and skipped after a failed discover), notify alone would call the run a success.
        upstream = list(dag.tasks)
        upstream >> _verdict_task()
    return dag


def _verdict_task() -> Any:
    """run_verdict: skipped when every task succeeded; fails the DAG run (no retry) when one failed."""
    from airflow.sdk import task

    @task(trigger_rule="one_failed", retries=0)
    def run_verdict() -> None:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(
            "a task of this run failed (see its log): whatever it did not load stays pending and is "
            "loaded by the next run; the other tasks' work is committed")

    return run_verdict()


def _doc_md(mav: Mav) -> str:
    """The DAG's doc_md: DOC filled in with this MAV's settings."""
    return DOC.format(
        name=mav.name,
        description=mav.description,
        source=mav.source_label,
        accounts=", ".join(mav.accounts) or "all accounts",
        conn=mav.connection_id or "-",
        lookback=mav.lookback_hours,
    )


def _load_tasks(name: str) -> tuple[Any, Any, Any, Any]:
    """The TaskFlow tasks validate_access, discover, transform and commit of MAV `name`."""
    from airflow.sdk import get_current_context, task

    @task
    def validate_access() -> dict[str, Any]:
        from trailhouse.pipeline import steps as pipeline

        return pipeline.guarded(name, get_current_context(), "validate_access", pipeline.validate)

    @task
    def discover(data_interval_start: Any = None, data_interval_end: Any = None, run_id: str | None = None) -> list[dict[str, Any]]:
        from trailhouse.pipeline import steps as pipeline

        return pipeline.guarded(name, get_current_context(), "discover", pipeline.discover_step, run_id,
                                data_interval_start, data_interval_end)

    @task(map_index_template="{{ batch_label }}", max_active_tis_per_dagrun=8)
    def transform(batch: dict[str, Any], run_id: str | None = None) -> dict[str, Any]:
        from trailhouse.pipeline import steps as pipeline

        get_current_context()["batch_label"] = pipeline.batch_label(batch)  # type: ignore[typeddict-unknown-key]
        return pipeline.guarded(name, get_current_context(), "transform", pipeline.transform_step, run_id,
                                batch)

    # all_done: a batch whose transform failed (after its retries) must not keep the run's
    # other batches from being committed, evaluated and notified; commit_step ledgers its
    # objects as pending instead. An interval with no new files maps zero transforms
    # (skipped): the commit still runs so the run's figures are recorded. When discover
    # failed (or validate_access before it), there is no list of batches: the commit is
    # skipped, and with it the rules and notifications, and the run keeps its failure.
    @task(trigger_rule="all_done")
    def commit(results: Any = None, batches: Any = None, run_id: str | None = None) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        from trailhouse.pipeline import steps as pipeline

        if batches is None:
            raise AirflowSkipException("discover did not finish: nothing to commit")

        # One slice fetches every mapped result at once (iterating probes past the end); a
        # failed transform has no result.
        return pipeline.guarded(name, get_current_context(), "commit", pipeline.commit_step, run_id,
                                [r for r in results[:] if r] if results is not None else [], batches)

    return validate_access, discover, transform, commit


def _alert_tasks(name: str) -> tuple[Any, Any]:
    """The TaskFlow tasks evaluate_rules and notify of MAV `name`."""
    from airflow.sdk import get_current_context, task

    @task
    def evaluate_rules(run_id: str | None = None) -> dict[str, Any]:
        from trailhouse.pipeline import steps as pipeline

        return pipeline.guarded(name, get_current_context(), "evaluate_rules", pipeline.evaluate_step, run_id)

    @task
    def notify(evaluation: dict[str, Any], run_id: str | None = None) -> dict[str, Any]:
        from trailhouse.pipeline import steps as pipeline

        return pipeline.guarded(name, get_current_context(), "notify", pipeline.notify_step, run_id,
                                evaluation["new_alerts"])

    return evaluate_rules, notify


def build_maintenance_dag(names: list[str]) -> Any:
    """Daily: per MAV, compaction of the recent partitions, retention and vacuum."""
    from airflow.sdk import DAG, task

    with DAG(
        dag_id="trailhouse_maintenance",
        schedule="30 3 * * *",
        start_date=datetime(2026, 1, 1, tzinfo=UTC),
        catchup=False,
        max_active_runs=1,
        tags=["trailhouse", "maintenance"],
        doc_md="Daily housekeeping of every MAV: compaction of small files, retention, vacuum (`trailhouse maintain`).",
        default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
    ) as dag:

        # One MAV at a time: compaction rewrites whole partitions, and two rewrites of the
        # same day would only conflict and retry.
        @task(max_active_tis_per_dag=1, map_index_template="{{ task.op_kwargs['name'] }}")
        def maintain(name: str) -> dict[str, Any]:
            from trailhouse.pipeline import maintenance

            dep = Deployment()
            return maintenance.maintain(dep, dep.mav(name))

        maintain.expand(name=names)
    return dag


def build_all(dep: Deployment | None = None) -> dict[str, Any]:
    """{dag_id: DAG} for every valid MAV file.

    A broken file is logged with its problem and skipped: one typo must not stop the
    other MAVs' hourly loads. `trailhouse mav list` shows the same problems.
    """
    import logging

    from trailhouse.config import load_mav_file

    dags: dict[str, Any] = {}
    for path in sorted((dep or Deployment()).settings.mav_dir.glob("*.yaml")):
        try:
            mav = load_mav_file(path)
        except ConfigError as exc:
            logging.getLogger(__name__).error("skipping MAV file: %s", exc)
            continue
        dags[mav.dag_id] = build_dag(mav)
    if dags:
        names = [dag_id.removeprefix("trailhouse_mav_") for dag_id in dags]
        dags["trailhouse_maintenance"] = build_maintenance_dag(names)
    return dags
