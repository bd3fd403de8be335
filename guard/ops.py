"""Operating unattended: alerts, metrics and the health endpoint, wired around a daemon.

Both alerts and metrics observe the guard's log events (structlog processors), so they report
exactly what the log says, and the sweep code knows nothing about them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import structlog

from guard.ops_http import OpsServer
from guard.record.alerts import Alerter, AlertRules
from guard.record.log import add_observers, remove_observers
from guard.record.metrics import Metrics

if TYPE_CHECKING:
    from guard.daemon import Daemon

__all__ = ["Ops", "operations"]


@dataclass
class Ops:
    alerter: Alerter
    metrics: Metrics
    server: OpsServer | None


@asynccontextmanager
async def operations(daemon: Daemon, metrics_port: int | None,
                     alert_timeout_s: float = 5.0) -> AsyncIterator[Ops]:
    """Start alert delivery and (with a port) the /metrics + /healthz server."""
    alerts = daemon.ctx.rules.alerts
    alerter = Alerter(alerts.webhook if alerts else None, alerts.format if alerts else "generic",
                      timeout_s=alert_timeout_s)
    metrics = Metrics()
    rules = AlertRules(alerter)
    add_observers(metrics, rules)
    await alerter.start()
    server: OpsServer | None = None
    try:
        if metrics_port is not None:
            server = OpsServer(
                metrics, lambda: asdict(daemon.health),
                lambda: daemon.driver.next_fire_times() if daemon.driver else {})
            port = await server.start(metrics_port)
            structlog.get_logger("guard").info("ops.listening", url=f"http://127.0.0.1:{port}",
                                               paths=["/metrics", "/healthz"])
        yield Ops(alerter, metrics, server)
    finally:
        if server is not None:
            await server.stop()
        await alerter.stop()
        remove_observers(metrics, rules)
