"""Section "web": the web API under concurrent users over a large warehouse.

The server is the trailhouse app exactly as Airflow's API server mounts it (a Starlette
Mount at /trailhouse over `trailhouse.web.app.create_app`), run by uvicorn in its own
process with Airflow's simple auth manager validating the JWTs; it is not the whole
`airflow api-server`, whose own baseline (its REST API and UI) comes on top. Each client is
one user (administrators and owners of a few accounts each) looping over a mix of
searches, event details, exports, summaries and alert lists for `seconds`. Reported:
requests/s, p50/p95 latency per kind, errors (any answer that is not 2xx, or no answer)
and the server process's peak RSS (VmHWM).

Standalone: python -m bench.web_load --warehouse PATH [--clients 20 --seconds 60]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
MOUNT = "/trailhouse"
SERVER = """
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount
from trailhouse.web.app import create_app
app = Starlette(routes=[Mount("/trailhouse", app=create_app())])
uvicorn.run(app, host="127.0.0.1", port={port}, log_level="warning", workers=1)
"""
# How often each kind of request is picked (exports and summaries are the heavy ones).
MIX = (("search", 38), ("event", 25), ("summary", 12), ("export", 8), ("alerts", 10), ("page2", 5), ("preview", 2))
PREVIEW_CONDITIONS = ("starts_with(event_name, 'Delete') AND NOT is_error", "error_code = 'AccessDenied'",
                      "event_source = 'iam.amazonaws.com' AND starts_with(event_name, 'Create')")


@dataclass
class Result:
    clients: int
    seconds: float
    requests: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    server_peak_rss: int = 0
    server_start_rss: int = 0

    def summary(self) -> dict[str, Any]:
        every = sorted(x for xs in self.latencies.values() for x in xs)
        return {
            "clients": self.clients, "seconds": self.seconds, "requests": self.requests,
            "requests_per_s": self.requests / self.seconds if self.seconds else 0.0, "errors": self.errors,
            "error_samples": self.error_samples[:10], "statuses": dict(self.statuses),
            "p50_s": pct(every, 50), "p95_s": pct(every, 95),
            "by_kind": {k: {"n": len(v), "p50_s": pct(sorted(v), 50), "p95_s": pct(sorted(v), 95)}
                        for k, v in sorted(self.latencies.items())},
            "server_peak_rss_mib": self.server_peak_rss / MIB, "server_start_rss_mib": self.server_start_rss / MIB,
        }


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return 0.0
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def vm_hwm(pid: int) -> int:
    """Peak RSS of a process (VmHWM), bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def vm_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def auth_env(home: Path) -> dict[str, str]:
    """Airflow's simple auth manager with one JWT secret, shared by the server and the token minting here."""
    return {
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__API_AUTH__JWT_SECRET": os.environ.get("AIRFLOW__API_AUTH__JWT_SECRET") or secrets.token_urlsafe(48),
    }


def mint_tokens(users: list[str], env: dict[str, str]) -> dict[str, str]:
    """A JWT per user, made the way POST /auth/token makes them (in this process, with the server's secret)."""
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        from airflow.api_fastapi.auth.managers.base_auth_manager import BaseAuthManager
        from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

        from trailhouse.web.context import auth_manager

        BaseAuthManager._get_token_validator.cache_clear()
        manager = auth_manager()
        return {u: manager.generate_jwt(SimpleAuthManagerUser(username=u, role="viewer"), expiration_time_in_seconds=7200)
                for u in users}
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def grant_users(db_url: str, accounts: list[str], clients: int) -> dict[str, list[str] | None]:
    """A quarter of the clients administrators, the others owners of 2 accounts each: {user: accounts or None}."""
    from trailhouse.alerting import roles
    from trailhouse.db import appdb

    eng = appdb.engine(db_url)
    users: dict[str, list[str] | None] = {}
    for i in range(clients):
        if i % 4 == 0:
            name, owned = f"bench-admin-{i}", None
            roles.grant(eng, name, admin=True, by="bench")
        else:
            owned = [accounts[(2 * i) % len(accounts)], accounts[(2 * i + 1) % len(accounts)]]
            name = f"bench-owner-{i}"
            roles.grant(eng, name, accounts=owned, by="bench")
        users[name] = owned
    eng.dispose()
    return users


