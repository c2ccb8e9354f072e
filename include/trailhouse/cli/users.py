"""`trailhouse users`: trailhouse roles of Airflow's users."""

from __future__ import annotations

import argparse
import os
from typing import Any

from trailhouse import output


def register(sub: Any) -> None:
    us = sub.add_parser("users", help="trailhouse roles of Airflow's users").add_subparsers(metavar="ACTION")
    g = us.add_parser("grant", help="make a user a security administrator or the owner of accounts")
    g.add_argument("username")
    who = g.add_mutually_exclusive_group(required=True)
    who.add_argument("--admin", action="store_true")
    who.add_argument("--owner", nargs="+", metavar="ACCOUNT")
    g.set_defaults(func=cmd_users_grant)
    r = us.add_parser("revoke", help="remove a user's role")
    r.add_argument("username")
    r.set_defaults(func=cmd_users_revoke)
    ls = us.add_parser("list", help="users and their roles")
    ls.set_defaults(func=cmd_users_list)


def cmd_users_grant(args: argparse.Namespace) -> int:
    from trailhouse.alerting import roles

    actor = roles.grant(args.dep.engine, args.username, admin=args.admin, accounts=args.owner or [], by=os.environ.get("USER", "cli"))
    what = "security administrator" if actor.is_admin else f"owner of {', '.join(sorted(actor.accounts))}"
    print(f"{actor.username}: {what}")
    return 0


def cmd_users_revoke(args: argparse.Namespace) -> int:
    from trailhouse.alerting import roles

    roles.revoke(args.dep.engine, args.username)
    print(f"{args.username}: no role")
    return 0


def cmd_users_list(args: argparse.Namespace) -> int:
    from trailhouse.alerting import roles

    rows = [(r["username"], "admin" if r["is_admin"] else "owner", r["accounts"] or "-", output.cell(r["granted_at"]))
            for r in roles.all_roles(args.dep.engine)]
    output.print_rows(["user", "role", "accounts", "granted_at"], rows)
    return 0
