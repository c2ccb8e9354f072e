"""A small HTTP reverse proxy in front of a local S3 endpoint (moto) that injects faults.

    with FaultProxy(moto_url) as proxy:
        proxy.fail_first(5)                       # 503 SlowDown for requests 1-5
        client = boto3.client("s3", endpoint_url=proxy.url, ...)

Every request is forwarded unchanged (method, path and query, headers, body) and the
upstream answer returned unchanged (status, headers, body), unless a rule of the policy
matches it. Rules are checked in the order they were added and the first match wins;
each rule counts the requests it could match (all of them, only LIST or only GET object
calls with `op=`, only one object with `key=`), so `fail_every(7)` hits the 7th, 14th,
... request. The proxy counts requests and injected faults, so a test can prove that the
client really retried.

Bounded: one upstream connection per request with a timeout, injected delays are the
test's own small values, handler threads are daemons, and `stop()` (the context
manager's exit) shuts the server down.
"""

from __future__ import annotations

import http.client
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

_MESSAGES = {
    "SlowDown": "Please reduce your request rate.",
    "InternalError": "We encountered an internal error. Please try again.",
    "ServiceUnavailable": "Service is unable to handle request.",
    "AccessDenied": "Access Denied",
}
# Hop-by-hop headers are the proxy's own business on each side, never forwarded.
_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
                  "proxy-connection", "expect", "content-length"})
UPSTREAM_TIMEOUT = 30.0


def s3_error_body(code: str, message: str | None = None) -> bytes:
    message = message if message is not None else _MESSAGES.get(code, code)
    return f"<Error><Code>{code}</Code><Message>{message}</Message></Error>".encode()


def request_op(method: str, path: str) -> str:
    """'list' for ListObjects(V2) (GET on the bucket), 'get' for GET/HEAD of an object, else 'other'.

    Path-style addressing (the endpoint is an IP address): /bucket or /bucket/key.
    """
    has_key = bool(request_key(path))
    if method == "GET" and not has_key:
        return "list"
    if method in ("GET", "HEAD") and has_key:
        return "get"
    return "other"


def request_key(path: str) -> str:
    """The object key of a path-style request ('' for a bucket-level request)."""
    return unquote(path.partition("?")[0].lstrip("/").partition("/")[2])


