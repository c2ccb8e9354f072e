"""A real browser (Playwright driving Debian's Chromium) against the real Airflow API server with the plugin.

Flows: log in through Airflow's own login page, search events, open one, export CSV,
acknowledge an alert, create a rule as an owner, fail to create one for a foreign account.
Every page visited is saved as tests/artifacts/screenshots/<name>.png (git-ignored).
Chromium comes from the project's test set-up (`make browser`, a prerequisite of `make test`);
when it is missing these tests fail saying so: they never skip.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from webhelpers import MOUNT, PASSWORDS, Server, Web

from trailhouse import settings

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
        "--no-first-run", "--disable-component-update", "--disable-sync"]
SHOTS = settings.PROJECT_ROOT / "tests" / "artifacts" / "screenshots"


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"Debian's Chromium is not installed at {CHROMIUM}: run `make browser` "
                    "(apt-get install chromium); Playwright's own browser download does not work here")
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, args=ARGS, headless=True,
            accept_downloads=True, viewport={"width": 1280, "height": 860})
        context.set_default_timeout(15_000)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture(scope="module")
def page(browser_context: Any, airflow_server: Server) -> Any:
    """A page logged in as olivia (owner of one account) through Airflow's login page."""
    page = browser_context.new_page()
    page.goto(f"{airflow_server.url}{MOUNT}/events")
    shot(page, "01-not-logged-in")
    page.get_by_role("link", name="Log in with your Airflow account").click()
    page.get_by_label("Username").fill("olivia")
    page.get_by_label("Password").fill(PASSWORDS["olivia"])
    shot(page, "02-airflow-login")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(rf".*{MOUNT}/events$"))  # back where we started, now logged in
    return page


def shot(page: Any, name: str) -> Path:
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def test_log_in_search_open_an_event_and_export(page: Any, web: Web) -> None:
    from playwright.sync_api import expect

    expect(page.get_by_role("heading", name="Events", exact=True)).to_be_visible()
    expect(page.get_by_text("Signed in as")).to_contain_text("olivia")
    shot(page, "03-events")
    # Search: the last 3 days, changes only (not read-only), with the keyboard-usable form.
    page.get_by_label("From (UTC)").fill(web.start.strftime("%Y-%m-%dT%H:%M:%S"))
    page.get_by_label("To (UTC)").fill(web.end.strftime("%Y-%m-%dT%H:%M:%S"))
    page.get_by_label("Read-only").select_option("false")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url(re.compile(r".*read_only=false.*"))
    rows = page.locator("table tbody tr")
    assert rows.count() > 0
    accounts = {t.strip() for t in page.locator("table tbody tr td:nth-child(2)").all_inner_texts()}
    assert accounts == {web.owned}, "an owner sees only their own accounts"
    assert "write" in rows.first.inner_text()
    shot(page, "04-events-filtered")
    # Export the current result as CSV: a real download.
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Export CSV").click()
    download = download_info.value
    exported = list(csv.DictReader(io.StringIO(Path(download.path()).read_text())))
    assert exported and {r["account_id"] for r in exported} == {web.owned}
    assert {r["read_only"] for r in exported} == {"false"}
    assert download.suggested_filename.startswith("trailhouse-events-") and download.suggested_filename.endswith(".csv")
    # Open an event: click its row.
    first_time = rows.first.locator("td").first.inner_text()
    rows.first.locator("td").nth(3).click()  # the principal cell: the whole row is a link
    page.wait_for_url(re.compile(rf".*{MOUNT}/events/[^/?]+\?date=.*"))
    expect(page.get_by_role("heading", name="The CloudTrail record")).to_be_visible()
    assert first_time in page.locator("dl.facts").inner_text()
    record = page.locator("pre.json").inner_text()
    assert '"eventID"' in record and '"recipientAccountId": "' + web.owned + '"' in record
    expect(page.get_by_role("link", name="Same principal")).to_be_visible()
    shot(page, "05-event-detail")
    page.get_by_role("link", name="Same principal").click()
    assert page.locator("table tbody tr").count() >= 1
    # The summary of the same filters, with its chart.
    page.get_by_role("link", name="Summary of these events").click()
    expect(page.locator("svg.chart")).to_be_visible()
    shot(page, "06-summary")


