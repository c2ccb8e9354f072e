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
    try:
        return int(args.func(args) or 0)
    except Exception as exc:
        if not _user_error(exc):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2


# Errors that name the problem and its fix, shown as one line. By module and name: a command
# does not pay for importing modules it never used (an error of one it never imported cannot
# be raised), which would cost `trailhouse sql` a second. config.ConfigError and
# rules.UnsafeCondition are ValueErrors.
_USER_ERRORS = (
    ("trailhouse.ingest.discover", "LayoutError"),
    ("trailhouse.ingest.source", "SourceError"),
    ("trailhouse.airflow_env", "MissingConnection"),
    ("trailhouse.alerting.roles", "Forbidden"),
    ("trailhouse.ingest.access", "AccessCheckError"),
    ("trailhouse.ingest.access", "AccessDeniedError"),
    ("trailhouse.cli.airflow", "ServeError"),
)


def _user_error(exc: Exception) -> bool:
    """Whether `exc` is an error for the user (bad input, a missing permission), not a bug."""
    if isinstance(exc, LookupError | ValueError):
        return True
    classes = (getattr(sys.modules[module], name) for module, name in _USER_ERRORS if module in sys.modules)
    return isinstance(exc, tuple(classes))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="trailhouse", description=(__doc__ or "").splitlines()[0])
    sub = p.add_subparsers(metavar="COMMAND")
    for group in (mav, runs, sql, dev, rules, alerts, users, airflow):
        group.register(sub)
    return p


if __name__ == "__main__":
    sys.exit(main())
