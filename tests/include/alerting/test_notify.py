"""Alert notifications through real SMTP, HTTP and SNS endpoints: grouping, once-only, retries, no secrets."""

from __future__ import annotations

import email
import email.policy
import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from trailhouse import settings
from trailhouse.alerting import notify
from trailhouse.config import ConfigError
from trailhouse.db import appdb
from trailhouse.dev.servers import free_port

ACCT_A, ACCT_B = "111122223333", "012345678901"
SMTP_USER, SMTP_PASSWORD = "trailhouse", "smtp-Pa55word-7q3"
HOOK_TOKEN = "XoXbSeCrEtT0ken4w3bh00k"
SNS_SECRET = "snsSecretKey/9f8e7d6c5b4a"
T0 = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)


# --- real endpoints ---------------------------------------------------------------------------


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], email.message.EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's hook
        msg = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        self.messages.append((list(envelope.rcpt_tos), msg))
        return "250 OK"


def _authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == SMTP_USER.encode() \
        and auth_data.password == SMTP_PASSWORD.encode()
    # handled=False: aiosmtpd then answers a refusal with 535 itself.
    return AuthResult(success=ok, handled=ok, auth_data=auth_data)


@pytest.fixture(scope="module")
def smtp_server() -> Iterator[tuple[int, _Mailbox]]:
    box = _Mailbox()
    port = free_port()
    # AUTH over plain SMTP: this server only listens on loopback.
    ctl = Controller(box, hostname="127.0.0.1", port=port, authenticator=_authenticate, auth_require_tls=False)
    ctl.start()
    try:
        yield port, box
    finally:
        ctl.stop()


@pytest.fixture
def mailbox(smtp_server: tuple[int, _Mailbox]) -> _Mailbox:
    smtp_server[1].messages.clear()
    return smtp_server[1]


class _Hooks:
    """What the HTTP server received; `fail` answers the next N requests with 500."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.fail = 0
        self.lock = threading.Lock()


@pytest.fixture
def hooks() -> Iterator[tuple[str, _Hooks]]:
    state = _Hooks()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's hook
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with state.lock:
                failing = state.fail > 0
                state.fail -= failing
                if not failing:
                    state.requests.append({"path": self.path, "headers": dict(self.headers), "json": json.loads(body)})
            # A careless server echoing the request path, as some do: the token must not reach the outbox.
            reply = f"no route for {self.path}".encode() if failing else b"ok"
            self.send_response(500 if failing else 200)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()


# --- set-up helpers --------------------------------------------------------------------------


def _store_conn(conn_id: str, conn_type: str, **fields: Any) -> None:
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session

    extra = fields.pop("extra", None)
    with create_session() as session:
        session.query(Connection).filter(Connection.conn_id == conn_id).delete()
        session.add(Connection(conn_id=conn_id, conn_type=conn_type, extra=json.dumps(extra) if extra else None,
                               **fields))


def _smtp_conn(port: int, conn_id: str = "th_smtp", password: str | None = SMTP_PASSWORD,
               login: str | None = SMTP_USER) -> None:
    _store_conn(conn_id, "smtp", host="127.0.0.1", port=port, login=login, password=password,
                extra={"from": "trailhouse@example.org", "starttls": False, "ssl": False})


def _owners(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> Path:
    path = tmp_path / "owners.yaml"
    path.write_text(text)
    monkeypatch.setenv("TRAILHOUSE_OWNERS_FILE", str(path))
    return path


def _engine() -> sa.Engine:
    return appdb.engine(settings.load().app_db_url)


def _plan(eng: sa.Engine, *args: Any, **kwargs: Any) -> int:
    """notify.plan as the notify step calls it, with this test's owners file and base URL."""
    cfg = settings.load()
    return notify.plan(eng, *args, owners_file=cfg.owners_file, base_url=cfg.base_url, **kwargs)


def _deliver(eng: sa.Engine, **kwargs: Any) -> dict[str, int]:
    return notify.deliver(eng, owners_file=settings.load().owners_file, **kwargs)


def _alert(i: int, account: str, **over: Any) -> dict[str, Any]:
    return {
        "id": i, "rule_id": f"rule-{i}", "title": f"Title {i}", "severity": "medium", "account_id": account,
        "principal": f"arn:aws:iam::{account}:user/user{i}", "source_ip": f"203.0.113.{i}",
        "event_name": f"Event{i}", "first_event_time": T0 - timedelta(minutes=i), "first_event_id": f"evt-{i}",
        "count": 1, "mav": "prod", "rule_owner": None, "notify": True, **over,
    }


