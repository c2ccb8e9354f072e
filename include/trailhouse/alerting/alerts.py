"""Alerts: stored deduplicated with links to their events, and their lifecycle (open, acknowledged, resolved)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from trailhouse.alerting.roles import Actor, Forbidden
from trailhouse.alerting.rules import Match
from trailhouse.common import ALERT_STATUSES, chunks
from trailhouse.db import appdb

STATUSES = ALERT_STATUSES
_LAST = datetime.max.replace(tzinfo=UTC)  # sorts events without a time last


def store(eng: sa.Engine, matches: Iterable[Match], *, mav: str, run_id: str, notify: bool) -> list[int]:
    """Store matches as alerts; returns the ids of alerts this run created.

    The same rule, dedup key and period give one alert whose count is the number of
    linked events, recomputed from the links: re-storing the same matches (a retried
    task) changes nothing. Set-based (a few statements per 500 alerts, not five per alert):
    a backfilled day can raise tens of thousands.
    """
    by_key: dict[tuple[str, str], list[Match]] = {}
    for m in matches:
        by_key.setdefault((m.rule.id, m.dedup_hash), []).append(m)
    if not by_key:
        return []
    keys = list(by_key)
    with eng.begin() as conn:
        known = _existing(conn, keys, by_key)
        fresh = [_new_alert(key, by_key[key], mav=mav, run_id=run_id, notify=notify) for key in keys if key not in known]
        if fresh:
            conn.execute(appdb.alerts.insert(), fresh)
            known.update(_existing(conn, [(f["rule_id"], f["dedup_hash"]) for f in fresh], by_key))
        ids = {key: known[key][0] for key in keys}
        created = sorted({alert_id for key, (alert_id, by_run) in known.items() if by_run == run_id})

        alert_ids = sorted(set(ids.values()))
        _link_new_events(conn, by_key, ids, alert_ids)
        _recount(conn, alert_ids)
    return created


def _existing(conn: sa.Connection, wanted: list[tuple[str, str]],
              by_key: dict[tuple[str, str], list[Match]]) -> dict[tuple[str, str], tuple[int, str]]:
    """(alert id, run id) of each stored alert among `by_key`'s keys, found by the dedup hashes of `wanted`."""
    a = appdb.alerts
    found = {}
    for chunk in chunks(wanted):
        hashes = sorted({h for _, h in chunk})
        rows = conn.execute(sa.select(a.c.id, a.c.run_id, a.c.rule_id, a.c.dedup_hash)
                            .where(a.c.dedup_hash.in_(hashes)))
        found.update({(r.rule_id, r.dedup_hash): (r.id, r.run_id) for r in rows})
    return {k: v for k, v in found.items() if k in by_key}


def _new_alert(key: tuple[str, str], group: list[Match], *, mav: str, run_id: str, notify: bool) -> dict[str, Any]:
    """The alerts row of a new alert, described by the group's earliest event."""
    first = min(group, key=lambda m: (m.event.get("event_time") or _LAST, m.event["event_id"]))
    ev = first.event
    return {
        "rule_id": key[0], "dedup_hash": key[1], "dedup_key": first.dedup_key, "title": first.rule.title,
        "severity": first.rule.severity, "mav": mav, "account_id": ev.get("account_id"),
        "principal": ev.get("principal"), "source_ip": ev.get("source_ip_address"),
        "event_name": ev.get("event_name"), "first_event_id": ev["event_id"],
        "first_event_time": ev.get("event_time"), "last_event_time": ev.get("event_time"),
        "period_start": first.period_start, "count": 0, "status": "open", "run_id": run_id,
        "notify": notify, "created_at": appdb.now(),
    }


def _link_new_events(conn: sa.Connection, by_key: dict[tuple[str, str], list[Match]],
                     ids: dict[tuple[str, str], int], alert_ids: list[int]) -> None:
    """Link each alert to those of its matched events it is not linked to yet."""
    ae = appdb.alert_events
    linked: set[tuple[int, str]] = set()
    for chunk in chunks(alert_ids):
        linked.update(conn.execute(sa.select(ae.c.alert_id, ae.c.event_id).where(ae.c.alert_id.in_(chunk))))
    new_links = []
    for key, group in by_key.items():
        alert_id = ids[key]
        for m in {m.event["event_id"]: m for m in group}.values():
            if (alert_id, m.event["event_id"]) not in linked:
                new_links.append({"alert_id": alert_id, "event_id": m.event["event_id"],
                                  "event_time": m.event.get("event_time"), "event_date": m.event.get("event_date"),
                                  "account_id": m.event.get("account_id")})
    if new_links:
        conn.execute(ae.insert(), new_links)


