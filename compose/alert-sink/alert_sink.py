"""Alertmanager webhook receiver for the local Compose stack.

Alertmanager needs somewhere to send notifications; in a local stack the useful place is the log stream.
Each POSTed notification is printed as one JSON line on stdout, which Fluent Bit ships to VictoriaLogs next
to the pipeline's own logs (query: ``alert_sink:1``). ``GET /healthz`` answers 200 for the health check.
Standard library only, so it runs on the stock python image with nothing installed.
"""

from __future__ import annotations

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 1 << 20  # Alertmanager groups alerts; a megabyte is far above any real notification


class AlertSink(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self._reply(200 if self.path == "/healthz" else 404)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length <= 0 or length > MAX_BODY:
            self._reply(400)
            return
        body = self.rfile.read(length)
        try:
            notification = json.loads(body)
        except ValueError:
            self._reply(400)
            return
        line = {"alert_sink": 1, "message": _summary(notification), "path": self.path, "notification": notification}
        sys.stdout.write(json.dumps(line, separators=(",", ":")) + "\n")
        sys.stdout.flush()
        self._reply(200)

    def log_message(self, format: str, *args: object) -> None:
        """Silence the per-request access log: stdout carries only the notifications."""

    def _reply(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


def _summary(notification: object) -> str:
    if not isinstance(notification, dict):
        return "alertmanager notification"
    labels = notification.get("commonLabels") or notification.get("groupLabels") or {}
    name = labels.get("alertname", "?") if isinstance(labels, dict) else "?"
    alerts = notification.get("alerts")
    count = len(alerts) if isinstance(alerts, list) else 0
    return f"alert {name} {notification.get('status', '?')} ({count} alert(s))"


def main() -> None:
    port = int(os.environ.get("ALERT_SINK_PORT", "8080"))
    server = ThreadingHTTPServer(("0.0.0.0", port), AlertSink)  # noqa: S104 - inside its container
    sys.stdout.write(json.dumps({"alert_sink": 1, "message": f"alert sink listening on port {port}"}) + "\n")
    sys.stdout.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