def _rows(eng: sa.Engine) -> list[dict[str, Any]]:
    with eng.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(appdb.notifications).order_by(appdb.notifications.c.id))
                .mappings()]


TWO_OWNERS = f"""
owners:
  - name: team-a
    accounts: ["{ACCT_A}"]
    users: [alice]
    channels:
      - {{type: email, to: [a-sec@example.com, a-oncall@example.com], connection: th_smtp}}
  - name: team-b
    accounts: ["{ACCT_B}"]
    channels:
      - {{type: email, to: [b-sec@example.com], connection: th_smtp}}
"""


# --- tests -----------------------------------------------------------------------------------


def test_one_email_per_owner_listing_only_its_alerts(th_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      airflow_db: None, mailbox: _Mailbox,
                                                      smtp_server: tuple[int, _Mailbox]) -> None:
    monkeypatch.setenv("TRAILHOUSE_BASE_URL", "https://th.example.org/")
    _owners(tmp_path, monkeypatch, TWO_OWNERS)
    _smtp_conn(smtp_server[0])
    eng = _engine()
    alerts = [_alert(1, ACCT_A, severity="high"), _alert(2, ACCT_A, severity="low"), _alert(3, ACCT_B)]

    assert _plan(eng, "run-1", "prod", alerts, now=T0) == 2
    assert _deliver(eng, now=T0) == {"sent": 2, "retrying": 0, "failed": 0}

    got = {tuple(sorted(rcpt)): msg for rcpt, msg in mailbox.messages}
    assert set(got) == {("a-oncall@example.com", "a-sec@example.com"), ("b-sec@example.com",)}
    a, b = got[("a-oncall@example.com", "a-sec@example.com")], got[("b-sec@example.com",)]
    assert a["Subject"] == "[trailhouse] 2 new alerts (highest: HIGH) — prod"
    assert b["Subject"] == "[trailhouse] 1 new alert (highest: MEDIUM) — prod"
    assert a["From"] == "trailhouse@example.org"
    rows = {r["recipient"]: r for r in _rows(eng)}
    assert a["Message-ID"] == f"<{notify.message_id(rows['team-a'])}@trailhouse>"
    assert rows["team-a"]["alert_ids"] == "1,2" and rows["team-b"]["alert_ids"] == "3"
    body_a, body_b = a.get_content(), b.get_content()
    for i, body in ((1, body_a), (2, body_a), (3, body_b)):
        acct = ACCT_A if i < 3 else ACCT_B
        for needle in (acct, f"rule-{i}", f"Title {i}", f"arn:aws:iam::{acct}:user/user{i}", f"203.0.113.{i}",
                       f"Event{i}", (T0 - timedelta(minutes=i)).strftime("%Y-%m-%d %H:%M:%S UTC"),
                       f"https://th.example.org/trailhouse/events/evt-{i}"):
            assert needle in body, (i, needle)
    assert "high" in body_a and "low" in body_a and "medium" in body_b
    assert body_a.index("rule-1") < body_a.index("rule-2")  # highest severity first
    assert "evt-3" not in body_a and ACCT_B not in body_a
    assert "evt-1" not in body_b and "evt-2" not in body_b and ACCT_A not in body_b


def test_plan_and_deliver_twice_send_once(th_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          airflow_db: None, mailbox: _Mailbox, smtp_server: tuple[int, _Mailbox],
                                          hooks: tuple[str, _Hooks]) -> None:
    url, state = hooks
    _owners(tmp_path, monkeypatch, f"""
owners:
  - name: team-a
    accounts: ["{ACCT_A}"]
    channels:
      - {{type: email, to: [a@example.com], connection: th_smtp}}
      - {{type: webhook, connection: th_hook}}
""")
    _smtp_conn(smtp_server[0])
    _store_conn("th_hook", "http", host=f"{url}/hooks/{HOOK_TOKEN}")
    eng = _engine()
    alerts = [_alert(1, ACCT_A), _alert(2, ACCT_A)]

    # A retried task: plan and deliver run again for the same run.
    assert _plan(eng, "run-1", "prod", alerts, now=T0) == 2
    assert _deliver(eng, run_id="run-1", now=T0)["sent"] == 2
    assert _plan(eng, "run-1", "prod", alerts, now=T0) == 0
    assert _deliver(eng, run_id="run-1", now=T0 + timedelta(hours=1)) == {"sent": 0, "retrying": 0, "failed": 0}

    assert len(mailbox.messages) == 1 and len(state.requests) == 1
    assert len(_rows(eng)) == 2
    req = state.requests[0]
    row = next(r for r in _rows(eng) if r["channel"].startswith("webhook:"))
    assert req["headers"]["Idempotency-Key"] == notify.message_id(row) == req["json"]["id"]
    assert req["json"]["alerts"] == [1, 2] and req["json"]["subject"] == row["subject"]
    assert "Title 1" in req["json"]["body"]


