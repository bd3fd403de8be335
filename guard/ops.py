"""Operating unattended: alerts, metrics and the health endpoint, wired around a daemon.

Both alerts and metrics observe the guard's log events (structlog processors), so they report
exactly what the log says, and the sweep code knows nothing about them.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
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


def _has_holiday_data(daemon: Daemon) -> Callable[[int], bool]:
    """Whether ``year`` has holidays now: shipped data, or the operator listed some in
    rules.yaml ``holidays:`` (what the ``calendar.no_holiday_data`` warning asks for)."""
    def check(year: int) -> bool:
        ctx = daemon.ctx
        return ctx.calendar.has_holiday_data(year) or any(
            d.year == year for d in ctx.rules.holidays)
    return check


@asynccontextmanager
async def operations(daemon: Daemon, metrics_port: int | None, *,
                     alert_timeout_s: float = 5.0, alert_retries: int = 3,
                     alert_backoff_s: float = 0.5, remind_every_s: float = 3600.0,
                     remind_tick_s: float = 30.0, alert_clock: Callable[[], float] = time.time,
                     flush_s: float = 2.0) -> AsyncIterator[Ops]:
    """Start alert delivery and (with a port; 0 picks one) the /metrics + /healthz server.

    The webhook comes from rules.yaml ``alerts:`` as loaded at start (a reload does not move
    it). On exit, alerts still queued get ``flush_s`` to go out.
    """
    alerts = daemon.ctx.rules.alerts
    alerter = Alerter(alerts.webhook if alerts else None, alerts.format if alerts else "generic",
                      timeout_s=alert_timeout_s, retries=alert_retries,
                      backoff_s=alert_backoff_s, remind_every_s=remind_every_s,
                      remind_tick_s=remind_tick_s, clock=alert_clock)
    metrics = Metrics()
    rules = AlertRules(alerter, _has_holiday_data(daemon))
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
        await alerter.stop(flush_s)
        remove_observers(metrics, rules)
