"""Make the Prometheus/Alertmanager fixtures available here (the lead registers them project-wide)."""

from tests.fixtures.prometheus import alertmanager, prometheus

__all__ = ["alertmanager", "prometheus"]
