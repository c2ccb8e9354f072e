"""What one request may cost the API server: the size of its body, and how many heavy
requests (summaries, exports, rule previews) one user runs at once.

The events queries themselves are bounded in `search.events_connection` (time budget,
DuckDB memory, queries at once); the limits' values are `settings.WebLimits`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from trailhouse import settings
from trailhouse.web import render

RETRY_AFTER_SECONDS = 5


def _too_large(limit: int) -> str:
    return (f"the request body is larger than {limit:,} bytes, the most this server accepts "
            "(TRAILHOUSE_WEB_MAX_BODY_BYTES): send less")


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, _too_large(limit))


class BodyLimit:
    """Refuse a request body over `max_body_bytes` with 413: at once when its Content-Length
    says so, otherwise as soon as the bytes received pass the limit (chunked uploads), so
    nothing bigger than the limit is ever held."""

    def __init__(self, app: ASGIApp, max_body_bytes: int | None = None) -> None:
        self.app = app
        self.limit = settings.load().web.max_body_bytes if max_body_bytes is None else max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await self._refuse(scope, receive, send)
            return
        received = 0

        async def bounded_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)  # the app's HTTPException handler answers 413
            return message

        await self.app(scope, bounded_receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        from fastapi import Request

        request = Request(scope, receive)
        response = render.error(request, 413, _too_large(self.limit), headers={"Connection": "close"})
        await response(scope, receive, send)


# --- heavy requests per user ------------------------------------------------------------------

_RUNNING: dict[str, int] = {}
_LOCK = threading.Lock()


@contextmanager
def heavy_slot(username: str, per_user: int) -> Iterator[None]:
    """One of the user's `per_user` concurrent heavy requests; 429 with Retry-After when all are taken."""
    with _LOCK:
        if _RUNNING.get(username, 0) >= per_user:
            raise HTTPException(429, f"you already run {per_user} summaries, exports or rule previews at once, "
                                     f"the most one user may (TRAILHOUSE_WEB_HEAVY_PER_USER): wait for them "
                                     f"to finish and try again", headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
        _RUNNING[username] = _RUNNING.get(username, 0) + 1
    try:
        yield
    finally:
        with _LOCK:
            _RUNNING[username] -= 1
            if not _RUNNING[username]:
                del _RUNNING[username]


def running(username: str) -> int:
    with _LOCK:
        return _RUNNING.get(username, 0)