def test_webhook_500_backs_off_then_delivers(th_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             airflow_db: None, hooks: tuple[str, _Hooks]) -> None:
    url, state = hooks
    _owners(tmp_path, monkeypatch, f"""
owners:
  - name: team-a
    accounts: ["{ACCT_A}"]
    channels: [{{type: webhook, connection: th_hook}}]
""")
    _store_conn("th_hook", "http", host=f"{url}/hooks/{HOOK_TOKEN}")
    eng = _engine()
    _plan(eng, "run-1", "prod", [_alert(1, ACCT_A)], now=T0)
    state.fail = 1

    assert _deliver(eng, now=T0) == {"sent": 0, "retrying": 1, "failed": 0}
    [row] = notify.outbox_status(eng, "run-1")
    assert row["status"] == "pending" and row["attempts"] == 1
    assert row["next_attempt_at"] == T0 + timedelta(seconds=30)
    assert "HTTP 500" in row["last_error"]
    # Not due yet: nothing is sent.
    assert _deliver(eng, now=T0 + timedelta(seconds=10)) == {"sent": 0, "retrying": 0, "failed": 0}
    assert state.requests == []

    assert _deliver(eng, now=T0 + timedelta(seconds=31)) == {"sent": 1, "retrying": 0, "failed": 0}
    [row] = notify.outbox_status(eng, "run-1")
    assert row["status"] == "sent" and row["attempts"] == 2 and row["sent_at"] == T0 + timedelta(seconds=31)
    assert len(state.requests) == 1


