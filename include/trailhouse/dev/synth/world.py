"""The synthetic organisation: what to generate (`SynthSpec`), each account's fixed world
(users, roles, network, keys) and the identities that act in it. Everything is a pure function
of the spec's seed."""

from __future__ import annotations

import datetime
import functools
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

DEFAULT_BUCKET = "trailhouse-demo"
DEFAULT_TRAIL = "org-trail"

_UTC = datetime.UTC
_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_UPPER_NUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def _today_utc() -> datetime.date:
    return datetime.datetime.now(_UTC).date()


@dataclass(frozen=True)
class SynthSpec:
    """What to generate. Day D of account i depends only on (seed, i, D) and the sizes below."""

    seed: int = 7
    accounts: int = 6
    regions: tuple[str, ...] = ("us-east-1", "eu-west-1", "ap-southeast-2")
    days: int = 3  # delivery days ending at `end` (inclusive)
    end: datetime.date = field(default_factory=_today_utc)  # last day, UTC
    events_per_file: int = 40  # mean; each file has between 1/2 and 3/2 of it
    files_per_region_day: int = 8
    prefix: str = ""
    org_id: str = "o-a1b2c3d4e5"
    digests: bool = True
    insights: bool = True
    duplicates: int = 3  # events delivered twice, in a re-delivery file dated the day after `end`
    bucket: str = DEFAULT_BUCKET  # named inside digests
    trail_name: str = DEFAULT_TRAIL  # part of digest file names

    def day_list(self) -> list[datetime.date]:
        return [self.end - datetime.timedelta(days=n) for n in range(self.days - 1, -1, -1)]


# --------------------------------------------------------------------------- helpers


