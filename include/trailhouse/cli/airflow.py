"""`trailhouse serve` and `trailhouse airflow`: Airflow on trailhouse's home."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    sv = sub.add_parser("serve", help="start Airflow with trailhouse's web UI at http://HOST:PORT/trailhouse/")
    sv.add_argument("--host", default="127.0.0.1",
                    help="the address the API server listens on (default 127.0.0.1: this machine only; "
                         "0.0.0.0 for every interface, behind a production auth manager: docs/web.md)")
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
    """Airflow on trailhouse's home with the plugin (`airflow standalone`, or `airflow api-server`
    alone), supervised: refused when the port is taken, "ready" only once the API server answers,
    and every Airflow process it started stopped with it."""
    from trailhouse import airflow_env

    port_taken = _port_in_use(args.host, args.port)
    if port_taken:
        raise ServeError(f"cannot listen on {args.host}:{args.port}: {port_taken}; stop whatever holds the port "
                         f"or pick another with --port")
    home = airflow_env.configure()
    airflow_env.ensure_db()
    bindir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        # `airflow standalone` starts its parts as `airflow ...` subprocesses: they must be found.
        "PATH": bindir + os.pathsep + os.environ.get("PATH", ""),
        "AIRFLOW__API__HOST": args.host,
        "AIRFLOW__API__PORT": str(args.port),
    }
    passwords = os.environ.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE") or str(
        home / "simple_auth_manager_passwords.json.generated")
    url = f"http://{'localhost' if args.host in ('127.0.0.1', 'localhost') else args.host}:{args.port}/trailhouse/"
    print(f"trailhouse: starting Airflow; the web UI will be at {url}\n"
          f"  log in with an Airflow user (simple auth manager: `admin`, its password is printed once and kept in "
          f"{passwords});\n  give users a trailhouse role first: trailhouse users grant admin --admin",
          file=sys.stderr, flush=True)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"trailhouse: WARNING: listening on {args.host}: every machine that reaches it reaches the login page; "
              "the simple auth manager is for development, see docs/web.md for a production one",
              file=sys.stderr, flush=True)
    command = [os.path.join(bindir, "airflow"), *(["api-server", "--host", args.host, "--port", str(args.port)]
                                                  if args.api_only else ["standalone"])]
    return _supervise(command, env, args.host, args.port, url)


class ServeError(RuntimeError):
    """`trailhouse serve` cannot start; the message says why and what to do."""


def _port_in_use(host: str, port: int) -> str:
    """Why `host:port` cannot be listened on now ("" when it can)."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        # as the API server binds (uvicorn sets SO_REUSEADDR): a port in TIME_WAIT is free
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return ""


def _answers(host: str, port: int) -> bool:
    """Whether Airflow's API server answers its health check on host:port."""
    import urllib.request

    target = "127.0.0.1" if host in ("0.0.0.0", "") else "::1" if host == "::" else host
    netloc = f"[{target}]" if ":" in target else target
    try:
        with urllib.request.urlopen(f"http://{netloc}:{port}/api/v2/monitor/health", timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


# Seconds Airflow's processes get to stop after SIGTERM before the rest of the group is killed.
STOP_GRACE = 20.0


def _supervise(command: list[str], env: dict[str, str], host: str, port: int, url: str) -> int:
    """Run `command` in its own process group until it exits or this process is told to stop;
    then stop the whole group (scheduler, dag-processor, triggerer and API server with it)."""
    import signal
    import subprocess
    import time

    proc = subprocess.Popen(command, env=env, start_new_session=True)
    stop: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        stop.append(signum)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    ready = False
    try:
        while proc.poll() is None and not stop:
            if not ready and _answers(host, port):
                ready = True
                print(f"trailhouse: ready: {url}", file=sys.stderr, flush=True)
            time.sleep(0.5)
        if proc.returncode is not None and not stop:
            print(f"trailhouse: Airflow exited ({proc.returncode}); stopping what it left running",
                  file=sys.stderr, flush=True)
    finally:
        _stop_group(proc, STOP_GRACE)
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 0 if stop else (proc.returncode or 1)


def _stop_group(proc: Any, grace: float) -> None:
    """SIGTERM to the whole group (each Airflow component shuts down on it), then SIGKILL."""
    import signal
    import time

    pgid = proc.pid
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            proc.poll()  # reap the leader: a zombie would still count as a member of the group
            if not _group_alive(pgid):
                break
            time.sleep(0.2)
        if not _group_alive(pgid):
            break
    proc.wait()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