@dataclass
class Rule:
    """One fault: `action` is 'error', 'reset' or 'slow'; `hits(n)` says whether the n-th match applies."""

    action: str
    hits: Callable[[int], bool]
    op: str | None = None  # 'list' / 'get' / None (every request)
    key: str | None = None  # only requests for this object key
    status: int = 503
    code: str = "SlowDown"
    seconds: float = 0.0
    seen: int = 0

    @property
    def label(self) -> str:
        if self.action == "error":
            return f"{self.status} {self.code}"
        return self.action


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        assert parts.scheme == "http" and parts.hostname, f"an http:// upstream, not {upstream!r}"
        self.upstream_host, self.upstream_port = parts.hostname, parts.port or 80
        self._lock = threading.Lock()
        self._rules: list[Rule] = []
        self.requests = 0
        self.ops: Counter[str] = Counter()  # requests per op ('list', 'get', 'other')
        self.injected: Counter[str] = Counter()  # faults per label ('503 SlowDown', 'reset', 'slow')
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ policy

    def _add(self, rule: Rule) -> FaultProxy:
        with self._lock:
            self._rules.append(rule)
        return self

    def fail_first(self, n: int, status: int = 503, code: str = "SlowDown", *,
                   op: str | None = None, key: str | None = None) -> FaultProxy:
        return self._add(Rule("error", lambda i: i <= n, op, key, status, code))

    def fail_after(self, n: int, status: int = 403, code: str = "AccessDenied", *,
                   op: str | None = None, key: str | None = None) -> FaultProxy:
        """Answer every matching request after the first `n` with this error (a permission taken away)."""
        return self._add(Rule("error", lambda i: i > n, op, key, status, code))

    def fail_every(self, k: int, status: int = 500, code: str = "InternalError", *,
                   op: str | None = None, key: str | None = None) -> FaultProxy:
        return self._add(Rule("error", lambda i: i % k == 0, op, key, status, code))

    def reset_every(self, k: int, *, op: str | None = None, key: str | None = None) -> FaultProxy:
        return self._add(Rule("reset", lambda i: i % k == 0, op, key))

    def slow_every(self, k: int, seconds: float, *, op: str | None = None, key: str | None = None) -> FaultProxy:
        assert 0 <= seconds <= 5, "keep injected delays small"
        return self._add(Rule("slow", lambda i: i % k == 0, op, key, seconds=seconds))

    def latency(self, seconds: float, *, op: str | None = None) -> FaultProxy:
        """Delay every request (or every `op` request) by `seconds`: a distant endpoint's round trip."""
        return self.slow_every(1, seconds, op=op)

    def always(self, status: int = 503, code: str = "SlowDown", *,
               op: str | None = None, key: str | None = None) -> FaultProxy:
        return self._add(Rule("error", lambda i: True, op, key, status, code))

    def clear(self) -> FaultProxy:
        """Forget the rules and the counts: a clean pass-through proxy."""
        with self._lock:
            self._rules.clear()
            self.requests = 0
            self.ops.clear()
            self.injected.clear()
        return self

    @property
    def faults(self) -> int:
        """Faults injected so far (errors and resets; delays are counted under 'slow')."""
        return sum(n for label, n in self.injected.items() if label != "slow")

    def _decide(self, method: str, path: str) -> Rule | None:
        op, key = request_op(method, path), request_key(path)
        with self._lock:
            self.requests += 1
            self.ops[op] += 1
            chosen = None
            for rule in self._rules:
                if rule.op not in (None, op) or rule.key not in (None, key):
                    continue
                rule.seen += 1
                if chosen is None and rule.hits(rule.seen):
                    chosen = rule
            if chosen is not None:
                self.injected[chosen.label] += 1
            return chosen

    # ------------------------------------------------------------------ server

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the proxy first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FaultProxy:
        proxy = self

        class Handler(_Handler):
            pass

        Handler.proxy = proxy
        self._server = _Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="faultproxy",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            assert self._thread is not None
            self._thread.join(timeout=5)
            self._server = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # a client's whole connection pool may connect at once (the default is 5)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up mid-answer is not an error worth a traceback."""


class _Handler(BaseHTTPRequestHandler):
    proxy: FaultProxy
    protocol_version = "HTTP/1.1"  # keep-alive, as boto3's connection pool expects

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                pass
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _handle(self) -> None:
        body = self._body()
        rule = self.proxy._decide(self.command, self.path)
        if rule is not None and rule.action == "reset":
            # RST instead of FIN: the client sees "connection reset by peer", no response.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return
        if rule is not None and rule.action == "error":
            payload = s3_error_body(rule.code)
            self.send_response(rule.status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
            return
        if rule is not None and rule.action == "slow":
            time.sleep(rule.seconds)
        status, reason, headers, payload = self._forward(body)
        self.send_response(status, reason)
        for name, value in headers:
            if name.lower() not in _HOP and name.lower() not in ("server", "date"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _forward(self, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(self.proxy.upstream_host, self.proxy.upstream_port,
                                          timeout=UPSTREAM_TIMEOUT)
        try:
            # The Host header stays the client's: it is part of the SigV4 signature.
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
            conn.request(self.command, self.path, body=body or None, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.reason, resp.getheaders(), resp.read()
        finally:
            conn.close()

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (ConnectionError, TimeoutError, OSError):
            # The client gave up (a read timeout on a delayed answer) or we reset it.
            self.close_connection = True

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _handle  # noqa: N815 - http.server's names