def _iso(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


def _token(rng: random.Random, n: int, alphabet: str = _ALNUM) -> str:
    return "".join(rng.choices(alphabet, k=n))


def _hexs(rng: random.Random, n: int) -> str:
    return f"{rng.getrandbits(4 * n):0{n}x}"


def _expiration(ts: int) -> str:
    # STS renders credential expiry like "Mar 5, 2024, 3:20:30 PM" in CloudTrail.
    t = time.gmtime(ts)
    hour = t.tm_hour % 12 or 12
    return f"{time.strftime('%b', t)} {t.tm_mday}, {t.tm_year}, {hour}:{t.tm_min:02d}:{t.tm_sec:02d} {'AM' if t.tm_hour < 12 else 'PM'}"


def _root_path(spec: SynthSpec, index: int, account: str) -> str:
    return _root(spec.prefix, spec.org_id, index, account)


def _root(prefix: str, org_id: str, index: int, account: str) -> str:
    # About 2/3 of the accounts deliver through the organisation trail, the rest through
    # their own trails into the same bucket: both layouts must be handled by readers.
    if _in_org(index):
        return f"{prefix}AWSLogs/{org_id}/{account}/"
    return f"{prefix}AWSLogs/{account}/"


def _in_org(index: int) -> bool:
    return index % 3 != 2


@functools.lru_cache(maxsize=256)
def _account_id(seed: int, index: int) -> str:
    rng = random.Random(f"{seed}:account-id:{index}")
    digits = "".join(rng.choices("0123456789", k=12))
    # Leading zeros are where string-vs-int account ids go wrong, so some ids have them.
    if index % 4 == 1:
        digits = "0" + digits[1:]
    elif digits[0] == "0":
        digits = "1" + digits[1:]
    return digits


def account_ids(spec: SynthSpec) -> list[str]:
    """The account ids of the spec, in account-index order (unique)."""
    seen: set[str] = set()
    out: list[str] = []
    for i in range(spec.accounts):
        acct = _account_id(spec.seed, i)
        salt = 0
        while acct in seen:  # collisions are ~impossible, but ids must stay unique
            salt += 1
            acct = acct[:-4] + f"{(int(acct[-4:]) + salt) % 10000:04d}"
        seen.add(acct)
        out.append(acct)
    return out


# --------------------------------------------------------------------------- per-account world


@dataclass
class _Account:
    index: int
    id: str
    root: str
    users: list[dict[str, Any]]
    roles: Sequence[tuple[str, str, str, tuple[str, ...]]]  # name, id, arn, session names
    sso_roles: Sequence[tuple[str, str, str, tuple[str, ...]]]
    ips: list[str]
    vpcs: list[str]
    subnets: list[str]
    sgs: list[str]
    instances: list[str]
    buckets: list[str]
    keys: list[str]
    functions: list[str]
    amis: list[str]
    detector: str
    role_arn_targets: list[str]


_USER_NAMES = ("alice", "bob.smith", "deploy-bot", "ci-runner", "legacy-admin", "backup-svc")
_ROLE_SPECS = (
    ("AppServerRole", ("i-0a1b2c3d4e5f60718", "i-0f9e8d7c6b5a49382", "i-03c4d5e6f7a8b9c0d")),
    ("GitHubActionsDeploy", ("GitHubActions",)),
    ("TerraformExecution", ("terraform-run-4821", "terraform-run-4822")),
    ("OrganizationAccountAccessRole", ("admin", "breakglass")),
    ("DatadogIntegrationRole", ("datadog-aws-integration",)),
    ("lambda-etl-role", ("etl-nightly", "etl-hourly")),
)
_SSO_SPECS = (
    ("AdministratorAccess", ("jane.doe@example.com", "ops@example.com")),
    ("ReadOnlyAccess", ("auditor@example.com", "jane.doe@example.com", "müller.jürgen@example.com")),
    ("PowerUserAccess", ("dev.team@example.com",)),
)


@functools.lru_cache(maxsize=256)
def _account(spec_key: tuple[int, str, str], index: int, account: str) -> _Account:
    seed, prefix, org_id = spec_key
    rng = random.Random(f"{seed}:world:{index}")
    root = _root(prefix, org_id, index, account)
    users = []
    for name in _USER_NAMES:
        users.append(
            {
                "type": "IAMUser",
                "principalId": "AIDA" + _token(rng, 17, _UPPER_NUM),
                "arn": f"arn:aws:iam::{account}:user/{name}",
                "accountId": account,
                "accessKeyId": "AKIA" + _token(rng, 16, _UPPER_NUM),
                "userName": name,
            }
        )
    roles = []
    for name, sessions in _ROLE_SPECS:
        rid = "AROA" + _token(rng, 17, _UPPER_NUM)
        roles.append((name, rid, f"arn:aws:iam::{account}:role/{name}", sessions))
    sso_roles = []
    for perm, sessions in _SSO_SPECS:
        name = f"AWSReservedSSO_{perm}_{_hexs(rng, 16)}"
        rid = "AROA" + _token(rng, 17, _UPPER_NUM)
        arn = f"arn:aws:iam::{account}:role/aws-reserved/sso.amazonaws.com/eu-west-1/{name}"
        sso_roles.append((name, rid, arn, sessions))
    ips = [f"198.51.100.{rng.randrange(1, 255)}" for _ in range(5)]
    ips += [f"203.0.113.{rng.randrange(1, 255)}" for _ in range(4)]
    return _Account(
        index=index,
        id=account,
        root=root,
        users=users,
        roles=roles,
        sso_roles=sso_roles,
        ips=ips,
        vpcs=[f"vpc-{_hexs(rng, 17)}" for _ in range(3)],
        subnets=[f"subnet-{_hexs(rng, 17)}" for _ in range(6)],
        sgs=[f"sg-{_hexs(rng, 17)}" for _ in range(8)],
        instances=[f"i-{_hexs(rng, 17)}" for _ in range(12)],
        buckets=[f"acme-{name}-{account}" for name in ("data", "logs", "artifacts", "backups")],
        keys=[_uuid(rng) for _ in range(4)],
        functions=["etl-ingest", "thumbnailer", "slack-notifier", "cost-report"],
        amis=[f"ami-{_hexs(rng, 17)}" for _ in range(3)],
        detector=_hexs(rng, 32),
        role_arn_targets=[f"arn:aws:iam::{account}:role/{name}" for name, _ in _ROLE_SPECS],
    )


# --------------------------------------------------------------------------- identities

_UA_CLI = (
    "aws-cli/2.15.30 Python/3.11.8 Linux/6.1.79-99.164.amzn2023.x86_64 exe/x86_64.amzn.2023 prompt/off command/{cmd}"
)
_UA_BOTO = (
    "Boto3/1.34.51 md/Botocore#1.34.51 ua/2.0 os/linux#5.10.210-201.852.amzn2.x86_64 "
    "md/arch#x86_64 lang/python#3.11.6 md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.34.51"
)
_UA_GO = "aws-sdk-go-v2/1.25.2 os/linux lang/go#1.21.6 md/GOOS#linux md/GOARCH#amd64 api/ec2#1.149.1"
_UA_TF = (
    "APN/1.0 HashiCorp/1.0 Terraform/1.7.4 (+https://www.terraform.io) terraform-provider-aws/5.39.0 "
    "(+https://registry.terraform.io/providers/hashicorp/aws) aws-sdk-go-v2/1.25.2 os/linux lang/go#1.21.6"
)
_UA_BROWSER = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/122.0.0.0 Safari/537.36"
)
_UA_MACHINE = (_UA_BOTO, _UA_GO, _UA_TF, _UA_BOTO)
_TLS = (
    ("TLSv1.3", "TLS_AES_128_GCM_SHA256"),
    ("TLSv1.3", "TLS_AES_128_GCM_SHA256"),
    ("TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256"),
)

# identity kinds
_K_USER, _K_ROLE, _K_SSO, _K_ROOT, _K_FED, _K_SVC = range(6)


