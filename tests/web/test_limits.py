"""What one request may cost the API server (docs/web.md, "Limits"): body size, time, memory,
queries at once, heavy requests per user; and the summary counting right without a copy."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import polars as pl
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from webhelpers import MOUNT, Web

from trailhouse import settings
from trailhouse.warehouse.table import Warehouse
from trailhouse.web import limits, search
from trailhouse.web.app import create_app


@pytest.fixture
def small_body_client(web: Web, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The app built with TRAILHOUSE_WEB_MAX_BODY_BYTES=1000."""
    from starlette.testclient import TestClient

    monkeypatch.setenv("TRAILHOUSE_WEB_MAX_BODY_BYTES", "1000")
    app = Starlette(routes=[Mount(MOUNT, app=create_app())])
    with TestClient(app, base_url="http://testserver", follow_redirects=False) as c:
        yield c


@pytest.fixture
def web_limits() -> Iterator[Any]:
    """set(**changes): the events queries' limits for one test; the defaults come back afterwards."""
    before = settings.load().web

    def change(**changes: Any) -> None:
        search.configure(settings.WebLimits(**{**before.__dict__, **changes}))

    yield change
    search.configure(before)


def test_a_body_over_the_limit_is_refused_with_413_before_it_is_read(small_body_client: Any, auth: Any) -> None:
    body = {"condition": "event_name = 'x' OR " + " OR ".join(["event_name = 'y'"] * 60), "accounts": []}
    assert len(json.dumps(body)) > 1000
    r = small_body_client.post(f"{MOUNT}/api/rules/preview", json=body, headers=auth("olivia"))
    assert r.status_code == 413
    assert r.json()["detail"] == ("the request body is larger than 1,000 bytes, the most this server accepts "
                                  "(TRAILHOUSE_WEB_MAX_BODY_BYTES): send less")
    # Anonymous callers too: the body is refused before authentication costs anything.
    assert small_body_client.post(f"{MOUNT}/api/rules/preview", json=body).status_code == 413
    page = small_body_client.post(f"{MOUNT}/rules/new", data={"condition": "x" * 2000}, headers=auth("olivia"))
    assert page.status_code == 413 and "Request too large" in page.text
    # Under the limit, the same route works.
    ok = small_body_client.post(f"{MOUNT}/api/rules/preview", json={"condition": "event_name = 'x'"},
                                headers=auth("olivia"))
    assert ok.status_code == 200, ok.text


def test_a_streamed_body_without_length_is_cut_off_at_the_limit(small_body_client: Any, auth: Any) -> None:
    """A chunked upload (no Content-Length) of 64 KiB pieces, endless as far as the server can tell:
    the server stops reading after the piece that passes 1,000 bytes and answers 413."""
    app = small_body_client.app
    pieces_read = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pieces_read
        pieces_read += 1
        if pieces_read > 1000:
            raise AssertionError("the server kept reading an oversized body")
        return {"type": "http.request", "body": b" " * 65536, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    headers = [(b"content-type", b"application/json"), (b"host", b"testserver"),
               *[(k.lower().encode(), v.encode()) for k, v in auth("olivia").items()]]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": f"{MOUNT}/api/rules/preview", "raw_path": f"{MOUNT}/api/rules/preview".encode(),
             "root_path": "", "query_string": b"", "headers": headers, "server": ("testserver", 80),
             "client": ("127.0.0.1", 5000)}
    anyio.run(app, scope, receive, send)  # type: ignore[arg-type]
    start = next(m for m in sent if m["type"] == "http.response.start")
    assert start["status"] == 413
    assert b"TRAILHOUSE_WEB_MAX_BODY_BYTES" in b"".join(m.get("body", b"") for m in sent)
    assert pieces_read == 1


def test_heavy_requests_per_user_are_limited_with_429_and_retry_after(client: Any, auth: Any, web: Web) -> None:
    per_user = settings.load().web.heavy_per_user
    # olivia already runs as many heavy requests as she may (held here, as two slow exports would).
    with limits.heavy_slot("olivia", per_user), limits.heavy_slot("olivia", per_user):
        for method, url, kwargs in (("get", f"{MOUNT}/api/events/summary", {"params": web.range_params()}),
                                    ("get", f"{MOUNT}/events/summary", {"params": web.range_params()}),
                                    ("get", f"{MOUNT}/api/events/export", {"params": web.range_params()}),
                                    ("post", f"{MOUNT}/api/rules/preview", {"json": {"condition": "is_error"}})):
            r = getattr(client, method)(url, headers=auth("olivia"), **kwargs)
            assert r.status_code == 429, (url, r.status_code)
            assert r.headers["retry-after"] == str(limits.RETRY_AFTER_SECONDS)
            assert "TRAILHOUSE_WEB_HEAVY_PER_USER" in r.text and "try again" in r.text
        # Light requests and other users are not held up.
        assert client.get(f"{MOUNT}/api/events", headers=auth("olivia"), params=web.range_params()).status_code == 200
        assert client.get(f"{MOUNT}/api/events/summary", headers=auth("ada"), params=web.range_params()).status_code == 200
    assert limits.running("olivia") == 0
    assert client.get(f"{MOUNT}/api/events/summary", headers=auth("olivia"), params=web.range_params()).status_code == 200
    assert limits.running("olivia") == 0, "a finished request gives its slot back"


