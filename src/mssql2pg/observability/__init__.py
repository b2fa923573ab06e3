"""Logs, metrics and health for the pipeline: the pieces the runner wires together.

- :mod:`.logging`: ``configure_logging`` (structlog JSON / console) with secret redaction (``register_secret``).
- :mod:`.metrics`: ``Metrics`` (every metric name in one place) and ``exported_metric_names``.
- :mod:`.health`: ``Health`` (healthy / degraded / unhealthy for source, target and each table).
- :mod:`.http`: ``ObservabilityServer`` serving ``/metrics``, ``/healthz`` and ``/readyz``.
- :mod:`.runtime`: ``Observability``, the one object the runner holds (metrics + health + server).
"""

from mssql2pg.observability.health import Health, Status
from mssql2pg.observability.http import DEFAULT_HOST, DEFAULT_PORT, ObservabilityServer
from mssql2pg.observability.logging import configure_logging, get_logger
from mssql2pg.observability.metrics import Metrics, exported_metric_names
from mssql2pg.observability.runtime import Observability
from mssql2pg.redact import register_secret

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "Health",
    "Metrics",
    "Observability",
    "ObservabilityServer",
    "Status",
    "configure_logging",
    "exported_metric_names",
    "get_logger",
    "register_secret",
]
