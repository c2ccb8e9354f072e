"""Facts and small helpers that more than one part of trailhouse needs, each written once.

Severities, the status words stored in the app database, access-key redaction, the S3
error codes that mean "denied", account ids, the principal precedence and chunking.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any, Literal, TypeVar

# --- severities, lowest first ------------------------------------------------------------
SEVERITIES = ("info", "low", "medium", "high", "critical")
Severity = Literal["info", "low", "medium", "high", "critical"]
SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}

# --- status words in the app database ------------------------------------------------------
# ledger.status of one S3 object
LOADED, QUARANTINED, RECORDED = "loaded", "quarantined", "recorded"
# alerts.status, in the order an alert moves through them
ALERT_STATUSES = ("open", "acknowledged", "resolved")
# alerts.status
OPEN, ACKNOWLEDGED, RESOLVED = "open", "acknowledged", "resolved"
ALERT_STATUSES = (OPEN, ACKNOWLEDGED, RESOLVED)
# runs.status
RUNNING, SUCCEEDED, FAILED = "running", "succeeded", "failed"

# --- secrets -------------------------------------------------------------------------------
ACCESS_KEY_RE = re.compile(r"\b(AKIA|ASIA)[A-Z0-9]{12,}\b")


def redact_access_keys(text: str) -> str:
    """Replace every access key id in `text` by its prefix: 'AKIA…(redacted)'."""
    return ACCESS_KEY_RE.sub(lambda m: m.group(1) + "…(redacted)", text)


# --- S3 --------------------------------------------------------------------------------------
# Error codes by which S3 refuses a request to this caller (as opposed to a missing object).
S3_DENIED_CODES = frozenset({"AccessDenied", "AllAccessDisabled", "403", "Forbidden"})

# --- accounts and principals -----------------------------------------------------------------
ACCOUNT_ID_RE = re.compile(r"^\d{12}$")


def is_account_id(text: str) -> bool:
    return bool(ACCOUNT_ID_RE.match(text))


# Who acted, most specific first: the column `principal` of rules, searches and pages.
PRINCIPAL_PRECEDENCE = ("principal_arn", "session_issuer_arn", "user_name", "principal_id", "invoked_by")
PRINCIPAL_SQL = f"coalesce({', '.join(PRINCIPAL_PRECEDENCE)})"


def principal_of(row: dict[str, Any]) -> Any:
    """The principal of one event row, by PRINCIPAL_PRECEDENCE."""
    return next((row.get(c) for c in PRINCIPAL_PRECEDENCE if row.get(c)), None)


# --- chunking --------------------------------------------------------------------------------
T = TypeVar("T")


def chunks(items: Sequence[T], size: int = 500) -> Iterator[Sequence[T]]:
    """Consecutive slices of at most `size` items (SQL IN lists stay below bind-parameter limits)."""
    for i in range(0, len(items), size):
        yield items[i:i + size]


def sql_literal(value: str) -> str:
    """`value` as a SQL string literal (quotes doubled), for text built into DuckDB queries."""
    return "'" + value.replace("'", "''") + "'"


# --- links to the web UI -----------------------------------------------------------------------
# An event id is whatever the delivery file says. Only these travel as a path segment of
# /events/<id>: a slash, CR/LF (Starlette's mount does not match them), "." segments, a
# trailing slash (redirected) or a route's own name (`summary`, `export`) would not reach
# the event; every other id goes in the query string of /event?id=...
_PATH_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]{0,255}")
_EVENT_ROUTES = frozenset({"summary", "export"})


def event_link(event_id: str, day: Any = None) -> str:
    """The event page's path under the web app's root (`/trailhouse`), with its date if known
    (the lookup then reads one partition)."""
    from urllib.parse import quote, urlencode

    date = {"date": day.isoformat()} if day is not None and hasattr(day, "isoformat") else {}
    if _PATH_SAFE_ID.fullmatch(event_id) and event_id not in _EVENT_ROUTES:
        return f"/events/{quote(event_id, safe='')}" + (f"?{urlencode(date)}" if date else "")
    return "/event?" + urlencode({"id": event_id, **date}, quote_via=quote)
