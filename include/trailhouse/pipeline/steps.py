"""The MAV run's steps as plain functions: the DAG's tasks and the CLI both call these."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from trailhouse import faults
from trailhouse.common import chunks
from trailhouse.config import Mav
from trailhouse.db import appdb
from trailhouse.deployment import Deployment
from trailhouse.ingest.clients import open_source, s3_client, sqs_client
from trailhouse.ingest.discover import discover, make_batches
from trailhouse.ingest.source import LocalSource, ObjectInfo
from trailhouse.ingest.transform import LOADED, PENDING, QUARANTINED, BatchResult

log = logging.getLogger(__name__)


# Where progress lines go besides the log: `trailhouse run` shows them on its terminal.
_progress_sink: Callable[[str], None] | None = None


def show_progress(sink: Callable[[str], None] | None) -> None:
    """Send every step's progress line to `sink` too (None: only the log)."""
    global _progress_sink
    _progress_sink = sink


def progress(msg: str, *args: Any) -> None:
    """Log a step; also hand it to the progress sink (`trailhouse run` prints it)."""
    log.info(msg, *args)
    if _progress_sink is not None:
        _progress_sink("  " + (msg % args if args else msg))


def guarded(mav_name: str, context: Any, task: str, fn: Any, *args: Any) -> Any:
    """A DAG task's body: `fn(deployment, mav, *args)` with the settings read once for the task and
    the MAV's YAML as it is now; on failure record why on the run (shown by `trailhouse run`), then re-raise.
    """
    dep = Deployment()
    try:
        return fn(dep, dep.mav(mav_name), *args)
    except Exception as exc:
        run_id = context.get("run_id") if context else None
        if run_id:
            try:
                eng = dep.engine
                # The message of our own errors names the problem and the fix, and never a
                # secret (access and source errors scrub key ids).
                appdb.save_run(eng, mav_name, run_id, status="failed", finished_at=appdb.now(),
                               message=f"{task}: {type(exc).__name__}: {exc}"[:2000])
            except Exception:  # recording the failure must not hide the failure itself
                log.exception("could not record the failure of %s", task)
        raise


def validate(dep: Deployment, mav: Mav) -> dict[str, Any]:
    """The permission report of the MAV's IAM user; raises when a required action is missing."""
    from trailhouse.ingest import access

    if mav.path is not None:
        LocalSource(mav.path)  # raises a clear error when the folder is missing
        return {"bucket": None, "path": mav.path, "ok": True, "checks": []}
    assert mav.bucket is not None
    queue = (sqs_client(mav), mav.queue_url) if mav.queue_url else None
    report = access.check_access(s3_client(mav), mav.bucket, mav.prefix, queue=queue)
    progress("validate_access: %s", "required permissions present" if report.ok else "REQUIRED PERMISSION MISSING")
    log.info("permission report for %s:\n%s", mav.name, report.render())
    access.require(report)
    return report.to_dict()


def discover_step(dep: Deployment, mav: Mav, run_id: str, start: datetime, end: datetime, *,
                  lookback_hours: int | None = None) -> list[dict[str, Any]]:
    """List new objects, record digest/Insights files, and return the batches to transform."""
    eng = dep.engine
    source = open_source(mav, connections=dep.settings.download_threads)
    queue = sqs_client(mav) if mav.queue_url else None
    found = discover(source, eng, mav, start, end, threads=dep.settings.download_threads, lookback_hours=lookback_hours,
                     queue=queue)
    appdb.record_objects(
        eng,
        mav.name,
        run_id,
        (
            {"key": o.key, "etag": o.etag, "size": o.size, "kind": kind, "status": "recorded", "events": 0, "reason": ""}
            for o, kind in found.routed
        ),
    )
    appdb.save_run(
        eng,
        mav.name,
        run_id,
        interval_start=start,
        interval_end=end,
        started_at=appdb.now(),
        status="running",
        objects_found=found.found,
        objects_skipped=found.skipped,
        objects_recorded=len(found.routed),
        list_calls=found.list_calls,
    )
    batches = make_batches(found.new, dep.settings.batch_bytes)
    how = "folders scanned" if found.scanned else "remembered folders"
    if queue is not None:
        how += f", {found.queue_messages} queue messages" + (", files from the queue" if found.from_queue else "")
    if found.pending:
        how += f", {found.pending} pending from an earlier run's failed transform"
    progress(
        "discover: %s: %d accounts (%s layout), %d objects found, %d new in %d batches, %d already loaded, %d LIST calls"
        " (%s)",
        mav.name, len(found.accounts), "+".join(found.layouts), found.found, len(found.new), len(batches),
        found.skipped, found.list_calls, how,
    )
    return [
        {"index": i, "objects": [[o.key, o.etag, o.size] for o in batch]} for i, batch in enumerate(batches)
    ]


