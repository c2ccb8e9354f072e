"""`make bench`'s web section (bench/web_load.py) in miniature: its server starts over a warehouse,
its clients (administrators and owners) get answers to every kind of request, and it reports them."""

from __future__ import annotations

import sys
from pathlib import Path

from webhelpers import Web

from trailhouse import settings

sys.path.insert(0, str(settings.PROJECT_ROOT))  # bench/ is run from the project root (`python -m bench`)

from bench import web_load  # noqa: E402
from bench.common import Sheet  # noqa: E402


def test_the_web_load_section_drives_every_kind_of_request_without_errors(web: Web, tmp_path: Path) -> None:
    res = web_load.run(settings.load().warehouse_uri, tmp_path, clients=4, seconds=4)
    assert res["errors"] == 0, res["error_samples"]
    assert res["admins"] == 1 and res["owners"] == 3
    assert res["requests"] > 0 and res["server_peak_rss_mib"] > 0
    assert set(res["by_kind"]) >= {"search", "summary"}
    sheet = Sheet()
    web_load.report(res, sheet)
    assert {m.metric for m in sheet.metrics} >= {"requests/s", "errors", "server peak RSS", "latency p95 (all requests)"}