def warehouse_facts(uri: str) -> tuple[list[str], date, list[str]]:
    """The accounts, the last day, and some event names of the warehouse."""
    import polars as pl

    from trailhouse.warehouse.table import Warehouse

    lf = Warehouse(uri).scan()
    last = lf.select(pl.col("event_date").max()).collect().item()
    day = lf.filter(pl.col("event_date") == last)
    accounts = sorted(day.select(pl.col("account_id").unique()).collect().get_column("account_id").drop_nulls().to_list())
    names = (day.group_by("event_name").agg(pl.len().alias("n")).sort("n", descending=True).head(20)
             .collect().get_column("event_name").drop_nulls().to_list())
    return accounts, last, names


def warehouse_events(uri: str) -> int:
    import polars as pl

    from trailhouse.warehouse.table import Warehouse

    return int(Warehouse(uri).scan().select(pl.len()).collect().item())


class Client(threading.Thread):
    def __init__(self, base: str, token: str, owned: list[str] | None, last: date, names: list[str],
                 deadline: float, result: Result, lock: threading.Lock, seed: int) -> None:
        super().__init__(daemon=True)
        self.base, self.owned, self.last, self.names = base, owned, last, names
        self.headers = {"Authorization": f"Bearer {token}"}
        self.deadline, self.result, self.lock = deadline, result, lock
        self.rng = random.Random(seed)
        self.seen: list[tuple[str, str]] = []  # (event id, date) of events searches returned

    def _range(self) -> dict[str, str]:
        end = datetime.combine(self.last, datetime.min.time(), tzinfo=UTC) + timedelta(days=1)
        hours = self.rng.choice((1, 6, 24, 24, 24 * 7))
        start = end - timedelta(hours=hours)
        return {"from": start.strftime("%Y-%m-%dT%H:%M:%S"), "to": end.strftime("%Y-%m-%dT%H:%M:%S")}

    def _filters(self) -> dict[str, str]:
        params = self._range()
        pick = self.rng.random()
        if pick < 0.3 and self.names:
            params["name"] = self.rng.choice(self.names)
        elif pick < 0.45:
            params["any_error"] = "true"
        elif pick < 0.55:
            params["q"] = self.rng.choice(("sg-", "bucket", "role", "instance"))
        if self.owned and self.rng.random() < 0.3:
            params["account"] = self.rng.choice(self.owned)
        return params

    def request(self, kind: str) -> tuple[str, dict[str, Any]]:
        if kind == "preview":  # a POST: the condition over the caller's last 24 hours
            return "/api/rules/preview", {"condition": self.rng.choice(PREVIEW_CONDITIONS),
                                          "accounts": list(self.owned or [])}
        if kind == "search":
            return "/api/events", {**self._filters(), "page_size": "50"}
        if kind == "page2":
            return "/api/events", {**self._filters(), "page": "3", "page_size": "50"}
        if kind == "summary":
            return "/api/events/summary", self._filters()
        if kind == "export":
            return "/api/events/export", {**self._filters(), "format": self.rng.choice(("csv", "json"))}
        if kind == "alerts":
            return "/api/alerts", {"page_size": "50"}
        if kind == "event" and self.seen:
            event_id, day = self.rng.choice(self.seen)
            return "/api/event", {"id": event_id, "date": day}
        return "/api/events", {**self._range(), "page_size": "50"}

    def run(self) -> None:
        import httpx

        kinds, weights = zip(*MIX, strict=True)
        with httpx.Client(base_url=self.base, headers=self.headers, timeout=120) as http:
            while time.monotonic() < self.deadline:
                kind = self.rng.choices(kinds, weights)[0]
                path, params = self.request(kind)
                t0 = time.perf_counter()
                problem = None
                try:
                    post = kind == "preview"
                    with http.stream("POST" if post else "GET", MOUNT + path, params=None if post else params,
                                     json=params if post else None) as r:
                        body = r.read()
                        status = r.status_code
                except Exception as exc:  # no answer at all: an error
                    status, body, problem = 0, b"", f"{kind}: {type(exc).__name__}: {exc}"
                elapsed = time.perf_counter() - t0
                if status and not 200 <= status < 300:
                    problem = f"{kind} {status}: {body[:200]!r}"
                if status == 200 and path == "/api/events":
                    rows = json.loads(body)["events"]
                    self.seen = (self.seen + [(r["event_id"], r["event_date"]) for r in rows[:5]])[-200:]
                with self.lock:
                    self.result.requests += 1
                    self.result.statuses[str(status)] += 1
                    self.result.latencies[kind].append(elapsed)
                    if problem:
                        self.result.errors += 1
                        self.result.error_samples.append(problem)


