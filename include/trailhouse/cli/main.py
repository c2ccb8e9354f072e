"""The `trailhouse` command: MAVs, runs, SQL, rules, alerts, synthetic data and the demo.

One module per command group registers its sub-commands (`register`)."""

from __future__ import annotations

import argparse
import os
import sys

from trailhouse.cli import airflow, alerts, dev, mav, rules, runs, sql, users


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    if args.func not in (airflow.cmd_airflow, airflow.cmd_serve):
        # Airflow's own warnings (deprecations, an empty mapped task) are noise on the
        # terminal of a one-off run; task errors still show. `trailhouse airflow` keeps them.
        os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "ERROR")
    from trailhouse import airflow_env
    from trailhouse.deployment import Deployment

    # The settings are read once, here; every command takes them (and the app database and
    # warehouse they name) from args.dep.
    args.dep = Deployment()
    # Before anything imports Airflow: every command reads the same Airflow home, database
    # and Fernet key (a connection stored by `mav add` must be found by `mav validate`).
    airflow_env.configure(args.dep.settings)
    from trailhouse.airflow_env import MissingConnection
    from trailhouse.alerting.roles import Forbidden
    from trailhouse.alerting.rules import UnsafeCondition
    from trailhouse.config import ConfigError
    from trailhouse.ingest.access import AccessCheckError, AccessDeniedError
    from trailhouse.ingest.discover import LayoutError
    from trailhouse.ingest.source import SourceError

    try:
        return int(args.func(args) or 0)
    except (ConfigError, LayoutError, SourceError, MissingConnection, Forbidden, UnsafeCondition,
            AccessCheckError, AccessDeniedError, LookupError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="trailhouse", description=(__doc__ or "").splitlines()[0])
    sub = p.add_subparsers(metavar="COMMAND")
    for group in (mav, runs, sql, dev, rules, alerts, users, airflow):
        group.register(sub)
    return p


if __name__ == "__main__":
    sys.exit(main())
