"""The request context every layer of the web app reads: the deployment, who is calling, and
Airflow's auth manager.

Kept apart from auth.py (which authenticates) so that render.py can read the caller
without importing the middleware that itself renders error pages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request

from trailhouse.alerting.roles import Actor
from trailhouse.deployment import Deployment

CALLER_KEY = "trailhouse.caller"


@dataclass(frozen=True)
class Caller:
    """The authenticated user and their trailhouse role."""

    username: str
    actor: Actor
    via: str  # "bearer" or "cookie"
    csrf_token: str

    @property
    def is_admin(self) -> bool:
        return self.actor.is_admin

    @property
    def scope(self) -> frozenset[str] | None:
        """None: every account (security administrators); otherwise the accounts owned."""
        return self.actor.account_filter()

    @property
    def role_label(self) -> str:
        if self.actor.is_admin:
            return "security administrator"
        return f"owner of {', '.join(sorted(self.actor.accounts))}"


def auth_manager() -> Any:
    """Airflow's auth manager: the API server's instance, or one created here outside it (tests, uvicorn)."""
    from airflow.api_fastapi.app import get_auth_manager, init_auth_manager

    try:
        return get_auth_manager()
    except RuntimeError:
        return init_auth_manager()


def current_caller(request: Request) -> Caller | None:
    return request.scope.get(CALLER_KEY)


def deployment(request: Request) -> Deployment:
    """The web app's deployment: its settings read once, at the app's first request, and kept."""
    state = request.app.state
    dep = getattr(state, "deployment", None)
    if dep is None:
        from trailhouse.web import search

        dep = state.deployment = Deployment()
        search.configure(dep.settings.web)  # the events queries' limits, from the same settings
    return dep
