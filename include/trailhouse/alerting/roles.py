"""Who may do what: security administrators and account owners, mapped from Airflow's users."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from trailhouse.db import appdb


class Forbidden(PermissionError):
    """The actor's role does not allow this; the message says what is allowed."""


@dataclass(frozen=True)
class Actor:
    username: str
    is_admin: bool
    accounts: frozenset[str]

    def can_see_account(self, account_id: str | None) -> bool:
        return self.is_admin or (account_id is not None and account_id in self.accounts)

    def account_filter(self) -> frozenset[str] | None:
        """None: every account (administrators); otherwise the accounts this actor owns."""
        return None if self.is_admin else self.accounts


def grant(eng: sa.Engine, username: str, *, admin: bool = False, accounts: list[str] | None = None,
          by: str = "cli") -> Actor:
    """Make `username` a security administrator, or the owner of `accounts` (added to theirs)."""
    accounts = sorted(set(accounts or []))
    bad = [a for a in accounts if not (len(a) == 12 and a.isdigit())]
    if bad:
        raise ValueError(f"account ids are 12 digits: {bad}")
    if not admin and not accounts:
        raise ValueError("grant --admin, or --owner with at least one account id")
    current = lookup(eng, username)
    owned = sorted(set(accounts) | (set(current.accounts) if current else set()))
    is_admin = admin or bool(current and current.is_admin)
    values = {"is_admin": is_admin, "accounts": ",".join(owned), "granted_by": by, "granted_at": appdb.now()}
    with eng.begin() as conn:
        if current is None:
            conn.execute(appdb.user_roles.insert().values(username=username, **values))
        else:
            conn.execute(appdb.user_roles.update().where(appdb.user_roles.c.username == username).values(**values))
    return Actor(username, is_admin, frozenset(owned))


def revoke(eng: sa.Engine, username: str) -> None:
    with eng.begin() as conn:
        conn.execute(appdb.user_roles.delete().where(appdb.user_roles.c.username == username))


def lookup(eng: sa.Engine, username: str) -> Actor | None:
    with eng.connect() as conn:
        row = conn.execute(sa.select(appdb.user_roles).where(appdb.user_roles.c.username == username)).first()
    if row is None:
        return None
    return Actor(row.username, bool(row.is_admin), frozenset(a for a in row.accounts.split(",") if a))


def actor(eng: sa.Engine, username: str) -> Actor:
    """The role of a user, or Forbidden when they have none (no role, no access)."""
    found = lookup(eng, username)
    if found is None:
        raise Forbidden(
            f"user {username!r} has no trailhouse role; a security administrator grants one with "
            f"`trailhouse users grant {username} --admin` or `--owner ACCOUNT...`"
        )
    return found


def all_roles(eng: sa.Engine) -> list[dict[str, Any]]:
    with eng.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(appdb.user_roles).order_by(appdb.user_roles.c.username)).mappings()]
