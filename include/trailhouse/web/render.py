"""Templates, URL helpers and error responses shared by the pages, the API and the auth middleware."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.templating import Jinja2Templates

from trailhouse.common import event_link
from trailhouse.web import MOUNT_PATH
from trailhouse.web.context import auth_manager, current_caller

HERE = Path(__file__).resolve().parent
TEMPLATES = Jinja2Templates(directory=str(HERE / "templates"))
STATIC_DIR = HERE / "static"


def route_path(scope: Mapping[str, Any]) -> str:
    """The path inside this app, whether or not the server put the mount prefix into `path`."""
    path, root = scope.get("path", ""), scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root):]
    return path or "/"


def is_api(request: Request) -> bool:
    path = route_path(request.scope)
    return path == "/api" or path.startswith("/api/")


def root(request: Request) -> str:
    """This app's URL prefix (`/trailhouse` when Airflow mounts it, plus Airflow's own base path)."""
    return request.scope.get("root_path", "").rstrip("/")


def airflow_root(request: Request) -> str:
    return root(request).removesuffix(MOUNT_PATH)


def qs(params: dict[str, Any] | None = None, **more: Any) -> str:
    """A query string ('?a=b'), skipping empty values; '' when nothing is left."""
    merged = {**(params or {}), **more}
    clean = {k: v for k, v in merged.items() if v not in (None, "", False)}
    return "?" + urlencode(clean) if clean else ""


def fmt_time(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def fmt_seconds(value: float | None) -> str:
    if value is None:
        return ""
    value = int(value)
    if value < 120:
        return f"{value} s"
    if value < 7200:
        return f"{value // 60} min"
    if value < 172800:
        return f"{value / 3600:.1f} h"
    return f"{value / 86400:.1f} d"


def short_source(value: str | None) -> str:
    return (value or "").removesuffix(".amazonaws.com")


def event_url(root_path: str, row: dict[str, Any]) -> str:
    """The event page of a row (with its date, so the lookup reads one partition); any id opens."""
    return root_path + event_link(str(row["event_id"]), row.get("event_date"))


def first_upper(text: str) -> str:
    return text[:1].upper() + text[1:]


TEMPLATES.env.filters.update(time=fmt_time, seconds=fmt_seconds, short_source=short_source, first_upper=first_upper)
TEMPLATES.env.globals.update(qs=qs, event_url=event_url)


def page(request: Request, name: str, context: dict[str, Any], *, status_code: int = 200) -> Response:
    """Render a page; every page gets the caller, the URL prefixes and the CSRF token."""
    caller = current_caller(request)
    base = {
        "request": request, "root": root(request), "airflow_root": airflow_root(request) or "",
        "caller": caller, "csrf_token": caller.csrf_token if caller else "",
    }
    return TEMPLATES.TemplateResponse(request, name, {**base, **context}, status_code=status_code)


TITLES = {400: "Bad request", 401: "Log in to use trailhouse", 403: "Not allowed", 404: "Not found",
          405: "Method not allowed", 413: "Request too large", 422: "Bad request", 429: "Too many requests at once",
          503: "Busy"}


def error(request: Request, status_code: int, message: str, *, headers: dict[str, str] | None = None) -> Response:
    """JSON {"detail": ...} under /api, an HTML page elsewhere (401 pages link to Airflow's login)."""
    if is_api(request):
        return JSONResponse({"detail": message}, status_code=status_code, headers=headers)
    login_url = None
    if status_code == 401:
        login_url = login_link(request)
        message = "You are not logged in to Airflow, or your session has expired."
    context = {"request": request, "root": root(request), "airflow_root": airflow_root(request) or "",
               "caller": None, "title": TITLES.get(status_code, "Error"), "status_code": status_code,
               "message": message, "login_url": login_url}
    try:
        return TEMPLATES.TemplateResponse(request, "error.html", context, status_code=status_code, headers=headers)
    except Exception:  # never hide the real status behind a template problem
        return HTMLResponse(f"<h1>{status_code}</h1>", status_code=status_code, headers=headers)


def login_link(request: Request) -> str:
    """Airflow's login page, coming back to the requested page afterwards."""
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    try:
        login = auth_manager().get_url_login(next_url=here)
    except Exception:
        login = "/auth/login?" + urlencode({"next": here})
    return airflow_root(request) + login if login.startswith("/") else login