def test_a_query_past_its_time_budget_is_interrupted_and_says_narrow_the_range(web: Web, web_limits: Any) -> None:
    web_limits(query_seconds=0.5)
    wh = Warehouse(settings.load().warehouse_uri)
    with pytest.raises(search.TooBig, match=r"more than the server gives one request \(0.5 s, TRAILHOUSE_WEB_QUERY_SECONDS\): "
                                            r"narrow the time range or add filters"):
        with search.events_connection(wh) as con:
            con.execute("SELECT count(*) FROM range(1000000000000) WHERE hash(range) = 1").fetchall()
    with search.events_connection(wh) as con:  # the next request gets a fresh connection that works
        assert con.execute("SELECT count(*) FROM cloudtrail_events").fetchone()[0] > 0


def test_each_query_is_held_to_its_memory_and_a_bigger_one_says_narrow(web: Web, web_limits: Any) -> None:
    web_limits(query_memory="40MB")
    wh = Warehouse(settings.load().warehouse_uri)
    with search.events_connection(wh) as con:
        assert con.execute("SELECT current_setting('memory_limit')").fetchone()[0] in ("38.1 MiB", "40.0 MB")
    with pytest.raises(search.TooBig, match=r"more memory than the server gives one request \(40MB, "
                                            r"TRAILHOUSE_WEB_QUERY_MEMORY\)"):
        with search.events_connection(wh) as con:
            con.execute("SELECT list(range) FROM range(50000000)").fetchall()


def test_when_every_query_slot_stays_taken_the_answer_is_503_with_retry_after(client: Any, auth: Any, web: Web,
                                                                            web_limits: Any) -> None:
    web_limits(queries=1, query_seconds=0.2)
    assert search.LIMITS.gate.acquire(timeout=1)  # the one slot, taken as a long export would
    try:
        r = client.get(f"{MOUNT}/api/events", headers=auth("olivia"), params=web.range_params())
        assert r.status_code == 503 and r.headers["retry-after"] == str(limits.RETRY_AFTER_SECONDS)
        assert "try again in a few seconds" in r.json()["detail"]
    finally:
        search.LIMITS.gate.release()
    assert client.get(f"{MOUNT}/api/events", headers=auth("olivia"), params=web.range_params()).status_code == 200


def test_the_summary_counts_what_the_table_holds(client: Any, auth: Any, web: Web) -> None:
    body = client.get(f"{MOUNT}/api/events/summary", headers=auth("ada"), params=web.range_params()).json()
    df = (Warehouse(settings.load().warehouse_uri).scan()
          .filter(pl.col("event_time") >= web.start, pl.col("event_time") < web.end).collect())
    assert body["total"] == df.height and body["errors"] == df.get_column("error_code").is_not_null().sum()
    for label, column in (("account", "account_id"), ("region", "region"), ("service", "event_source"),
                          ("event name", "event_name"), ("source IP", "source_ip_address")):
        counts = Counter(df.get_column(column).to_list())
        want = sorted(counts.items(), key=lambda vn: (-vn[1], vn[0] is None, vn[0] or ""))[:search.TOP_N]
        assert [(t["value"], t["count"]) for t in body["top"][label]] == want, label
    assert sum(b["count"] for b in body["series"]) == df.height
    size = timedelta(seconds=body["bucket_seconds"])
    for b in body["series"]:
        start = datetime.fromisoformat(b["start"]).replace(tzinfo=UTC)
        assert b["count"] == df.filter(pl.col("event_time") >= start, pl.col("event_time") < start + size).height


def test_rule_previews_run_one_at_a_time_and_a_long_wait_answers_503(client: Any, auth: Any, web: Web,
                                                                     web_limits: Any) -> None:
    """A preview's rows and matches live outside DuckDB's memory limit: one at a time, server-wide."""
    body = {"condition": "event_name = 'ConsoleLogin'"}
    assert client.post(f"{MOUNT}/api/rules/preview", json=body, headers=auth("olivia")).status_code == 200
    web_limits(previews=1, query_seconds=0.3)  # after the app's first request, which reads the settings
    gate = search.LIMITS.preview_gate
    assert gate.acquire(timeout=1)  # another user's preview, still running
    try:
        r = client.post(f"{MOUNT}/api/rules/preview", json=body, headers=auth("olivia"))
        assert r.status_code == 503 and r.headers["retry-after"] == str(limits.RETRY_AFTER_SECONDS)
        assert "TRAILHOUSE_WEB_PREVIEWS" in r.json()["detail"]
    finally:
        gate.release()
    assert client.post(f"{MOUNT}/api/rules/preview", json=body, headers=auth("olivia")).status_code == 200
