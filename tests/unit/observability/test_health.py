"""The health model: per-component and per-table statuses, the roll-up, and liveness."""

from __future__ import annotations

from mssql2pg.model import TableId
from mssql2pg.observability.health import Health, Status


class Tick:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_not_ready_until_both_components_were_checked() -> None:
    health = Health()
    status, body = health.readiness()
    assert status is Status.UNHEALTHY
    assert body["components"]["source"] == {"status": "unhealthy", "reason": "not checked yet"}
    health.set_component("source", "healthy")
    health.set_component("target", Status.HEALTHY)
    assert health.readiness()[0] is Status.HEALTHY


def test_worst_component_wins_and_tables_degrade_at_most() -> None:
    health = Health()
    health.set_component("source", "healthy")
    health.set_component("target", "healthy")
    health.set_table(TableId("dbo", "orders"), "unhealthy", "needs resync: capture instance dropped")
    status, body = health.readiness()
    assert status is Status.DEGRADED
    assert body["tables"]["dbo.orders"]["reason"] == "needs resync: capture instance dropped"
    health.set_component("target", "unhealthy", "connection refused; retrying for 620s")
    assert health.readiness()[0] is Status.UNHEALTHY
    health.set_component("target", "degraded", "retrying")
    health.remove_table("dbo.orders")
    assert health.readiness() == (
        Status.DEGRADED,
        {
            "status": "degraded",
            "components": {
                "source": {"status": "healthy", "reason": ""},
                "target": {"status": "degraded", "reason": "retrying"},
            },
            "tables": {},
        },
    )


def test_liveness_follows_the_heartbeat() -> None:
    clock = Tick()
    health = Health(liveness_timeout=30, clock=clock)
    assert health.liveness()[0] is True
    clock.now += 31
    alive, body = health.liveness()
    assert alive is False
    assert body["status"] == "stuck"
    health.beat()
    assert health.liveness()[0] is True
