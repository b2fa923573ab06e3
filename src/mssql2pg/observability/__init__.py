"""Logs, metrics and health for the pipeline: the pieces the runner wires together.

- :mod:`.logging`: ``configure_logging`` (structlog JSON / console) with secret redaction.
- :mod:`.metrics`: ``Metrics`` (every metric name in one place) and ``exported_metric_names``.
- :mod:`.health`: ``Health`` (healthy / degraded / unhealthy for source, target and each table).
- :mod:`.http`: ``ObservabilityServer`` serving ``/metrics``, ``/healthz`` and ``/readyz``.
"""