def _recount(conn: sa.Connection, alert_ids: list[int]) -> None:
    """Set count and last_event_time from the links, for every alert touched."""
    a = appdb.alerts
    links = appdb.alert_events.alias("links")
    for chunk in chunks(alert_ids):
        conn.execute(a.update().where(a.c.id.in_(chunk)).values(
            count=sa.select(sa.func.count()).where(links.c.alert_id == a.c.id).scalar_subquery(),
            last_event_time=sa.select(sa.func.max(links.c.event_time)).where(links.c.alert_id == a.c.id)
            .scalar_subquery(),
        ))


def may_act(actor: Actor, alert: dict[str, Any]) -> bool:
    """Whether `actor` may acknowledge, resolve or reopen `alert`: security administrators any
    alert, owners those about their own accounts (everyone still *sees* every alert)."""
    return actor.can_see_account(alert.get("account_id"))


def set_status(eng: sa.Engine, alert_id: int, status: str, *, actor: Actor) -> dict[str, Any]:
    """Acknowledge or resolve an alert (or reopen it), recording who and when.

    LookupError: no such alert; Forbidden: an owner changing an alert about an account they do
    not own (silencing it would hide it from that account's owners).
    """
    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}")
    alert = get(eng, alert_id)
    if not may_act(actor, alert):
        account = alert.get("account_id") or "no account"
        raise Forbidden(
            f"alert {alert_id} is about account {account}, which {actor.username!r} does not own: only that "
            f"account's owners and security administrators acknowledge, resolve or reopen it")
    a = appdb.alerts
    where = [a.c.id == alert_id]
    if not actor.is_admin:  # the same rule in the statement itself: no window between the check and the change
        where.append(a.c.account_id.in_(sorted(actor.accounts)))
    with eng.begin() as conn:
        done = conn.execute(a.update().where(*where).values(status=status, status_by=actor.username,
                                                            status_at=appdb.now()))
        if done.rowcount == 0:
            raise LookupError(f"no alert with id {alert_id}")
    return get(eng, alert_id)


def get(eng: sa.Engine, alert_id: int) -> dict[str, Any]:
    """One alert's row as a dict; LookupError if there is no such alert."""
    with eng.connect() as conn:
        row = conn.execute(sa.select(appdb.alerts).where(appdb.alerts.c.id == alert_id)).mappings().first()
    if row is None:
        raise LookupError(f"no alert with id {alert_id}")
    return dict(row)


def event_ids(eng: sa.Engine, alert_id: int) -> list[str]:
    """The ids of the events linked to an alert, oldest first (empty for an unknown alert)."""
    ae = appdb.alert_events
    with eng.connect() as conn:
        q = sa.select(ae.c.event_id).where(ae.c.alert_id == alert_id).order_by(ae.c.event_time, ae.c.event_id)
        return [e for (e,) in conn.execute(q)]


def query(eng: sa.Engine, *, mav: str | None = None, account: str | None = None, rule: str | None = None,
          severity: str | None = None, status: str | None = None, run_id: str | None = None,
          ids: Iterable[int] | None = None, limit: int = 200, offset: int = 0) -> list[dict[str, Any]]:
    """Every alert in the deployment matching the filters, newest first (every role sees every alert)."""
    a = appdb.alerts
    q = sa.select(a)
    for col, value in ((a.c.mav, mav), (a.c.account_id, account), (a.c.rule_id, rule), (a.c.severity, severity),
                       (a.c.status, status), (a.c.run_id, run_id)):
        if value is not None:
            q = q.where(col == value)
    if ids is not None:
        q = q.where(a.c.id.in_(list(ids)))
    q = q.order_by(a.c.created_at.desc(), a.c.id.desc()).limit(limit).offset(offset)
    with eng.connect() as conn:
        return [dict(r) for r in conn.execute(q).mappings()]


def arrow_tables(eng: sa.Engine) -> dict[str, Any]:
    """`alerts` and `alert_events` as Arrow tables, to query next to the events with SQL."""
    import pyarrow as pa

    out = {}
    for table in (appdb.alerts, appdb.alert_events):
        with eng.connect() as conn:
            rows = [dict(r) for r in conn.execute(sa.select(table)).mappings()]
        out[table.name] = pa.Table.from_pylist(rows) if rows else pa.table({c.name: pa.array([], pa.string()) for c in table.columns})
    return out
