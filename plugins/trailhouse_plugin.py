"""Airflow plugin: trailhouse's web UI (events report, alerts, rules, MAVs) mounted at /trailhouse.

Thin on purpose: every Airflow component loads plugins, but only the API server serves this
app, so the app (FastAPI routes, DuckDB, templates) is imported on its first request.
Airflow does not authenticate plugin apps; the app authenticates every request itself
(include/trailhouse/web/auth.py, docs/web.md).
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin


class LazyTrailhouseApp:
    """An ASGI app that builds `trailhouse.web.app.create_app()` when the first request arrives."""

    def __init__(self) -> None:
        self._app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:
            from trailhouse.web.app import create_app

            self._app = create_app()
        await self._app(scope, receive, send)

    def __repr__(self) -> str:
        return "trailhouse.web.app:create_app (built on first request)"


class TrailhousePlugin(AirflowPlugin):
    name = "trailhouse"
    fastapi_apps = [{"app": LazyTrailhouseApp(), "url_prefix": "/trailhouse", "name": "trailhouse"}]
    # A top-level entry in Airflow's navigation. With `url_route` Airflow's UI shows /trailhouse/
    # inside its own frame at /plugin/trailhouse (Airflow 3.3.2 renders a plain external link
    # as a button that does nothing); /trailhouse/ also works on its own.
    external_views = [{"name": "trailhouse", "href": "/trailhouse/", "destination": "nav", "nav_top_level": True,
                       "url_route": "trailhouse", "icon": "/trailhouse/static/icon.svg"}]