class _Gen:
    """Random state and caches for one (account, day, region) stream of events."""

    __slots__ = ("rng", "acct", "region", "day", "sessions", "hosts")

    def __init__(self, rng: random.Random, acct: _Account, region: str, day: datetime.date) -> None:
        self.rng = rng
        self.acct = acct
        self.region = region
        self.day = day
        self.sessions: dict[tuple[int, int, int, str], dict[str, Any]] = {}
        self.hosts: dict[str, str] = {}

    def host(self, service: str) -> str:
        h = self.hosts.get(service)
        if h is None:
            if service in ("iam", "organizations", "signin"):
                h = "signin.aws.amazon.com" if service == "signin" else f"{service}.amazonaws.com"
            elif service == "s3":
                h = f"s3.{self.region}.amazonaws.com"
            else:
                h = f"{service}.{self.region}.amazonaws.com"
            self.hosts[service] = h
        return h

    def _session(self, kind: int, idx: int, t: int, session: str) -> dict[str, Any]:
        # Session credentials last hours, so one identity object per principal per hour.
        hour = t // 3600
        ck = (kind, idx, hour, session)
        ident = self.sessions.get(ck)
        if ident is not None:
            return ident
        a = self.acct
        r = random.Random(f"{a.id}:{kind}:{idx}:{hour}:{session}:{self.region}")
        created = _iso(hour * 3600 - r.randrange(60, 3000))
        akid = "ASIA" + _token(r, 16, _UPPER_NUM)
        if kind == _K_ROOT:
            ident = {
                "type": "Root",
                "principalId": a.id,
                "arn": f"arn:aws:iam::{a.id}:root",
                "accountId": a.id,
                "accessKeyId": akid,
                "sessionContext": {"attributes": {"creationDate": created, "mfaAuthenticated": "true"}},
            }
        elif kind == _K_FED:
            user = a.users[idx]
            ident = {
                "type": "FederatedUser",
                "principalId": f"{a.id}:{session}",
                "arn": f"arn:aws:sts::{a.id}:federated-user/{session}",
                "accountId": a.id,
                "accessKeyId": akid,
                "sessionContext": {
                    "sessionIssuer": {
                        "type": "IAMUser",
                        "principalId": user["principalId"],
                        "arn": user["arn"],
                        "accountId": a.id,
                        "userName": user["userName"],
                    },
                    "webIdFederationData": {},
                    "attributes": {"creationDate": created, "mfaAuthenticated": "false"},
                },
            }
        else:
            name, rid, arn, _ = (a.sso_roles if kind == _K_SSO else a.roles)[idx]
            ident = {
                "type": "AssumedRole",
                "principalId": f"{rid}:{session}",
                "arn": f"arn:aws:sts::{a.id}:assumed-role/{name}/{session}",
                "accountId": a.id,
                "accessKeyId": akid,
                "sessionContext": {
                    "sessionIssuer": {
                        "type": "Role",
                        "principalId": rid,
                        "arn": arn,
                        "accountId": a.id,
                        "userName": name,
                    },
                    "webIdFederationData": {},
                    "attributes": {
                        "creationDate": created,
                        "mfaAuthenticated": "true" if kind == _K_SSO else "false",
                    },
                },
            }
        self.sessions[ck] = ident
        return ident

    # actor pickers return (userIdentity, kind, sourceIPAddress, userAgent)

    def machine(self, t: int, cmd: str) -> tuple[dict[str, Any], int, str, str]:
        rng = self.rng
        a = self.acct
        x = rng.random()
        if x < 0.8:
            idx = rng.randrange(len(a.roles))
            session = rng.choice(a.roles[idx][3])
            ident = self._session(_K_ROLE, idx, t, session)
            ua = _UA_TF if idx == 2 else rng.choice(_UA_MACHINE)
            return ident, _K_ROLE, self.ip(), ua
        user = a.users[rng.choice((2, 3, 5))]
        return user, _K_USER, self.ip(), _UA_CLI.format(cmd=cmd)

    def human(self, t: int, cmd: str) -> tuple[dict[str, Any], int, str, str]:
        rng = self.rng
        a = self.acct
        x = rng.random()
        console = rng.random() < 0.45
        ua = _UA_BROWSER if console else _UA_CLI.format(cmd=cmd)
        if x < 0.62:
            idx = rng.randrange(len(a.sso_roles))
            session = rng.choice(a.sso_roles[idx][3])
            ip = "AWS Internal" if console and rng.random() < 0.3 else self.ip()
            return self._session(_K_SSO, idx, t, session), _K_SSO, ip, ua
        if x < 0.9:
            return a.users[rng.choice((0, 1, 4))], _K_USER, self.ip(), ua
        if x < 0.96:
            return self._session(_K_FED, 1, t, "bob-federated"), _K_FED, self.ip(), ua
        return self._session(_K_ROOT, 0, t, "root"), _K_ROOT, self.ip(), _UA_BROWSER

    def any(self, t: int, cmd: str) -> tuple[dict[str, Any], int, str, str]:
        if self.rng.random() < 0.72:
            return self.machine(t, cmd)
        return self.human(t, cmd)

    def ip(self) -> str:
        rng = self.rng
        if rng.random() < 0.03:  # the odd address nobody has seen before
            return f"{rng.choice(('198.51.100', '203.0.113'))}.{rng.randrange(1, 255)}"
        return rng.choice(self.acct.ips)


def _service_ident(svc: str) -> dict[str, Any]:
    return {"type": "AWSService", "invokedBy": svc}
