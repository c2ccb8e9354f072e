"""The FastAPI app Airflow mounts at /trailhouse: pages, JSON API under /api, static CSS/JS, OpenAPI."""

from __future__ import annotations

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.security import APIKeyCookie, HTTPBearer
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from trailhouse.web import api, pages, render
from trailhouse.web.auth import COOKIE_NAME, AuthError, AuthMiddleware, SecurityHeaders
from trailhouse.web.limits import RETRY_AFTER_SECONDS, BodyLimit
from trailhouse.web.search import BadFilter, Busy

DESCRIPTION = """
The CloudTrail events report, alerts, rules and MAV status of trailhouse.

**Every route authenticates** (Airflow does not authenticate plugin apps): send Airflow's
JWT as `Authorization: Bearer <token>` (from Airflow's `POST /auth/token`) or use the
`_token` cookie of Airflow's login page. The user must have a trailhouse role
(`trailhouse users grant USER --admin | --owner ACCOUNT...`). Owners see the events of
their own accounts only; every role sees every alert. State-changing calls made with the
cookie need the `X-CSRF-Token` header of the page.
"""

# Only for the OpenAPI document: AuthMiddleware does the checking, before routing.
_bearer_doc = HTTPBearer(auto_error=False, description="Airflow JWT from POST /auth/token")
_cookie_doc = APIKeyCookie(name=COOKIE_NAME, auto_error=False, description="Airflow's login cookie")
SECURITY_DOC = [Depends(_bearer_doc), Depends(_cookie_doc)]


def _message(detail: object) -> str:
    return detail if isinstance(detail, str) else "request failed"


def _validation_message(exc: RequestValidationError) -> str:
    problems = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "body", "path", "form"))
        problems.append(f"{where or 'request'}: {err.get('msg', 'invalid')}")
    return "; ".join(problems) or "invalid request"


def create_app() -> FastAPI:
    app = FastAPI(
        title="trailhouse", version="1", description=DESCRIPTION,
        openapi_url="/openapi.json", docs_url=None, redoc_url=None,  # Swagger/ReDoc would load a CDN
    )
    app.include_router(pages.router, dependencies=SECURITY_DOC)
    app.include_router(api.router, prefix="/api", dependencies=SECURITY_DOC)
    app.mount("/static", StaticFiles(directory=str(render.STATIC_DIR)), name="static")

    @app.exception_handler(AuthError)
    async def _auth_error(request: Request, exc: AuthError) -> Response:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        return render.error(request, exc.status_code, exc.message, headers=headers)

    @app.exception_handler(BadFilter)
    async def _bad_filter(request: Request, exc: BadFilter) -> Response:
        return render.error(request, 400, str(exc))

    @app.exception_handler(Busy)
    async def _busy(request: Request, exc: Busy) -> Response:
        return render.error(request, 503, str(exc), headers={"Retry-After": str(RETRY_AFTER_SECONDS)})

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return render.error(request, exc.status_code, _message(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        return render.error(request, 422 if render.is_api(request) else 400, _validation_message(exc))

    # Outermost last: security headers on every answer, including the 401/403 of AuthMiddleware
    # and the 413 of BodyLimit, which refuses an oversized body before anything reads it.
    app.add_middleware(AuthMiddleware)
    app.add_middleware(BodyLimit)
    app.add_middleware(SecurityHeaders)
    return app