def run(warehouse: str, work: Path, *, clients: int = 20, seconds: float = 60.0,
        extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    """Start the server over `warehouse` (an app database of its own in `work`), drive it, stop it."""
    import httpx

    from trailhouse import airflow_env

    work.mkdir(parents=True, exist_ok=True)
    airflow_env.ensure_db()  # Airflow's token checks read its database (revoked tokens)
    db_url = f"sqlite:///{work / 'web-bench.db'}"
    accounts, last, names = warehouse_facts(warehouse)
    users = grant_users(db_url, accounts, clients)
    # Passwords written beforehand: the simple auth manager would otherwise generate and print them.
    (work / "passwords.json").write_text(json.dumps({u: secrets.token_urlsafe(16) for u in users}))
    env = {**os.environ, **auth_env(work), "TRAILHOUSE_WAREHOUSE": warehouse, "TRAILHOUSE_DB_URL": db_url,
           "TRAILHOUSE_MAV_DIR": str(work / "mavs"), **(extra_env or {})}
    env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] = ",".join(f"{u}:viewer" for u in users)
    tokens = mint_tokens(list(users), {k: env[k] for k in auth_env(work)} | {
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"]})
    port = free_port()
    log = (work / "web-server.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-c", SERVER.format(port=port)], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    any_user = next(iter(tokens.values()))
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the web server exited: {(work / 'web-server.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{base}{MOUNT}/api/me", headers={"Authorization": f"Bearer {any_user}"},
                             timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the web server did not answer within 120 s")
            time.sleep(0.3)
        result = Result(clients=clients, seconds=seconds)
        result.server_start_rss = vm_rss(proc.pid)
        lock = threading.Lock()
        end = time.monotonic() + seconds
        threads = [Client(base, tokens[u], owned, last, names, end, result, lock, seed=i)
                   for i, (u, owned) in enumerate(users.items())]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        result.seconds = time.monotonic() - t0
        result.server_peak_rss = vm_hwm(proc.pid)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()
    out = result.summary()
    out["warehouse_events"] = warehouse_events(warehouse)
    out["admins"] = sum(1 for v in users.values() if v is None)
    out["owners"] = sum(1 for v in users.values() if v is not None)
    return out


def report(res: dict[str, Any], sheet: Any) -> None:
    s = "web"
    events = res.get("warehouse_events")
    sheet.add(s, "clients x seconds", f"{res['clients']} x {res['seconds']:.0f}", "",
              note=f"{res['admins']} administrators, {res['owners']} owners (2 accounts each), one user per client; "
                   f"warehouse {events:,} events" if events else "")
    sheet.add(s, "requests/s", res["requests_per_s"], "req/s", note=f"{res['requests']:,} requests")
    sheet.add(s, "latency p50 (all requests)", res["p50_s"], "s")
    sheet.add(s, "latency p95 (all requests)", res["p95_s"], "s")
    for kind, k in res["by_kind"].items():
        sheet.add(s, f"{kind}: p50 / p95", f"{k['p50_s']:.3f} / {k['p95_s']:.3f}", "s", note=f"{k['n']:,} requests")
    sheet.add(s, "errors", res["errors"], "", note="; ".join(res["error_samples"][:3]))
    sheet.add(s, "server peak RSS", res["server_peak_rss_mib"], "MiB",
              note=f"VmHWM of the uvicorn process serving the app; {res['server_start_rss_mib']:.0f} MiB after start")
    sheet.details["web"] = res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.web_load", description=__doc__)
    p.add_argument("--warehouse", required=True)
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--work", type=Path, default=None)
    args = p.parse_args(argv)
    import tempfile

    work = args.work or Path(tempfile.mkdtemp(prefix="trailhouse-web-bench-"))
    res = run(args.warehouse, work, clients=args.clients, seconds=args.seconds)
    print(json.dumps(res, indent=2, default=str))
    return 0 if res["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
