"""`trailhouse serve` and `trailhouse airflow`: Airflow on trailhouse's home."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    sv = sub.add_parser("serve", help="start Airflow with trailhouse's web UI at http://localhost:PORT/trailhouse/")
    sv.add_argument("--port", type=int, default=8080, help="the API server's port (default 8080)")
    sv.add_argument("--api-only", action="store_true",
                    help="only Airflow's API server (the UI, no scheduler: MAV DAGs do not run)")
    sv.set_defaults(func=cmd_serve)

    af = sub.add_parser("airflow", help="run an `airflow` command on trailhouse's Airflow home (e.g. standalone)")
    af.add_argument("args", nargs=argparse.REMAINDER)
    af.set_defaults(func=cmd_airflow)


def cmd_airflow(args: argparse.Namespace) -> int:
    from trailhouse import airflow_env

    airflow_env.configure()
    if args.args[:1] != ["version"]:
        airflow_env.ensure_db()
    bindir = str(Path(sys.executable).parent)
    # `airflow standalone` starts its parts as `airflow ...` subprocesses: they must be found.
    os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    os.execvp(os.path.join(bindir, "airflow"), ["airflow", *args.args])


def cmd_serve(args: argparse.Namespace) -> int:
    """Airflow on trailhouse's home with the plugin: `airflow standalone`, or `airflow api-server` alone."""
    from trailhouse import airflow_env

    home = airflow_env.configure()
    airflow_env.ensure_db()
    bindir = str(Path(sys.executable).parent)
    # `airflow standalone` starts its parts as `airflow ...` subprocesses: they must be found.
    os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    os.environ["AIRFLOW__API__PORT"] = str(args.port)
    passwords = os.environ.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE") or str(
        home / "simple_auth_manager_passwords.json.generated")
    print(f"trailhouse: the web UI will be at http://localhost:{args.port}/trailhouse/\n"
          f"  log in with an Airflow user (simple auth manager: `admin`, its password is printed once and kept in "
          f"{passwords});\n  give users a trailhouse role first: trailhouse users grant admin --admin",
          file=sys.stderr, flush=True)
    command = ["airflow", "api-server", "--port", str(args.port)] if args.api_only else ["airflow", "standalone"]
    os.execvp(os.path.join(bindir, "airflow"), command)
