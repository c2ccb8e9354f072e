"""Every request authenticated with Airflow's own users and tokens, then mapped to a trailhouse role.

Airflow's API server does not authenticate plugin apps, so `AuthMiddleware` wraps the
whole app: before any route, validation or body parsing runs, it resolves the caller with
Airflow's `airflow.api_fastapi.core_api.security.get_user` (a bearer JWT from
`POST /auth/token`, or the `_token` cookie Airflow's login page sets; signature, expiry,
audience and revocation checked by the auth manager's `get_user_from_token`), then looks the
user name up with `trailhouse.alerting.roles.actor`. No credential or a bad one: 401. A valid user
with no trailhouse role: 403 saying how to get one. Only the OpenAPI document and the
static CSS/JS (fixed files, no data) are public.

State-changing requests authenticated by the cookie must also carry a CSRF token derived
from that cookie (a form field or the `X-CSRF-Token` header); bearer-token calls need none,
since a browser never attaches them on its own.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import MutableMapping
from typing import Any

from anyio import to_thread
from fastapi import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from trailhouse.alerting.roles import Forbidden
from trailhouse.web import render
from trailhouse.web.context import CALLER_KEY, Caller, auth_manager, current_caller, deployment

log = logging.getLogger(__name__)

COOKIE_NAME = "_token"  # airflow.api_fastapi.auth.managers.base_auth_manager.COOKIE_NAME_JWT_TOKEN
PUBLIC_PATHS = frozenset({"/openapi.json"})
STATIC_PREFIX = "/static/"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
NOT_AUTHENTICATED = ("not authenticated: log in to Airflow, or send `Authorization: Bearer <token>` "
                     "with a token from Airflow's POST /auth/token")
BAD_TOKEN = "the Airflow token is invalid, expired or revoked: log in to Airflow again"


class AuthError(Exception):
    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


def csrf_for(token: str) -> str:
    # Only someone who can read the session cookie can compute this; a cross-site form cannot.
    return hmac.new(b"trailhouse-csrf", token.encode(), hashlib.sha256).hexdigest()


async def authenticate(request: Request) -> Caller:
    """The caller of this request, through Airflow's own token checks; AuthError(401/403) otherwise."""
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi import HTTPException
    from fastapi.security import HTTPAuthorizationCredentials

    from trailhouse.alerting import roles

    auth_manager()
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    bearer = None
    if scheme.lower() == "bearer" and value.strip():
        bearer = HTTPAuthorizationCredentials(scheme="Bearer", credentials=value.strip())
    token = bearer.credentials if bearer else request.cookies.get(COOKIE_NAME, "")
    if not token:
        raise AuthError(401, NOT_AUTHENTICATED)
    try:
        user = await get_user(request, None, bearer)
    except HTTPException as exc:
        # Airflow answers 403 for a malformed or revoked token; for this app any unusable
        # credential is "not authenticated" (401): the fix is the same, log in again.
        if exc.status_code in (401, 403):
            raise AuthError(401, BAD_TOKEN if exc.detail != "Not authenticated" else NOT_AUTHENTICATED) from None
        raise
    username = user.get_name()
    try:
        actor = await to_thread.run_sync(lambda: roles.actor(deployment(request).engine, username))
    except Forbidden as exc:
        raise AuthError(403, str(exc)) from None
    return Caller(username=username, actor=actor, via="bearer" if bearer else "cookie", csrf_token=csrf_for(token))


class AuthMiddleware:
    """Authenticate every HTTP request to the app before routing; only PUBLIC_PATHS and static files pass."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = render.route_path(scope)
        if path in PUBLIC_PATHS or path.startswith(STATIC_PREFIX):
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            scope[CALLER_KEY] = await authenticate(request)
        except AuthError as exc:
            headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
            response = render.error(request, exc.status_code, exc.message, headers=headers)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


class SecurityHeaders:
    """No framing by other sites, no sniffing, nothing loaded from anywhere but this server."""

    HEADERS = (
        (b"content-security-policy", b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                     b"connect-src 'self'; form-action 'self'; frame-ancestors 'self'; base-uri 'none'"),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"same-origin"),
    )

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = render.route_path(scope).startswith(STATIC_PREFIX)

        async def send_with_headers(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in self.HEADERS if k not in present]
                if not static and b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))  # pages hold event data
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def caller(request: Request) -> Caller:
    """FastAPI dependency: the caller AuthMiddleware authenticated (defence in depth: 401 if none)."""
    found = current_caller(request)
    if found is None:
        raise AuthError(401, NOT_AUTHENTICATED)
    return found


async def check_csrf(request: Request) -> None:
    """FastAPI dependency of every state-changing route: cookie sessions must prove the form is ours."""
    found = caller(request)
    if request.method in SAFE_METHODS or found.via == "bearer":
        return
    sent = request.headers.get("x-csrf-token", "")
    if not sent and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        value = form.get("csrf_token", "")
        sent = value if isinstance(value, str) else ""
    if not hmac.compare_digest(sent.encode(), found.csrf_token.encode()):
        raise AuthError(403, "the form is stale or did not come from this site (CSRF check failed): reload the page "
                             "and try again")