def batch_label(batch: dict[str, Any]) -> str:
    """A batch as people read it in logs and the Airflow grid: index, files and megabytes."""
    objects = batch["objects"]
    mb = sum(o[2] for o in objects) / 1e6
    return f"batch {batch['index']}: {len(objects)} files, {mb:.1f} MB"


def transform_step(dep: Deployment, mav: Mav, run_id: str, batch: dict[str, Any]) -> dict[str, Any]:
    """Task: parse one batch of delivery files into staged Parquet in the table's layout,
    quarantining files that cannot be read; returns the batch's result for the commit.
    """
    from trailhouse.ingest.transform import Limits
    from trailhouse.pipeline import workers

    objects = [ObjectInfo(k, e, s) for k, e, s in batch["objects"]]
    cfg = dep.settings
    result, parts = workers.transform(
        mav,
        objects,
        # straight into the table's folder, invisible until the commit adds the files
        staging_dir=dep.warehouse.table_uri,
        threads=cfg.download_threads,
        limits=Limits(max_inflated_bytes=cfg.max_inflated_bytes, max_inflate_ratio=cfg.max_inflate_ratio),
    )
    quarantined = [o for o in result.outcomes if o.status == QUARANTINED]
    for o in quarantined:
        log.warning("quarantined %s: %s", o.key, o.reason)
    progress("transform %s: %d events from %d files, %d quarantined, in %d process%s", batch_label(batch),
             result.rows, len(result.outcomes) - len(quarantined), len(quarantined), len(parts),
             "" if len(parts) == 1 else "es")
    # Where each part ran (pid, start and end) shows in the task's XCom; the commit reads the rest.
    return {**result.to_dict(), "parts": parts, "index": batch.get("index")}


