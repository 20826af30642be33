"""A fault-injecting HTTP proxy on loopback, in front of the S3 server.

Each request is read whole, then a rule decides its fate: forwarded untouched, answered with an S3 error
(500 InternalError, 503 ServiceUnavailable, 503 SlowDown) without reaching the server, or its connection reset —
before forwarding (the server never saw it) or after (the server acted on it, the client never hears back, the
case that turns a retried write into a duplicate). Headers are forwarded verbatim, Host included, so SigV4
signatures made for the proxy's address still verify at the server.

Bounded: it serves at most `max_requests` requests and shuts down after `lifetime` seconds, so a test that goes
wrong fails instead of hanging.
"""

from __future__ import annotations

import http.client
import random
import socket
import struct
import threading
from collections import Counter
from collections.abc import Callable
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HOST = "127.0.0.1"


class Fault(StrEnum):
    ERROR_500 = "500 InternalError"
    ERROR_503 = "503 ServiceUnavailable"
    SLOW_DOWN = "503 SlowDown"
    RESET_BEFORE = "reset before forwarding"
    RESET_AFTER = "reset after forwarding"


ERRORS: dict[Fault, tuple[int, str, str]] = {
    Fault.ERROR_500: (500, "InternalError", "We encountered an internal error. Please try again."),
    Fault.ERROR_503: (503, "ServiceUnavailable", "Service is unable to handle request."),
    Fault.SLOW_DOWN: (503, "SlowDown", "Please reduce your request rate."),
}

# (method, path with query, 1-based request number) -> the fault to inject, or None to forward
FaultRule = Callable[[str, str, int], Fault | None]
# (method, path with query, headers, body) -> the headers to forward instead (e.g. a condition stripped)
Rewrite = Callable[[str, str, list[tuple[str, str]], bytes], list[tuple[str, str]]]

_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "upgrade", "expect"}


def random_faults(
    seed: int, rate: float, kinds: tuple[Fault, ...] = tuple(Fault), spare: Callable[[str, str], bool] | None = None
) -> FaultRule:
    """A seeded rule: each request gets a fault with probability `rate`, the kinds taken in turn (so that a
    handful of faults already covers every kind). `spare(method, path)` exempts requests from every fault.
    """
    rng = random.Random(seed)
    lock = threading.Lock()
    injected = 0

    def rule(method: str, path: str, number: int) -> Fault | None:
        nonlocal injected
        if spare is not None and spare(method, path):
            return None
        with lock:
            if rng.random() >= rate:
                return None
            injected += 1
            return kinds[(injected - 1) % len(kinds)]

    return rule


def no_faults(method: str, path: str, number: int) -> Fault | None:
    return None


class FaultProxy:
    def __init__(
        self,
        upstream: str,
        rule: FaultRule = no_faults,
        *,
        on_request: Callable[[str, str, int], None] | None = None,
        rewrite: Rewrite | None = None,
        max_requests: int = 5000,
        lifetime: float = 180.0,
    ) -> None:
        host, _, port = upstream.removeprefix("http://").partition(":")
        self.upstream = (host, int(port))
        self.rule = rule
        self.on_request = on_request
        self.rewrite = rewrite
        self.max_requests = max_requests
        self.lifetime = lifetime
        self.requests = 0
        self.faults: Counter[str] = Counter()
        self.log: list[tuple[str, str, str]] = []  # (method, path, what happened)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((HOST, 0), _Handler)
        self._server.daemon_threads = True
        self._server.proxy = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)
        self._timer = threading.Timer(lifetime, self._server.shutdown)
        self._timer.daemon = True

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self._server.server_address[1]}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def _next(self, method: str, path: str) -> tuple[int, Fault | None, bool]:
        """Number the request and decide its fault; the bool is False once the request budget is spent."""
        with self._lock:
            self.requests += 1
            number = self.requests
        if number > self.max_requests:
            return number, None, False
        if self.on_request is not None:
            self.on_request(method, path, number)
        fault = self.rule(method, path, number)
        if fault is not None:
            with self._lock:
                self.faults[fault.value] += 1
        return number, fault, True

    def _record(self, method: str, path: str, what: str) -> None:
        with self._lock:
            self.log.append((method, path, what))

    def forward(self, method: str, path: str, headers: list[tuple[str, str]], body: bytes) -> tuple[Any, bytes]:
        connection = http.client.HTTPConnection(*self.upstream, timeout=30)
        try:
            connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            for name, value in headers:
                if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                    connection.putheader(name, value)
            if body or method in ("PUT", "POST"):
                connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body)
            response = connection.getresponse()
            data = response.read()
            return response, data
        finally:
            connection.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ThreadingHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: what happened is in `FaultProxy.log`."""

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _reset(self) -> None:
        """Drop the connection with a TCP RST, as a crashed server or a broken network does."""
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()

    def _handle(self) -> None:
        proxy: FaultProxy = self.server.proxy  # type: ignore[attr-defined]
        method, path = self.command, self.path
        body = self._body()
        number, fault, within_budget = proxy._next(method, path)
        if not within_budget:
            proxy._record(method, path, "refused: request budget spent")
            self._reset()
            return
        if fault in ERRORS:
            status, code, message = ERRORS[fault]
            proxy._record(method, path, fault.value)
            payload = (
                f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
                f"<RequestId>fault-proxy-{number}</RequestId></Error>"
            ).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", "0" if method == "HEAD" else str(len(payload)))
            self.end_headers()
            if method != "HEAD":
                self.wfile.write(payload)
            return
        if fault is Fault.RESET_BEFORE:
            proxy._record(method, path, fault.value)
            self._reset()
            return
        headers = list(self.headers.items())
        if proxy.rewrite is not None:
            headers = proxy.rewrite(method, path, headers, body)
        try:
            response, data = proxy.forward(method, path, headers, body)
        except OSError as exc:  # the server is down: the client sees its connection dropped
            proxy._record(method, path, f"upstream unreachable: {type(exc).__name__}")
            self._reset()
            return
        if fault is Fault.RESET_AFTER:
            proxy._record(method, path, f"{fault.value} (server answered {response.status})")
            self._reset()
            return
        proxy._record(method, path, str(response.status))
        self.send_response_only(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in _HOP_BY_HOP and (name.lower() != "content-length" or method == "HEAD"):
                self.send_header(name, value)
        if method != "HEAD":
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle
