"""The pipeline's small HTTP server: ``/metrics``, ``/healthz``, ``/readyz``.

A stdlib ``ThreadingHTTPServer`` in a daemon thread: no framework, nothing to configure, and a slow scrape
never blocks the replication loop. Host and port come from the config (``http.host``, ``http.port``; the
defaults below); port 0 picks a free port and :meth:`ObservabilityServer.start` returns the bound one.

Hostile or broken clients (issue 15 point 8): each connection gets :data:`REQUEST_TIMEOUT` for its whole
request head, not per read, so one that connects and never sends its request, or trickles it a byte at a time
(slowloris), is dropped instead of holding a thread for ever; at most
:data:`MAX_CONNECTIONS` are served at once, and one more is answered ``503`` straight away by the accepting
thread (never queued behind the others), so a flood of idle connections costs bounded threads and memory and
``/healthz`` answers quickly either way. The endpoints take no input but the path, so there is nothing to
inject (docs/security.md).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import structlog
from prometheus_client import CONTENT_TYPE_LATEST

from mssql2pg.errors import ConfigError
from mssql2pg.observability.health import Health, Status
from mssql2pg.observability.metrics import Metrics

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9400
REQUEST_TIMEOUT = 10.0
"""Seconds a connection has to send its whole request line and headers."""
MAX_CONNECTIONS = 16
"""Connections served at once; Prometheus and the probes need a handful."""
_BUSY_BODY = b'{"error": "busy: too many connections"}'
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
    b"Content-Length: " + str(len(_BUSY_BODY)).encode() + b"\r\n\r\n" + _BUSY_BODY
)

log = structlog.get_logger(component="http")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    metrics: Metrics
    health: Health
    request_timeout: float

    def __init__(self, address: tuple[str, int], max_connections: int) -> None:
        super().__init__(address, _Handler)
        self._slots = threading.BoundedSemaphore(max_connections)
        self._lock = threading.Lock()
        self.active = 0

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve in a thread of its own while a slot is free; otherwise answer 503 here and close."""
        if not self._slots.acquire(blocking=False):
            self._refuse(request)
            return
        with self._lock:
            self.active += 1
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release()

    def _release(self) -> None:
        with self._lock:
            self.active -= 1
        self._slots.release()

    def _refuse(self, request: socket.socket) -> None:
        try:
            request.settimeout(1.0)  # a small answer into a fresh socket's buffer: never waits in practice
            request.sendall(_BUSY)
            request.shutdown(socket.SHUT_WR)
            with contextlib.suppress(OSError):
                request.recv(65536, socket.MSG_DONTWAIT)  # what the client sent, so closing does not reset
        except OSError:
            pass
        finally:
            self.shutdown_request(request)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "mssql2pg"

    def setup(self) -> None:
        super().setup()
        timeout = self.server.request_timeout
        self.connection.settimeout(timeout)  # per read: a silent client is dropped
        # ... and a deadline for the whole head: a per-read timeout never fires for a client sending a byte at a
        # time, so a timer shuts the socket down, which ends the blocked read at once
        self._deadline = threading.Timer(timeout, self._expire)
        self._deadline.daemon = True
        self._deadline.start()

    def _expire(self) -> None:
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def parse_request(self) -> bool:
        parsed = super().parse_request()
        self._deadline.cancel()  # the head is in: answering is up to us, and bounded
        return parsed

    def finish(self) -> None:
        self._deadline.cancel()
        super().finish()

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(HTTPStatus.OK, self.server.metrics.render(), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            alive, body = self.server.health.liveness()
            self._json(HTTPStatus.OK if alive else HTTPStatus.SERVICE_UNAVAILABLE, body)
        elif path == "/readyz":
            status, body = self.server.health.readiness()
            code = HTTPStatus.SERVICE_UNAVAILABLE if status is Status.UNHEALTHY else HTTPStatus.OK
            self._json(code, body)
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": "not found", "paths": ["/metrics", "/healthz", "/readyz"]})

    def _json(self, code: HTTPStatus, body: dict[str, Any]) -> None:
        self._send(code, json.dumps(body).encode(), "application/json")

    def _send(self, code: HTTPStatus, payload: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http request", client=self.client_address[0], request=format % args)


class ObservabilityServer:
    """Serves a :class:`Metrics` registry and a :class:`Health` model over HTTP."""

    def __init__(
        self,
        metrics: Metrics,
        health: Health,
        *,
        request_timeout: float = REQUEST_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self.metrics = metrics
        self.health = health
        self.request_timeout = request_timeout
        self.max_connections = max_connections
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def active_connections(self) -> int:
        """Connections being served now (each holds one of :attr:`max_connections` slots)."""
        return 0 if self._server is None else self._server.active

    @property
    def port(self) -> int | None:
        return None if self._server is None else int(self._server.server_address[1])

    def start(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> int:
        """Listen on ``host:port`` (0 = a free port) and return the bound port."""
        if self._server is not None:
            msg = "observability HTTP server already started"
            raise RuntimeError(msg)
        try:
            server = _Server((host, port), self.max_connections)
        except OSError as exc:
            msg = f"cannot listen on {host}:{port} for /metrics, /healthz and /readyz: {exc}"
            raise ConfigError(
                msg, hint="set http.port (or MSSQL2PG__HTTP__PORT) to a free port, or 0 to pick one"
            ) from exc
        server.metrics = self.metrics
        server.health = self.health
        server.request_timeout = self.request_timeout
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="mssql2pg-http", daemon=True)
        self._thread.start()
        bound = int(server.server_address[1])
        log.info("http server listening", host=host, port=bound, paths=["/metrics", "/healthz", "/readyz"])
        return bound

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> ObservabilityServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
