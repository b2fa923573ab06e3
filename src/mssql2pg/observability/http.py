"""The pipeline's small HTTP server: ``/metrics``, ``/healthz``, ``/readyz``.

A stdlib ``ThreadingHTTPServer`` in a daemon thread: no framework, nothing to configure, and a slow scrape
never blocks the replication loop. Host and port come from the config (``http.host``, ``http.port``; the
defaults below); port 0 picks a free port and :meth:`ObservabilityServer.start` returns the bound one.
"""

from __future__ import annotations

import json
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

log = structlog.get_logger(component="http")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    metrics: Metrics
    health: Health


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "mssql2pg"

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

    def __init__(self, metrics: Metrics, health: Health) -> None:
        self.metrics = metrics
        self.health = health
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int | None:
        return None if self._server is None else int(self._server.server_address[1])

    def start(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> int:
        """Listen on ``host:port`` (0 = a free port) and return the bound port."""
        if self._server is not None:
            msg = "observability HTTP server already started"
            raise RuntimeError(msg)
        try:
            server = _Server((host, port), _Handler)
        except OSError as exc:
            msg = f"cannot listen on {host}:{port} for /metrics, /healthz and /readyz: {exc}"
            raise ConfigError(
                msg, hint="set http.port (or MSSQL2PG__HTTP__PORT) to a free port, or 0 to pick one"
            ) from exc
        server.metrics = self.metrics
        server.health = self.health
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