def test_keyboard_and_narrow_window(page: Any, airflow_server: Server) -> None:
    from playwright.sync_api import expect

    page.goto(f"{airflow_server.url}{MOUNT}/events")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    # Tab to the first filter field and search with Enter: no mouse needed.
    page.get_by_label("Event name").focus()
    page.keyboard.type("ConsoleLogin")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*name=ConsoleLogin.*"))
    outline = page.evaluate("""() => { const a = document.querySelector('table a, .ranges a'); a.focus();
                                       return getComputedStyle(a).outlineStyle; }""")
    assert outline != "none", "focus is visible"
    page.set_viewport_size({"width": 380, "height": 800})
    page.goto(f"{airflow_server.url}{MOUNT}/events")
    expect(page.get_by_role("button", name="Search")).to_be_visible()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 400, f"the page fits a narrow window (scroll width {width})"
    shot(page, "07-events-narrow")
    page.set_viewport_size({"width": 1280, "height": 860})


def test_acknowledge_an_alert(page: Any, airflow_server: Server, web: Web) -> None:
    from playwright.sync_api import expect

    # An owner acknowledges alerts of her own account (another account's have no buttons for her).
    page.goto(f"{airflow_server.url}{MOUNT}/alerts?status=open&account={web.owned}")
    expect(page.get_by_role("heading", name="Alerts")).to_be_visible()
    shot(page, "08-alerts")
    row = page.locator("table tbody tr").first
    alert_link = row.locator("td").first.inner_text()  # "#12"
    row.get_by_role("button", name=re.compile(r"^Acknowledge alert")).click()
    page.wait_for_url(re.compile(rf".*/alerts\?status=open&account={web.owned}$"))
    page.get_by_label("Status").select_option("acknowledged")
    page.get_by_role("button", name="Filter").click()
    acked = page.locator("table tbody tr", has_text=alert_link)
    expect(acked.locator(".badge.st-acknowledged")).to_be_visible()
    expect(acked).to_contain_text("by olivia")
    acked.get_by_role("link", name=alert_link).click()
    expect(page.get_by_role("heading", name=re.compile(r"^Alert #"))).to_be_visible()
    shot(page, "09-alert-detail")


def test_create_a_rule_as_owner_and_fail_for_a_foreign_account(page: Any, airflow_server: Server, web: Web) -> None:
    from playwright.sync_api import expect

    page.goto(f"{airflow_server.url}{MOUNT}/rules")
    shot(page, "10-rules")
    page.get_by_role("link", name="New custom rule").click()
    page.get_by_label("Rule id").fill("olivia.browser-deletes")
    page.get_by_label("Title").fill("Deletes in my account")
    page.get_by_label("Severity").select_option("high")
    page.get_by_label("Condition").fill("event_name IS NOT NULL AND NOT is_error")
    expect(page.get_by_label("Accounts")).to_have_value(web.owned)  # prefilled with the owner's accounts
    page.get_by_role("button", name=re.compile("^Preview")).click()
    expect(page.locator("#preview-result")).to_contain_text("events matched")
    shot(page, "11-rule-preview")
    page.get_by_role("button", name="Save rule").click()
    expect(page.get_by_role("status").filter(has_text="saved")).to_contain_text("olivia.browser-deletes saved")
    expect(page.get_by_role("row", name=re.compile("olivia.browser-deletes"))).to_contain_text(web.owned)
    shot(page, "12-rule-saved")
    # The same for a foreign account: the rulebook refuses, the page says why.
    page.get_by_role("link", name="New custom rule").click()
    page.get_by_label("Rule id").fill("olivia.browser-foreign")
    page.get_by_label("Title").fill("Someone else's account")
    page.get_by_label("Condition").fill("event_name IS NOT NULL")
    page.get_by_label("Accounts").fill(web.foreign[0])
    page.get_by_role("button", name="Save rule").click()
    problem = page.get_by_role("alert")
    expect(problem).to_contain_text("Not saved")
    expect(problem).to_contain_text(f"not for ['{web.foreign[0]}']")
    shot(page, "13-rule-refused")
    page.goto(f"{airflow_server.url}{MOUNT}/rules")
    expect(page.get_by_role("row", name=re.compile("olivia.browser-foreign"))).to_have_count(0)


def test_mavs_page(page: Any, airflow_server: Server) -> None:
    from playwright.sync_api import expect

    page.goto(f"{airflow_server.url}{MOUNT}/mavs")
    expect(page.get_by_role("heading", name="web")).to_be_visible()
    expect(page.get_by_text("run `trailhouse mav validate web`")).to_be_visible()
    shot(page, "14-mavs")


def test_airflow_navigation_links_to_trailhouse(page: Any, airflow_server: Server) -> None:
    """The entry in Airflow's own navigation opens trailhouse inside Airflow's UI."""
    from playwright.sync_api import expect

    page.goto(f"{airflow_server.url}/")
    page.get_by_role("link", name="trailhouse").click()
    frame = page.frame_locator("iframe")
    expect(frame.get_by_role("heading", name="Events", exact=True)).to_be_visible()
    expect(frame.get_by_text("Signed in as")).to_contain_text("olivia")
    shot(page, "15-inside-airflow")
