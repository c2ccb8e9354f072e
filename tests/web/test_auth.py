"""Every route authenticates; roles decide what each caller sees and may change (docs/web.md, "Security model")."""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from datetime import date
from typing import Any

import httpx
import polars as pl
import pytest
from webhelpers import MOUNT, ODD_IDS, Server, Web

from trailhouse import settings
from trailhouse.deployment import Deployment
from trailhouse.warehouse.table import Warehouse
from trailhouse.web.render import STATIC_DIR

HTTP_METHODS = ("get", "post", "put", "patch", "delete")


def openapi(client: Any) -> dict[str, Any]:
    r = client.get(f"{MOUNT}/openapi.json")
    assert r.status_code == 200
    return r.json()


def operations(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """(METHOD, URL) of every operation in the OpenAPI document, path parameters filled in."""
    out = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method not in HTTP_METHODS:
                continue
            url = path
            for p in op.get("parameters", []):
                if p["in"] == "path":
                    value = "1" if p.get("schema", {}).get("type") == "integer" else "x1"
                    url = url.replace("{" + p["name"] + "}", value)
            out.append((method.upper(), MOUNT + url))
    return out


def truth(web: Web) -> Counter[str]:
    """Events per account in the test range, read straight from the Delta table (not through the app)."""
    lf = Warehouse(settings.load().warehouse_uri).scan()
    df = lf.filter(pl.col("event_time") >= web.start, pl.col("event_time") < web.end).select("account_id").collect()
    return Counter(df.get_column("account_id").to_list())


def all_events(client: Any, headers: dict[str, str], web: Web, **params: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    page = 1
    while True:
        r = client.get(f"{MOUNT}/api/events", headers=headers,
                       params={**web.range_params(), **params, "page": page, "page_size": 500})
        assert r.status_code == 200, r.text
        body = r.json()
        rows += body["events"]
        if not body["has_next"]:
            return rows
        page += 1


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', html)
    assert found, "the page carries a CSRF token"
    return found.group(1)


# --- authentication --------------------------------------------------------------------------


def test_the_openapi_walk_covers_every_route(client: Any) -> None:
    from fastapi.routing import APIRoute

    from trailhouse.web.app import create_app

    routes = {(m, MOUNT + r.path) for r in create_app().routes if isinstance(r, APIRoute) for m in r.methods}
    doc = openapi(client)
    documented = set()
    for path, item in doc["paths"].items():
        documented |= {(m.upper(), MOUNT + path) for m in item if m in HTTP_METHODS}
    assert routes == documented, "a route hidden from the OpenAPI document would escape the anonymous walk"
    assert len(documented) >= 25


def test_anonymous_gets_401_on_every_route(client: Any) -> None:
    doc = openapi(client)
    for method, url in operations(doc):
        # A body that does not even parse: authentication must come before any validation.
        r = client.request(method, url, content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 401, (method, url, r.status_code, r.text[:200])
        assert r.headers["www-authenticate"] == "Bearer"
        if "/api/" in url:
            assert "not authenticated" in r.json()["detail"]  # JSON, no redirect
        else:
            assert "text/html" in r.headers["content-type"]
            assert "/auth/login?next=" in r.text  # a link to Airflow's login page
        assert "csrf_token" not in r.text and "arn:aws" not in r.text
    # Paths that match no route are not a way around it either.
    assert client.get(f"{MOUNT}/no/such/page").status_code == 401
    assert client.get(f"{MOUNT}/api/no-such-thing").status_code == 401


def test_public_static_files_hold_no_data(client: Any, web: Web) -> None:
    """The CSS, JS and nav icon are public on purpose (the login prompt and Airflow's menu use them): fixed files."""
    for name in ("trailhouse.css", "trailhouse.js", "icon.svg"):
        r = client.get(f"{MOUNT}/static/{name}")
        assert r.status_code == 200
        assert r.content == (STATIC_DIR / name).read_bytes()  # the packaged file, nothing rendered into it
        assert not re.search(r"\b\d{12}\b", r.text) and "arn:aws" not in r.text
    assert client.get(f"{MOUNT}/static/../trailhouse.db").status_code in (401, 404)


def test_bad_or_expired_tokens_are_401(client: Any, token: Any) -> None:
    url = f"{MOUNT}/api/me"
    assert client.get(url, headers={"Authorization": "Bearer not-a-jwt"}).status_code == 401
    assert client.get(url, headers={"Authorization": "Basic YWRhOmFkYQ=="}).status_code == 401
    assert client.get(url, headers={"Cookie": "_token=not-a-jwt"}).status_code == 401
    expired = token("ada", expiration_time_in_seconds=-120)
    r = client.get(url, headers={"Authorization": f"Bearer {expired}"})
    assert r.status_code == 401 and "log in" in r.json()["detail"]
    forged = token("ada")[:-4] + "AAAA"
    assert client.get(url, headers={"Authorization": f"Bearer {forged}"}).status_code == 401
    # Both ways of presenting a good token work.
    good = token("ada")
    assert client.get(url, headers={"Authorization": f"Bearer {good}"}).json()["username"] == "ada"
    assert client.get(url, headers={"Cookie": f"_token={good}"}).json()["is_admin"] is True


def test_user_without_a_role_gets_403_saying_how_to_get_one(client: Any, auth: Any) -> None:
    for method, url in operations(openapi(client)):
        r = client.request(method, url, headers=auth("nobody"))
        assert r.status_code == 403, (method, url, r.status_code)
        assert "trailhouse users grant nobody" in r.text
        assert "arn:aws" not in r.text


# --- events: scoped server-side --------------------------------------------------------------


def test_search_is_scoped_to_the_owners_accounts(client: Any, auth: Any, web: Web) -> None:
    expected = truth(web)
    assert set(expected) == set(web.accounts)
    admin_rows = all_events(client, auth("ada"), web)
    assert Counter(r["account_id"] for r in admin_rows) == expected
    owner_rows = all_events(client, auth("olivia"), web)
    assert {r["account_id"] for r in owner_rows} == {web.owned}
    assert len(owner_rows) == expected[web.owned]
    # Newest first.
    times = [r["event_time"] for r in owner_rows]
    assert times == sorted(times, reverse=True)
    # Naming a foreign account or a foreign principal finds nothing.
    assert all_events(client, auth("olivia"), web, account=web.foreign[0]) == []
    foreign_principal = next(r["principal"] for r in admin_rows if r["account_id"] == web.foreign[0] and r["principal"]
                             and web.foreign[0] in r["principal"])
    assert all_events(client, auth("olivia"), web, principal=foreign_principal) == []
    assert all_events(client, auth("ada"), web, principal=foreign_principal)


def test_filters_combine(client: Any, auth: Any, web: Web) -> None:
    rows = all_events(client, auth("ada"), web)
    failed = all_events(client, auth("ada"), web, any_error="true")
    assert failed and all(r["error_code"] for r in failed) and len(failed) == sum(1 for r in rows if r["error_code"])
    writes = all_events(client, auth("ada"), web, read_only="false")
    assert writes and all(r["read_only"] is False for r in writes)
    region = rows[0]["region"]
    by_region = all_events(client, auth("ada"), web, region=region, name=rows[0]["event_name"])
    assert by_region and all(r["region"] == region and r["event_name"] == rows[0]["event_name"] for r in by_region)
    # A bad value is a clear 400, never a 500.
    r = client.get(f"{MOUNT}/api/events", params={"from": "yesterday"}, headers=auth("ada"))
    assert r.status_code == 400 and "from" in r.json()["detail"]
    assert client.get(f"{MOUNT}/api/events", headers=auth("ada")).status_code == 200  # default: last 24 h


def test_event_detail_of_a_foreign_account_is_404_like_a_missing_one(client: Any, auth: Any, web: Web) -> None:
    rows = all_events(client, auth("ada"), web)
    foreign = next(r for r in rows if r["account_id"] != web.owned)
    own = next(r for r in rows if r["account_id"] == web.owned)
    api = f"{MOUNT}/api/events"
    for params in ({}, {"date": foreign["event_date"]}):
        hidden = client.get(f"{api}/{foreign['event_id']}", params=params, headers=auth("olivia"))
        missing = client.get(f"{api}/no-such-event-id", params=params, headers=auth("olivia"))
        assert hidden.status_code == missing.status_code == 404
        assert hidden.json() == missing.json()  # nothing tells the two apart
        page = client.get(f"{MOUNT}/events/{foreign['event_id']}", params=params, headers=auth("olivia"))
        assert page.status_code == 404 and foreign["event_id"] not in page.text
    seen = client.get(f"{api}/{foreign['event_id']}", params={"date": foreign["event_date"]}, headers=auth("ada"))
    assert seen.status_code == 200
    body = seen.json()
    assert body["record"]["eventID"] == foreign["event_id"]
    assert body["record"]["recipientAccountId"] == foreign["account_id"]
    assert set(body["related"]) >= {"same principal", "same IP"}
    mine = client.get(f"{api}/{own['event_id']}", headers=auth("olivia"))
    assert mine.status_code == 200 and mine.json()["account_id"] == web.owned
    page = client.get(f"{MOUNT}/events/{own['event_id']}", headers=auth("olivia"))
    assert page.status_code == 200 and own["event_id"] in page.text and "Same principal" in page.text


def test_events_with_slashes_crlf_or_reserved_words_in_their_id_open(client: Any, auth: Any, web: Web) -> None:
    """Event ids are whatever the delivery file says: each opens from its link in the listing,
    as a page and through the API, and the record shown is that event's."""
    from html import escape
    from urllib.parse import quote

    from trailhouse.web.render import event_url

    rows = {r["event_id"]: r for r in all_events(client, auth("olivia"), web) if r["event_id"] in ODD_IDS}
    assert set(rows) == set(ODD_IDS)
    for event_id, row in rows.items():
        href = event_url(MOUNT, {**row, "event_date": date.fromisoformat(row["event_date"])})
        day = row["event_time"][:19]
        listing = client.get(f"{MOUNT}/events", headers=auth("olivia"),
                             params={"from": day, "to": day[:-2] + "59", "account": web.owned, "page_size": 500})
        assert escape(href) in listing.text, f"the listing links {event_id!r} at {href}"
        page = client.get(href, headers=auth("olivia"))
        assert page.status_code == 200, (event_id, href, page.text[:300])
        assert json.dumps(event_id)[1:-1].replace("&", "&amp;").replace("<", "&lt;") in page.text
        api = client.get(f"{MOUNT}/api/event", headers=auth("olivia"), params={"id": event_id, "date": row["event_date"]})
        assert api.status_code == 200 and api.json()["record"]["eventID"] == event_id
        assert client.get(f"{MOUNT}/api/event", headers=auth("olivia"), params={"id": event_id}).status_code == 200
        assert client.get(href, headers=auth("ada")).status_code == 200
    # Plain ids keep their path links, which the API answers too.
    plain = next(r for r in all_events(client, auth("olivia"), web) if r["event_id"] not in ODD_IDS)
    assert event_url(MOUNT, plain) == f"{MOUNT}/events/{quote(plain['event_id'], safe='')}"
    assert client.get(f"{MOUNT}/api/events/{plain['event_id']}", headers=auth("olivia")).status_code == 200


def test_exports_are_scoped(client: Any, auth: Any, web: Web) -> None:
    expected = truth(web)
    r = client.get(f"{MOUNT}/api/events/export", params={**web.range_params(), "format": "csv"}, headers=auth("olivia"))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.headers["content-disposition"].startswith("attachment;")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == expected[web.owned] and {row["account_id"] for row in rows} == {web.owned}
    r = client.get(f"{MOUNT}/api/events/export", params={**web.range_params(), "format": "json"}, headers=auth("ada"))
    assert r.status_code == 200
    assert Counter(e["account_id"] for e in r.json()) == expected


def test_csv_cells_never_start_a_formula() -> None:
    from trailhouse.web.api import _csv_cell

    assert _csv_cell("=HYPERLINK(\"http://x\")") == "'=HYPERLINK(\"http://x\")"
    assert _csv_cell("-1+2") == "'-1+2" and _csv_cell("aws-cli/2") == "aws-cli/2" and _csv_cell(True) == "true"


def test_summary_is_scoped(client: Any, auth: Any, web: Web) -> None:
    expected = truth(web)
    mine = client.get(f"{MOUNT}/api/events/summary", params=web.range_params(), headers=auth("olivia")).json()
    assert mine["total"] == expected[web.owned]
    assert mine["top"]["account"] == [{"value": web.owned, "count": expected[web.owned]}]
    assert sum(p["count"] for p in mine["series"]) == mine["total"]
    everything = client.get(f"{MOUNT}/api/events/summary", params=web.range_params(), headers=auth("ada")).json()
    assert everything["total"] == sum(expected.values())
    assert {t["value"] for t in everything["top"]["account"]} == set(web.accounts)
    page = client.get(f"{MOUNT}/events/summary", params=web.range_params(), headers=auth("olivia"))
    assert page.status_code == 200 and "<svg" in page.text
    assert all(a not in page.text for a in web.foreign)


# --- alerts: everyone sees every alert, not every event --------------------------------------


def test_everyone_sees_every_alert_but_only_their_events(client: Any, auth: Any, web: Web) -> None:
    def ids(user: str) -> list[int]:
        body = client.get(f"{MOUNT}/api/alerts", params={"page_size": 500}, headers=auth(user)).json()
        return [a["id"] for a in body["alerts"]]

    assert ids("olivia") == ids("ada") and ids("ada")
    alerts = client.get(f"{MOUNT}/api/alerts", params={"page_size": 500}, headers=auth("ada")).json()["alerts"]
    foreign = next(a for a in alerts if a["account_id"] in web.foreign)
    as_owner = client.get(f"{MOUNT}/api/alerts/{foreign['id']}", headers=auth("olivia")).json()
    assert as_owner["alert"]["id"] == foreign["id"]
    assert as_owner["events"] == [] and as_owner["hidden"] == as_owner["total"] == foreign["count"]
    as_admin = client.get(f"{MOUNT}/api/alerts/{foreign['id']}", headers=auth("ada")).json()
    assert as_admin["hidden"] == 0 and len(as_admin["events"]) == foreign["count"]
    page = client.get(f"{MOUNT}/alerts/{foreign['id']}", headers=auth("olivia"))
    assert page.status_code == 200 and "in accounts you do not own" in page.text
    assert all(e["event_id"] not in page.text for e in as_admin["events"])
    own = next(a for a in alerts if a["account_id"] == web.owned)
    mine = client.get(f"{MOUNT}/api/alerts/{own['id']}", headers=auth("olivia")).json()
    assert mine["hidden"] == 0 and {e["account_id"] for e in mine["events"]} == {web.owned}
    assert client.get(f"{MOUNT}/api/alerts", params={"severity": "critical"}, headers=auth("olivia")).status_code == 200


def _alerts(client: Any, auth: Any, **params: Any) -> list[dict[str, Any]]:
    return client.get(f"{MOUNT}/api/alerts", params={"page_size": 500, **params}, headers=auth("ada")).json()["alerts"]


def test_acknowledge_and_resolve_record_who(client: Any, auth: Any, web: Web) -> None:
    target = next(a for a in _alerts(client, auth, account=web.owned, status="open"))
    r = client.post(f"{MOUNT}/api/alerts/{target['id']}/status", json={"status": "acknowledged"}, headers=auth("olivia"))
    assert r.status_code == 200 and (r.json()["status"], r.json()["status_by"]) == ("acknowledged", "olivia")
    r = client.post(f"{MOUNT}/api/alerts/{target['id']}/status", json={"status": "resolved"}, headers=auth("ada"))
    assert (r.json()["status"], r.json()["status_by"]) == ("resolved", "ada") and r.json()["status_at"]
    assert client.post(f"{MOUNT}/api/alerts/{target['id']}/status", json={"status": "gone"},
                       headers=auth("ada")).status_code == 422
    assert client.post(f"{MOUNT}/api/alerts/999999/status", json={"status": "open"},
                       headers=auth("ada")).status_code == 404


def test_owners_change_only_alerts_of_their_own_accounts(client: Any, auth: Any, token: Any, web: Web) -> None:
    """Both routes that change an alert's status (API and form), for every status: an owner is
    refused another account's alert with 403 and the reason; administrators change any alert."""
    foreign = next(a for a in _alerts(client, auth) if a["account_id"] in web.foreign)
    cookie = {"Cookie": f"_token={token('olivia')}"}
    csrf = csrf_of(client.get(f"{MOUNT}/alerts", headers=cookie).text)
    for status in ("acknowledged", "resolved", "open"):
        r = client.post(f"{MOUNT}/api/alerts/{foreign['id']}/status", json={"status": status}, headers=auth("olivia"))
        assert r.status_code == 403, r.text
        assert r.json()["detail"] == (f"alert {foreign['id']} is about account {foreign['account_id']}, which 'olivia' "
                                      "does not own: only that account's owners and security administrators "
                                      "acknowledge, resolve or reopen it")
        form = client.post(f"{MOUNT}/alerts/{foreign['id']}/status", data={"status": status, "csrf_token": csrf},
                           headers=cookie)
        assert form.status_code == 403 and "does not own" in form.text
    after = client.get(f"{MOUNT}/api/alerts/{foreign['id']}", headers=auth("olivia")).json()["alert"]
    assert (after["status"], after["status_by"]) == (foreign["status"], foreign["status_by"])
    # Her pages offer no buttons she may not use, and say who may.
    page = client.get(f"{MOUNT}/alerts/{foreign['id']}", headers=cookie).text
    assert f'action="{MOUNT}/alerts/{foreign["id"]}/status"' not in page
    assert f"Only the owners of account {foreign['account_id']} and security administrators" in page
    own = next(a for a in _alerts(client, auth, account=web.owned))
    assert f'action="{MOUNT}/alerts/{own["id"]}/status"' in client.get(f"{MOUNT}/alerts/{own['id']}", headers=cookie).text
    # An administrator acts on any account's alert, through both routes.
    r = client.post(f"{MOUNT}/api/alerts/{foreign['id']}/status", json={"status": "acknowledged"}, headers=auth("ada"))
    assert r.status_code == 200 and r.json()["status_by"] == "ada"
    ada = {"Cookie": f"_token={token('ada')}"}
    form = client.post(f"{MOUNT}/alerts/{foreign['id']}/status",
                       data={"status": foreign["status"], "csrf_token": csrf_of(client.get(f"{MOUNT}/alerts", headers=ada).text)},
                       headers=ada)
    assert form.status_code == 303


def test_cookie_sessions_need_the_csrf_token_to_change_anything(client: Any, token: Any, web: Web) -> None:
    cookie = {"Cookie": f"_token={token('olivia')}"}
    alerts = client.get(f"{MOUNT}/api/alerts", params={"page_size": 500, "status": "open", "account": web.owned},
                        headers=cookie).json()
    target = alerts["alerts"][0]["id"]
    url = f"{MOUNT}/alerts/{target}/status"
    refused = client.post(url, data={"status": "acknowledged"}, headers=cookie)
    assert refused.status_code == 403 and "CSRF" in refused.text
    refused = client.post(f"{MOUNT}/api/alerts/{target}/status", json={"status": "acknowledged"}, headers=cookie)
    assert refused.status_code == 403
    page = client.get(f"{MOUNT}/alerts/{target}", headers=cookie)
    done = client.post(url, data={"status": "acknowledged", "csrf_token": csrf_of(page.text)}, headers=cookie)
    assert done.status_code == 303 and done.headers["location"] == f"{MOUNT}/alerts/{target}"
    # Another user's page token does not fit this session.
    other = client.get(f"{MOUNT}/alerts/{target}", headers={"Cookie": f"_token={token('ada')}"})
    assert client.post(url, data={"status": "open", "csrf_token": csrf_of(other.text)},
                       headers=cookie).status_code == 403
    # An open redirect through `back` is not possible.
    done = client.post(url, data={"status": "open", "csrf_token": csrf_of(page.text), "back": "https://evil.example/"},
                       headers=cookie)
    assert done.headers["location"] == f"{MOUNT}/alerts/{target}"


# --- rules: scope enforced by the rulebook, never by the form --------------------------------

CONDITION = "starts_with(event_name, 'Delete') AND NOT is_error"


def test_owners_write_rules_only_for_their_accounts(client: Any, auth: Any, web: Web) -> None:
    api = f"{MOUNT}/api/rules"
    rule = {"id": "olivia.deletes", "title": "Deletes", "severity": "medium", "condition": CONDITION,
            "accounts": [web.owned]}
    r = client.post(api, json=rule, headers=auth("olivia"))
    assert r.status_code == 201, r.text
    assert (r.json()["owner"], r.json()["scope"]) == ("olivia", [web.owned])
    r = client.post(api, json={**rule, "id": "olivia.foreign", "accounts": [web.foreign[0]]}, headers=auth("olivia"))
    assert r.status_code == 403 and "only for their own accounts" in r.json()["detail"]
    r = client.post(api, json={**rule, "id": "olivia.all", "accounts": []}, headers=auth("olivia"))
    assert r.status_code == 403 and "security administrator" in r.json()["detail"]
    r = client.post(api, json={**rule, "id": "ada.all", "accounts": []}, headers=auth("ada"))
    assert r.status_code == 201 and r.json()["scope"] == []
    # Changing: no widening to a foreign account, no touching a rule that covers accounts one does not own.
    r = client.patch(f"{api}/olivia.deletes", json={"accounts": [web.owned, web.foreign[0]]}, headers=auth("olivia"))
    assert r.status_code == 403
    assert client.patch(f"{api}/ada.all", json={"severity": "low"}, headers=auth("olivia")).status_code == 403
    r = client.patch(f"{api}/olivia.deletes", json={"severity": "high"}, headers=auth("olivia"))
    assert r.status_code == 200 and r.json()["severity"] == "high"
    assert client.patch(f"{api}/no.such-rule", json={"severity": "high"}, headers=auth("ada")).status_code == 404
    # Switches: built-in rules are administrators' to switch.
    builtin = "trailhouse.ssm-send-command"
    assert client.post(f"{api}/{builtin}/enabled", json={"enabled": False}, headers=auth("olivia")).status_code == 403
    r = client.post(f"{api}/{builtin}/enabled", json={"enabled": False}, headers=auth("ada"))
    assert r.status_code == 200 and r.json()["enabled"] is False
    assert client.post(f"{api}/{builtin}/enabled", json={"enabled": True}, headers=auth("ada")).json()["enabled"]
    r = client.post(f"{api}/olivia.deletes/enabled", json={"enabled": False}, headers=auth("olivia"))
    assert r.status_code == 200 and r.json()["enabled"] is False
    # A condition is checked before it is saved.
    r = client.post(api, json={**rule, "id": "olivia.bad", "condition": "1=1; DROP TABLE x"}, headers=auth("olivia"))
    assert r.status_code == 400 and "';'" in r.json()["detail"]
    listed = {x["id"]: x for x in client.get(api, headers=auth("olivia")).json()}
    assert listed["olivia.deletes"]["may_change"] and not listed["ada.all"]["may_change"]
    assert listed["cis.root-account-usage"]["builtin"] and "last_hit" in listed["cis.root-account-usage"]


def test_preview_runs_over_the_callers_last_24_hours_only(client: Any, auth: Any, web: Web) -> None:
    api = f"{MOUNT}/api/rules/preview"
    mine = client.post(api, json={"condition": "event_name IS NOT NULL"}, headers=auth("olivia")).json()
    everything = client.post(api, json={"condition": "event_name IS NOT NULL"}, headers=auth("ada")).json()
    assert mine["accounts"] == [web.owned] and everything["accounts"] is None
    assert 0 < mine["events"] < everything["events"] and mine["matches"] == mine["events"]
    assert {e["account_id"] for e in mine["examples"]} == {web.owned}
    foreign = client.post(api, json={"condition": "TRUE", "accounts": [web.foreign[0]]}, headers=auth("olivia")).json()
    assert foreign["not_yours"] == [web.foreign[0]] and foreign["events"] == 0 and foreign["examples"] == []
    r = client.post(api, json={"condition": "read_csv('/etc/passwd') IS NOT NULL"}, headers=auth("ada"))
    assert r.status_code == 400 and "not allowed" in r.json()["detail"]


def test_rule_form_refuses_a_foreign_account_with_a_message(client: Any, token: Any, web: Web) -> None:
    cookie = {"Cookie": f"_token={token('olivia')}"}
    form = client.get(f"{MOUNT}/rules/new", headers=cookie)
    assert form.status_code == 200 and web.owned in form.text
    fields = {"rule_id": "olivia.form-foreign", "title": "Foreign", "severity": "low", "condition": CONDITION,
              "accounts": web.foreign[0], "csrf_token": csrf_of(form.text)}
    r = client.post(f"{MOUNT}/rules/new", data={**fields, "action": "save"}, headers=cookie)
    assert r.status_code == 403 and "Not saved" in r.text and "only for their own accounts" in r.text
    preview = client.post(f"{MOUNT}/rules/new", data={**fields, "accounts": web.owned, "action": "preview"},
                          headers=cookie)
    assert preview.status_code == 200 and "events matched" in preview.text
    r = client.post(f"{MOUNT}/rules/new", data={**fields, "rule_id": "olivia.form-own", "accounts": web.owned,
                                                "action": "save"}, headers=cookie)
    assert r.status_code == 303 and r.headers["location"].endswith("/rules?saved=olivia.form-own")
    r = client.post(f"{MOUNT}/rules/olivia.form-own", data={**fields, "accounts": f"{web.owned},{web.foreign[0]}",
                                                            "action": "save"}, headers=cookie)
    assert r.status_code == 403 and "Not saved" in r.text


# --- MAVs ------------------------------------------------------------------------------------


def test_mavs_page_shows_runs_and_says_how_to_get_a_permission_report(client: Any, auth: Any,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    body = client.get(f"{MOUNT}/api/mavs", headers=auth("olivia")).json()
    (mav,) = body
    assert mav["name"] == "web" and mav["runs"][0]["status"] == "success" and mav["runs"][0]["lag"]
    assert mav["permission_report"] is None
    page = client.get(f"{MOUNT}/mavs", headers=auth("olivia"))
    assert "run `trailhouse mav validate web`" in page.text
    from trailhouse.web import data

    report = {"bucket": "b", "prefix": "", "ok": False, "missing_required": ["s3:GetObject"],
              "checks": [{"action": "s3:GetObject", "status": "missing", "required": True, "detail": "AccessDenied",
                          "fix": "allow s3:GetObject on arn:aws:s3:::b/AWSLogs/*"}]}
    monkeypatch.setattr(data, "permission_report", lambda dag_id: {"run_id": "scheduled__x", "checked_at": None,
                                                                   "report": report})
    page = client.get(f"{MOUNT}/mavs", headers=auth("olivia"))
    assert "required permission missing: s3:GetObject" in page.text and "allow s3:GetObject" in page.text


def test_mavs_page_lists_a_broken_file(web: Any, auth: Any, th_home: Any) -> None:
    """th_home: a fresh, empty deployment, served by an app of its own (an app reads its settings once)."""
    from starlette.applications import Starlette
    from starlette.routing import Mount
    from starlette.testclient import TestClient

    from trailhouse.alerting import roles
    from trailhouse.web.app import create_app

    (th_home / "mavs").mkdir(parents=True)
    (th_home / "mavs" / "bad.yaml").write_text("name: bad\nbucket: b\npath: /x\n")
    with TestClient(Starlette(routes=[Mount(MOUNT, app=create_app())]), base_url="http://testserver",
                    follow_redirects=False) as client:
        page = client.get(f"{MOUNT}/mavs", headers=auth("ada"))
        assert page.status_code == 403  # a fresh app database: no roles at all
        roles.grant(Deployment().engine, "ada", admin=True)
        page = client.get(f"{MOUNT}/mavs", headers=auth("ada"))
        assert page.status_code == 200 and "broken" in page.text and "exactly one of" in page.text
        assert client.get(f"{MOUNT}/api/events", headers=auth("ada")).json()["events"] == []  # no table yet


# --- the real thing: Airflow's API server serves the plugin -----------------------------------


def test_airflow_api_server_mounts_the_plugin_and_its_tokens_work(airflow_server: Server, web: Web) -> None:
    url = airflow_server.url
    doc = httpx.get(f"{url}{MOUNT}/openapi.json")
    assert doc.status_code == 200 and "/api/events" in doc.json()["paths"]
    r = httpx.get(f"{url}{MOUNT}/api/events")
    assert r.status_code == 401 and "not authenticated" in r.json()["detail"]
    page = httpx.get(f"{url}{MOUNT}/events")
    assert page.status_code == 401 and "/auth/login?next=%2Ftrailhouse%2Fevents" in page.text
    olivia = airflow_server.login_token("olivia")  # Airflow's own login endpoint
    me = httpx.get(f"{url}{MOUNT}/api/me", headers={"Authorization": f"Bearer {olivia}"})
    assert me.status_code == 200 and me.json()["accounts"] == [web.owned]
    me = httpx.get(f"{url}{MOUNT}/api/me", cookies={"_token": olivia})
    assert me.status_code == 200 and me.json()["username"] == "olivia"
    nobody = airflow_server.login_token("nobody")
    assert httpx.get(f"{url}{MOUNT}/api/me", headers={"Authorization": f"Bearer {nobody}"}).status_code == 403
    # The navigation entry Airflow's UI shows.
    ada = airflow_server.login_token("ada")
    plugins = httpx.get(f"{url}/api/v2/plugins", headers={"Authorization": f"Bearer {ada}"}).json()["plugins"]
    ours = next(p for p in plugins if p["name"] == "trailhouse")
    assert {"href": "/trailhouse/", "destination": "nav"}.items() <= ours["external_views"][0].items()
    assert ours["fastapi_apps"][0]["url_prefix"] == "/trailhouse"


def test_coverage_page_shows_the_matrix_to_both_roles(client: Any, auth: Any) -> None:
    from trailhouse.alerting import coverage, rulebook

    cov = coverage.coverage(rulebook.all_rules(Deployment().engine))
    covered = [c for c in cov.cells if c.rules]
    for user in ("ada", "olivia"):
        page = client.get(f"{MOUNT}/coverage", headers=auth(user))
        assert page.status_code == 200
        assert f"{cov.counts()['tested']} tested" in page.text
        for cell in covered:  # every covered technique, with the rules behind it, links to them
            assert cell.technique in page.text and f"/rules/{cell.rules[0]}" in page.text
    only = client.get(f"{MOUNT}/coverage?covered=true", headers=auth("ada")).text
    uncovered = [c.technique for c in cov.cells if not c.rules and c.technique not in {x.technique for x in covered}]
    assert uncovered and not any(f">{t}<" in only for t in uncovered)
