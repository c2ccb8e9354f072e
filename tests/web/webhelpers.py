"""Shared by the tests/web modules and their conftest: users, the test deployment, the running server."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx

MOUNT = "/trailhouse"
PASSWORDS = {"ada": "ada-pass-1", "olivia": "olivia-pass-2", "nobody": "nobody-pass-3"}
# Event ids of the owned account's extra file (conftest._add_odd_ids): each must open in the UI.
ODD_IDS = ("odd/id/with/slashes", "odd\r\nid-with-crlf", "odd id?#%&+;=.. ../", "summary", "export")
AIRFLOW_ROLES = {"ada": "admin", "olivia": "viewer", "nobody": "viewer"}


@dataclass
class Web:
    home: Path
    accounts: list[str]  # the warehouse's accounts; olivia owns accounts[0]
    start: datetime  # a range covering every event
    end: datetime
    passwords_file: Path

    @property
    def owned(self) -> str:
        return self.accounts[0]

    @property
    def foreign(self) -> list[str]:
        return self.accounts[1:]

    def range_params(self) -> dict[str, str]:
        fmt = "%Y-%m-%dT%H:%M:%S"
        return {"from": self.start.strftime(fmt), "to": self.end.strftime(fmt)}


@dataclass
class Server:
    url: str
    log: Path

    def login_token(self, username: str) -> str:
        """A token through Airflow's own login endpoint (the simple auth manager checks the password)."""
        r = httpx.post(f"{self.url}/auth/token", json={"username": username, "password": PASSWORDS[username]})
        assert r.status_code == 201, r.text
        return r.json()["access_token"]