def commit_step(dep: Deployment, mav: Mav, run_id: str, results: list[dict[str, Any]],
                discovered: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Add the run's staged rows to the table in one Delta commit, then ledger the keys (in that order).

    A crash between the two leaves keys unledgered: the next try loads them again and the
    commit, keyed on event_id, drops them as duplicates, so nothing is lost and nothing doubled.
    The ledger and the run's figures are written in one transaction.

    `discovered`: the batches discover made. Those without a result (their transform failed)
    are not waited for: their keys are ledgered `pending`, which the next run's discover
    takes again wherever they are, and the run is recorded failed with the reason; the
    other batches are committed and go on to rule evaluation.
    """
    eng = dep.engine
    batches = [BatchResult.from_dict(r) for r in results if r]
    done = {r.get("index") for r in results if r}
    failed = [b for b in discovered or [] if b["index"] not in done]
    staged = [f for b in batches for f in b.staged]
    faults.point("commit.before_delta_commit")
    committed = dep.warehouse.commit(staged, run_id=run_id, lock=appdb.writer_lock(eng))
    faults.point("commit.after_delta_commit")
    outcomes = [o for b in batches for o in b.outcomes]
    dates = {k: v for b in batches for k, v in b.dates.items()}
    figures: dict[str, Any] = {"finished_at": appdb.now(), "status": "success", "message": ""}
    previous = appdb.get_run(eng, mav.name, run_id) or {}
    if outcomes or not previous.get("objects_loaded"):
        # A retry of a run whose commit already finished finds nothing new: it keeps the
        # figures of the attempt that did the work instead of overwriting them with zeros.
        figures.update(
            objects_loaded=sum(1 for o in outcomes if o.status == LOADED),
            objects_quarantined=sum(1 for o in outcomes if o.status == QUARANTINED),
            events_loaded=committed.inserted,
            duplicates_dropped=committed.duplicates,
            get_calls=sum(b.get_calls for b in batches),
            bytes=sum(b.bytes for b in batches),
            partitions=",".join(committed.partitions),
        )
    pending = [(b["index"], key, etag, size) for b in failed for key, etag, size in b["objects"]]
    if pending:
        # A failed transform recorded its error on the run (guarded): keep it in the message.
        why = previous.get("message") or ""
        why = why if why.startswith("transform:") else "the transform task's log says why"
        figures.update(status="failed", message=(
            f"transform failed for {len(failed)} of {len(discovered or [])} batches (batch "
            f"{', '.join(str(b['index']) for b in failed[:10])}): their {len(pending)} objects stay pending and "
            f"the next run loads them; the other batches were committed. {why}")[:2000])
    appdb.record_objects(
        eng,
        mav.name,
        run_id,
        [
            *({"key": o.key, "etag": o.etag, "size": o.size, "kind": "CloudTrail", "status": o.status,
               "events": o.events, "reason": o.reason, "sha256": o.sha256 or None,
               "event_dates": ",".join(dates.get(o.key, [])) or None}
              for o in outcomes),
            *({"key": key, "etag": etag, "size": size, "kind": "CloudTrail", "status": PENDING, "events": 0,
               "reason": f"the transform of batch {index} of run {run_id} failed; the next run loads it again",
               "sha256": None, "event_dates": None}
              for index, key, etag, size in pending),
        ],
        figures=figures,
    )
    faults.point("commit.after_ledger")
    progress("commit: %d events inserted, %d duplicates dropped, %d partitions, table version %s%s",
             committed.inserted, committed.duplicates, len(committed.partitions), committed.version,
             f"; {len(failed)} batches FAILED, their {len(pending)} objects stay pending" if failed else "")
    return summary(dep, mav, run_id)


def summary(dep: Deployment, mav: Mav, run_id: str) -> dict[str, Any]:
    """The run's figures as the CLI prints them (and `--json` emits)."""
    row = appdb.get_run(dep.engine, mav.name, run_id) or {}
    keys = (
        "objects_found", "objects_loaded", "objects_skipped", "objects_quarantined", "objects_recorded",
        "events_loaded", "duplicates_dropped", "list_calls", "get_calls", "bytes",
    )
    out: dict[str, Any] = {"mav": mav.name, "run_id": run_id, "status": row.get("status", "missing"),
                           "message": row.get("message") or ""}
    out.update({k: int(row.get(k) or 0) for k in keys})
    out["partitions"] = [p for p in (row.get("partitions") or "").split(",") if p]
    out["rule_problems"] = [{k: p[k] for k in ("rule_id", "kind", "detail")}
                            for p in appdb.latest_rule_problems(dep.engine, mav=mav.name, run_ids=[run_id], limit=1000)]
    for k in ("interval_start", "interval_end"):
        out[k] = row[k].isoformat() if row.get(k) else None
    return out


def quarantined(dep: Deployment, mav: Mav, run_id: str) -> list[dict[str, Any]]:
    """The keys of a run's files that were quarantined, with the reason of each."""
    import sqlalchemy as sa

    eng = dep.engine
    q = sa.select(appdb.ledger.c.key, appdb.ledger.c.reason).where(
        appdb.ledger.c.mav == mav.name, appdb.ledger.c.run_id == run_id, appdb.ledger.c.status == QUARANTINED
    )
    with eng.connect() as conn:
        return [dict(r) for r in conn.execute(q).mappings()]


def pending_events(dep: Deployment, mav: Mav, columns: list[str] | None = None) -> tuple[Any, list[str]]:
    """The events of the MAV's loaded keys that no evaluation has taken yet, and those keys.

    Evaluation is state in the ledger, not the memory of one run: whichever run (or retry,
    or re-run after a crash) evaluates next takes exactly what is left. An event that was
    already in the table keeps the key of the file that first brought it, so redelivered
    files never bring an event back for a second evaluation. Only `columns` are read (default
    all), and the rows come grouped by event_source, as rules.connect splits them.
    """
    import pyarrow as pa
    import sqlalchemy as sa

    from trailhouse.alerting import rules
    from trailhouse.warehouse.schema import ARROW_SCHEMA

    eng = dep.engine
    led = appdb.ledger
    with eng.connect() as conn:
        rows = conn.execute(sa.select(led.c.key, led.c.event_dates).where(
            led.c.mav == mav.name, led.c.status == LOADED, led.c.evaluated_at.is_(None))).all()
    keys = [k for k, _ in rows]
    dates = sorted({datetime.fromisoformat(d).date() for _, ds in rows for d in (ds or "").split(",") if d})
    schema = pa.schema([ARROW_SCHEMA.field(c) for c in columns or ARROW_SCHEMA.names])
    if not keys or not dates:
        return schema.empty_table(), keys
    con = dep.warehouse.duckdb()
    try:
        con.register("_keys", pa.table({"key": keys}))
        # A semi-join on the keys (thousands for a big run), in the partitions they loaded.
        relation = con.sql(
            f"SELECT {', '.join(schema.names)} FROM cloudtrail_events WHERE event_date IN (SELECT unnest($dates)) "
            "AND mav = $mav AND source_key IN (SELECT key FROM _keys)", params={"dates": dates, "mav": mav.name})
        return rules.by_source(relation.to_arrow_reader(), schema), keys
    finally:
        con.close()


def history_for(dep: Deployment, events: Any, lookback: Any) -> Any:
    """Events in the look-back window before (and during) `events` but not among them, for
    threshold rules: the same columns, grouped by event_source."""
    import pyarrow.compute as pc

    from trailhouse.alerting import rules

    times = events.column("event_time")
    if events.num_rows == 0 or not lookback or times.null_count == events.num_rows:
        return None
    lo, hi = pc.min(times).as_py() - lookback, pc.max(times).as_py()
    days = [lo.date() + timedelta(days=i) for i in range((hi.date() - lo.date()).days + 1)]
    con = dep.warehouse.duckdb()
    try:
        con.register("_taken", events.select(["event_id"]))
        relation = con.sql(
            f"SELECT {', '.join(events.column_names)} FROM cloudtrail_events WHERE event_date IN (SELECT unnest($days)) "
            "AND event_time BETWEEN $lo AND $hi AND event_id NOT IN (SELECT event_id FROM _taken)",
            params={"days": days, "lo": lo, "hi": hi})
        return rules.by_source(relation.to_arrow_reader(), events.schema)
    finally:
        con.close()


def evaluate_step(dep: Deployment, mav: Mav, run_id: str) -> dict[str, Any]:
    """Run every enabled rule over the events this run committed; store deduplicated alerts.

    Each rule runs within the deployment's limits (TRAILHOUSE_RULE_TIME_BUDGET and
    TRAILHOUSE_RULE_MAX_MATCHES); a rule stopped, failed, refused or cut short is a problem
    recorded on the run (and shown to its owner), and the other rules' alerts are stored.
    """
    from trailhouse.alerting import alerts, baselines, rulebook, rules

    eng = dep.engine
    enabled = rulebook.all_rules(eng, enabled_only=True)
    events, keys = pending_events(dep, mav, rules.columns_needed(enabled))
    if events.num_rows == 0:
        _mark_evaluated(eng, mav, keys)
        progress("evaluate_rules: no new events")
        return {"events": 0, "matches": 0, "new_alerts": [], "rule_errors": {}, "rule_problems": []}
    lookback = max((r.max_lookback for r in enabled), default=None)
    con = rules.connect(events, history_for(dep, events, lookback))
    store = baselines.Store(eng, mav.name)
    try:
        result = rules.evaluate(con, enabled, rules.Limits.of(dep.settings), store)
    finally:
        con.close()
    # Backfill runs record their alerts; whether they notify is the MAV's choice.
    notify = mav.notify_backfill or not run_id.startswith("backfill__")
    new = alerts.store(eng, result.matches, mav=mav.name, run_id=run_id, notify=notify)
    # After the alerts: a crash in between finds the same sightings new again, and the alerts'
    # dedup keeps them once (see rules._new_terms).
    store.record(result.sightings)
    problems = [{"rule_id": p.rule_id, "kind": p.kind, "detail": p.detail, "owner": p.owner}
                for p in result.problems.values()]
    appdb.record_rule_problems(eng, mav.name, run_id, problems)
    faults.point("evaluate.after_store")
    # After the alerts are stored: a crash before this line re-evaluates these keys, and
    # storing the same matches again changes nothing.
    _mark_evaluated(eng, mav, keys)
    for p in result.problems.values():
        # The detail names the rule's columns and limits, never an event's values.
        (log.warning if p.kind == rules.TRUNCATED else log.error)("rule %s: %s: %s", p.rule_id, p.kind, p.detail)
    skipped = sum(1 for p in result.problems.values() if p.kind in rules.SKIPPED)
    truncated = len(result.problems) - skipped
    progress("evaluate_rules: %d rules over %d events: %d matches, %d new alerts%s%s", len(enabled), events.num_rows,
             len(result.matches), len(new), f", {skipped} rules SKIPPED (see trailhouse rules problems)" if skipped else "",
             f", {truncated} rules cut at the match cap" if truncated else "")
    return {"events": events.num_rows, "matches": len(result.matches), "new_alerts": new, "rule_errors": result.errors,
            "rule_problems": [{k: v for k, v in p.items() if k != "owner"} for p in problems]}


def _mark_evaluated(eng: Any, mav: Mav, keys: list[str]) -> None:
    led = appdb.ledger
    with eng.begin() as conn:
        for part in chunks(keys):
            conn.execute(led.update().where(led.c.mav == mav.name, led.c.key.in_(part))
                         .values(evaluated_at=appdb.now()))


def notify_step(dep: Deployment, mav: Mav, run_id: str, new_alert_ids: list[int] | None = None) -> dict[str, Any]:
    """One message per recipient per run, for every alert of the MAV not yet planned.

    Like evaluation, this is state: alerts are marked planned in the same transaction as
    their outbox rows, so an alert stored by a run that crashed is notified by the next.
    """
    import sqlalchemy as sa

    from trailhouse.alerting import notify

    eng = dep.engine
    a = appdb.alerts
    with eng.connect() as conn:
        rows = [dict(r) for r in conn.execute(sa.select(a).where(
            a.c.mav == mav.name, a.c.notify.is_(True), a.c.planned_at.is_(None)).order_by(a.c.id)).mappings()]
    with eng.connect() as conn:
        owners = dict(conn.execute(sa.select(appdb.custom_rules.c.id, appdb.custom_rules.c.owner)).all())
    for row in rows:
        row["rule_owner"] = owners.get(row["rule_id"])
    cfg = dep.settings
    planned = notify.plan(eng, run_id, mav.name, rows, owners_file=cfg.owners_file, base_url=cfg.base_url)
    faults.point("notify.after_plan")
    # Every due message, not only this run's: a failed delivery of an earlier run is retried here.
    delivered = notify.deliver(eng, owners_file=cfg.owners_file)
    progress("notify: %d alerts to notify, %d messages planned, delivery %s", len(rows), planned, delivered)
    return {"planned": planned, **delivered}


def integrity_step(dep: Deployment, mav: Mav, start: datetime, end: datetime, *, alert: bool = True) -> dict[str, Any]:
    """Digest verification of a window: findings become alerts through the normal pipeline."""
    from trailhouse.alerting import alerts
    from trailhouse.integrity import verify as integrity

    eng = dep.engine
    source = open_source(mav)
    keys, note = integrity.public_keys_or_reason(mav, start, end, eng=eng)
    report = integrity.verify(source, eng, mav, start, end, public_keys=keys, keys_note=note)
    table = integrity.completeness(eng, mav, start, end, report=report)
    run_id = f"integrity__{mav.name}__{start:%Y-%m-%dT%H}"
    new: list[int] = []
    if alert:
        # A file that may still arrive is not yet a gap: only what a digest proves wrong alerts.
        kinds = {"missing", "mismatch", "chain-broken", "signature-invalid", "digest-missing", "digest-invalid",
                 "quarantined"}
        matches = [m for m in integrity.findings_to_matches(report, mav, kinds=kinds)
                   if "not yet loaded" not in str(m.event.get("detail", ""))]
        new = alerts.store(eng, matches, mav=mav.name, run_id=run_id, notify=True)
        if new:
            notify_step(dep, mav, run_id, new)
    progress("integrity: %d digests, %d findings, %d new alerts; signatures %s", report.digests,
             len(report.findings), len(new), "verified" if report.signatures_verified else "NOT verified")
    return {"report": report, "completeness": table, "new_alerts": new}
