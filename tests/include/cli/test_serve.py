"""`trailhouse serve`: loopback by default, refused when the port is taken, ready only once the API
server answers, every Airflow process stopped with it, and nothing it writes readable by others."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from trailhouse.dev.servers import free_port

TRAILHOUSE = str(Path(sys.executable).parent / "trailhouse")


def _env(home: Path) -> dict[str, str]:
    """A fresh trailhouse home with its own Airflow home inside (no setting of the test session's)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "TRAILHOUSE_"))}
    return {**env, "TRAILHOUSE_HOME": str(home)}


def test_a_taken_port_is_refused_by_name(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        done = subprocess.run([TRAILHOUSE, "serve", "--port", str(port)], env=_env(tmp_path / "home"),
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr and "--port" in done.stderr
    assert "trailhouse: ready" not in done.stderr


def _group_members(pgid: int) -> list[psutil.Process]:
    """The live processes of process group `pgid` (zombies left to be reaped are not running)."""
    out = []
    for p in psutil.process_iter():
        try:
            if os.getpgid(p.pid) == pgid and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except (ProcessLookupError, psutil.Error):
            continue
    return out


def _described(members: list[psutil.Process]) -> tuple[str, set[tuple[str, int]]]:
    """The command lines of `members`, and the TCP addresses they listen on."""
    names, listening = [], set()
    for p in members:
        try:
            names.append(" ".join(p.cmdline()))
            listening |= {(c.laddr.ip, c.laddr.port) for c in p.net_connections("tcp") if c.status == psutil.CONN_LISTEN}
        except psutil.Error:  # ended meanwhile (e.g. a LocalExecutor worker)
            continue
    return " ".join(names), listening


def test_serve_listens_on_loopback_and_stops_every_airflow_process(tmp_path: Path) -> None:
    home, port = tmp_path / "home", free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen([TRAILHOUSE, "serve", "--port", str(port)], env=_env(home), stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while "trailhouse: ready" not in log.read_text():
            assert proc.poll() is None, log.read_text()[-3000:]
            if time.monotonic() > deadline:
                pytest.fail(f"no ready line within 180 s:\n{log.read_text()[-3000:]}")
            time.sleep(1)
        children = psutil.Process(proc.pid).children()
        assert len(children) == 1
        pgid = os.getpgid(children[0].pid)
        names, listening = _described(_group_members(pgid))
        for part in ("standalone", "scheduler", "api_server", "dag-processor", "triggerer"):
            assert part in names, names
        assert ("127.0.0.1", port) in listening and ("0.0.0.0", port) not in listening
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert _group_members(pgid) == [], "Airflow processes outlived trailhouse serve"
    finally:
        if proc.poll() is None:
            proc.kill()
    # The Airflow home it created: its database, Fernet key and generated passwords are the user's only.
    made = [home, *home.rglob("*")]
    assert any(p.name.startswith("simple_auth_manager_passwords") for p in made)
    shared = [str(p) for p in made if not p.is_symlink() and stat.S_IMODE(p.stat().st_mode) & 0o077]
    assert shared == []