def test_gives_up_after_max_attempts_without_leaking_secrets(th_home: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch, airflow_db: None,
                                                             hooks: tuple[str, _Hooks],
                                                             smtp_server: tuple[int, _Mailbox],
                                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    url, state = hooks
    _owners(tmp_path, monkeypatch, f"""
owners:
  - name: team-a
    accounts: ["{ACCT_A}"]
    channels:
      - {{type: webhook, connection: th_hook}}
      - {{type: slack, connection: th_slack}}
      - {{type: email, to: [a@example.com], connection: th_smtp_bad}}
""")
    _store_conn("th_hook", "http", host=f"{url}/hooks/{HOOK_TOKEN}")
    # Slack's form: the whole webhook URL is the connection's password.
    _store_conn("th_slack", "http", password=f"{url}/services/T000/B000/{HOOK_TOKEN}")
    wrong_password = "Wr0ng-smtp-passw0rd"
    _smtp_conn(smtp_server[0], "th_smtp_bad", password=wrong_password)
    eng = _engine()
    _plan(eng, "run-1", "prod", [_alert(1, ACCT_A)], now=T0)
    state.fail = 1000

    now, results = T0, []
    for _ in range(3):
        results.append(_deliver(eng, now=now, max_attempts=3))
        now += timedelta(hours=1)
    assert results == [{"sent": 0, "retrying": 3, "failed": 0}] * 2 + [{"sent": 0, "retrying": 0, "failed": 3}]
    assert _deliver(eng, now=now, max_attempts=3) == {"sent": 0, "retrying": 0, "failed": 0}

    status = {r["channel"].split(":")[0]: r for r in notify.outbox_status(eng)}
    assert {r["status"] for r in status.values()} == {"failed"}
    assert all(r["attempts"] == 3 for r in status.values())
    assert "HTTP 500" in status["webhook"]["last_error"] and "no route for" in status["webhook"]["last_error"]
    assert "HTTP 500" in status["slack"]["last_error"]
    assert "SMTPAuthenticationError" in status["email"]["last_error"]
    stored = json.dumps(_rows(eng), default=str)
    for secret in (HOOK_TOKEN, wrong_password, SMTP_PASSWORD):
        assert secret not in stored
        assert secret not in caplog.text
    assert "will retry" in caplog.text and "failed for good" in caplog.text


def test_redaction_masks_every_form_of_a_secret() -> None:
    hook = f"https://hooks.example.com/services/T000/B000/{HOOK_TOKEN}?sig=abcdef123456"
    text = (f"cannot open {hook}; path /services/T000/B000/{HOOK_TOKEN}; token {HOOK_TOKEN}; "
            f"quoted {HOOK_TOKEN}%2F; password {SMTP_PASSWORD}; other https://user:pw@h.example/x/y")
    out = notify._redact(text, [hook, SMTP_PASSWORD, None, ""])
    for secret in (HOOK_TOKEN, SMTP_PASSWORD, "abcdef123456", "user:pw", "/x/y"):
        assert secret not in out
    assert "hooks.example.com" in out  # the host stays, to say which endpoint failed
    assert "***" in notify._redact(f"bad port in http://h:x/{HOOK_TOKEN}", [f"http://h:x/{HOOK_TOKEN}"])


def test_slack_and_sns_delivery(th_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, airflow_db: None,
                                hooks: tuple[str, _Hooks], s3_endpoint: str) -> None:
    import boto3

    url, state = hooks
    sns = boto3.client("sns", endpoint_url=s3_endpoint, region_name="us-east-1")
    sqs = boto3.client("sqs", endpoint_url=s3_endpoint, region_name="us-east-1")
    topic = sns.create_topic(Name="trailhouse-alerts")["TopicArn"]
    fifo = sns.create_topic(Name="trailhouse-alerts.fifo", Attributes={"FifoTopic": "true"})["TopicArn"]
    queue = sqs.create_queue(QueueName="trailhouse-alerts-q")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    _owners(tmp_path, monkeypatch, f"""
owners:
  - name: team-a
    accounts: ["{ACCT_A}"]
    channels:
      - {{type: slack, connection: th_slack}}
      - {{type: sns, topic_arn: "{topic}", connection: th_sns}}
      - {{type: sns, topic_arn: "{fifo}", connection: th_sns}}
""")
    _store_conn("th_slack", "http", password=f"{url}/services/T000/B000/{HOOK_TOKEN}")
    _store_conn("th_sns", "aws", login="AKIAIOSFODNN7EXAMPLE", password=SNS_SECRET,
                extra={"endpoint_url": s3_endpoint, "region_name": "us-east-1"})
    eng = _engine()
    _plan(eng, "run-1", "prod", [_alert(1, ACCT_A, principal="<!channel> & co")], now=T0)

    assert _deliver(eng, now=T0) == {"sent": 3, "retrying": 0, "failed": 0}

    [req] = state.requests
    assert req["path"] == f"/services/T000/B000/{HOOK_TOKEN}"
    text = req["json"]["text"]
    assert text.startswith("*[trailhouse] 1 new alert (highest: MEDIUM) — prod*")
    assert "&lt;!channel&gt; &amp; co" in text and "<!channel>" not in text  # no mention smuggled in
    slack_row = next(r for r in _rows(eng) if r["channel"].startswith("slack:"))
    assert req["headers"]["Idempotency-Key"] == notify.message_id(slack_row)

    got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)["Messages"]
    [envelope] = [json.loads(m["Body"]) for m in got]
    sns_row = next(r for r in _rows(eng) if r["channel"].startswith("sns:") and topic in _channel_topic(r))
    assert envelope["Subject"] == "[trailhouse] 1 new alert (highest: MEDIUM) - prod"
    assert "evt-1" in envelope["Message"] and ACCT_A in envelope["Message"]
    assert envelope["MessageAttributes"]["trailhouse_id"]["Value"] == notify.message_id(sns_row)
    assert SNS_SECRET not in json.dumps(_rows(eng), default=str)


def _channel_topic(row: dict[str, Any]) -> str:
    owner = notify.load_owners(settings.load().owners_file)[0]
    channel = next(c for c in owner.channels if c.label == row["channel"])
    return getattr(channel, "topic_arn", "")


def test_alerts_not_to_notify_are_not_sent(th_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           airflow_db: None, mailbox: _Mailbox,
                                           smtp_server: tuple[int, _Mailbox]) -> None:
    _owners(tmp_path, monkeypatch, TWO_OWNERS)
    # No login in the connection: no AUTH (this server accepts mail without it).
    _smtp_conn(smtp_server[0], login=None, password=None)
    eng = _engine()
    alerts = [_alert(1, ACCT_A, notify=False), _alert(2, ACCT_A), _alert(3, ACCT_B, notify=False)]

    assert _plan(eng, "run-1", "prod", alerts, now=T0) == 1
    assert _deliver(eng, now=T0)["sent"] == 1
    [(rcpt, msg)] = mailbox.messages
    assert sorted(rcpt) == ["a-oncall@example.com", "a-sec@example.com"]
    assert "evt-2" in msg.get_content() and "evt-1" not in msg.get_content()
    assert _plan(eng, "run-2", "prod", [_alert(4, ACCT_B, notify=False)]) == 0


