"""The app's OpenAPI document drives schemathesis (in-process, ASGI) with an administrator's token: no 500s."""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from starlette.applications import Starlette
from starlette.routing import Mount
from webhelpers import MOUNT

from trailhouse.web.app import create_app

# The document is fixed (it does not depend on the deployment); the requests below run while
# the `web` fixture (through `auth`) points the app at the test warehouse.
schema = schemathesis.openapi.from_asgi(f"{MOUNT}/openapi.json", Starlette(routes=[Mount(MOUNT, app=create_app())]))


@schema.parametrize()
@settings(max_examples=6, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: Any, auth: Any) -> None:
    # Pages and JSON API alike: every operation, with values the schema allows and some it does not.
    response = case.call(headers=auth("ada"))
    case.validate_response(response, checks=[not_a_server_error])