def test_recipients_are_account_owners_plus_rule_owners_once() -> None:
    owners = notify.OwnersFile.model_validate({"owners": [
        {"name": "team-a", "accounts": [ACCT_A], "users": ["alice"],
         "channels": [{"type": "webhook", "connection": "a"}]},
        {"name": "team-b", "accounts": [ACCT_B], "users": ["bob"],
         "channels": [{"type": "webhook", "connection": "b"}]},
    ]}).owners
    names = lambda alert, users=None: [o.name for o in notify.recipients_for(alert, owners, users)]  # noqa: E731
    assert names(_alert(1, ACCT_A)) == ["team-a"]
    assert names(_alert(1, ACCT_B, rule_owner="alice")) == ["team-a", "team-b"]
    assert names(_alert(1, ACCT_A, rule_owner="alice")) == ["team-a"]
    assert names(_alert(1, "999999999999"), {"bob"}) == ["team-b"]
    assert names(_alert(1, "999999999999")) == []


@pytest.mark.parametrize(
    ("yaml_text", "needles"),
    [
        ("owners:\n  - name: team-a\n    accounts: [111122223333]\n    channels: [{type: slack, connection: s}]\n",
         ["owners[0] (team-a).accounts", "quoted"]),
        ("owners:\n  - name: team-a\n    channels: [{type: slack, connection: s}, {type: teams, connection: t}]\n",
         ["owners[0] (team-a).channels[1].type", "unknown channel type 'teams'", "email, slack, webhook, sns"]),
        ("owners:\n  - name: team-a\n    channels: [{type: email, connection: s}]\n",
         ["owners[0] (team-a).channels[0].to", "Field required"]),
        ("owners:\n  - name: team-a\n    channels: [{type: sns, topic_arn: x, connection: s}]\n",
         ["channels[0].topic_arn", "SNS topic ARN"]),
        ("owners:\n  - name: team-a\n    chanels: []\n", ["owners[0] (team-a).chanels", "unknown field"]),
        ("owners:\n  - {name: x, channels: [{type: slack, connection: s}]}\n"
         "  - {name: x, channels: [{type: slack, connection: s}]}\n", ["owner names must be unique"]),
    ],
)
def test_owners_yaml_errors_name_file_and_field(tmp_path: Path, yaml_text: str, needles: list[str]) -> None:
    path = tmp_path / "owners.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as info:
        notify.load_owners(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    for needle in needles:
        assert needle in message, message


def test_missing_owners_file_means_no_recipients(th_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("TRAILHOUSE_OWNERS_FILE", str(tmp_path / "absent.yaml"))
    assert notify.load_owners(settings.load().owners_file) == []
    assert "absent.yaml" in caplog.text and "notify nobody" in caplog.text
    monkeypatch.delenv("TRAILHOUSE_OWNERS_FILE")
    assert settings.load().owners_file == settings.load().home / "owners.yaml"
    assert _plan(_engine(), "run-1", "prod", [_alert(1, ACCT_A)], owners=[]) == 0


def test_postgres_outbox_plans_once(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, airflow_db: None,
                                    hooks: tuple[str, _Hooks]) -> None:
    url, state = hooks
    _owners(tmp_path, monkeypatch, f"""
owners:
  - name: team-a
    accounts: ["{ACCT_A}"]
    channels: [{{type: webhook, connection: th_hook}}]
""")
    _store_conn("th_hook", "http", host=f"{url}/hooks/{HOOK_TOKEN}")
    eng = appdb.engine(pg_url)
    alerts = [_alert(1, ACCT_A), _alert(2, ACCT_A)]

    # Two planners of the same run at once (a task and its retry): the constraint lets one row in.
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(_plan(eng, "run-1", "prod", alerts, now=T0)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [0, 0, 0, 1]
    with pytest.raises(sa.exc.IntegrityError, match="uq_notification_once"), eng.begin() as conn:
        row = {k: v for k, v in _rows(eng)[0].items() if k != "id"}
        conn.execute(appdb.notifications.insert().values(row))

    assert _deliver(eng, now=T0) == {"sent": 1, "retrying": 0, "failed": 0}
    assert _deliver(eng, now=T0 + timedelta(hours=1))["sent"] == 0
    assert len(state.requests) == 1 and state.requests[0]["json"]["alerts"] == [1, 2]
    [row] = notify.outbox_status(eng)
    assert row["status"] == "sent" and row["sent_at"] == T0
