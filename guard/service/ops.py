"""Operating unattended: alerts, metrics and the health endpoint.

Both alerts and metrics observe the guard's log events (structlog processors), so they report
exactly what the log says, and the sweep code knows nothing about them. ``alerting`` is the
one alert path: the daemon enters it through ``operations``, ``run --once`` and ``check``
enter it directly, so a breaker trip alerts the same way whoever swept. ``DailyReport`` sends
the day's report through the same alerter at ``alerts.daily_report_at`` on trading days.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from datetime import time as clock_time
from typing import TYPE_CHECKING, Protocol

import structlog

from guard.clock import EXCHANGE_TZ, Clock
from guard.errors import ConfigError
from guard.market.calendar import MarketCalendar
from guard.record.journal import Journal
from guard.record.log import add_observers, remove_observers
from guard.report.i18n import Language
from guard.report.summary import render, summarise
from guard.service.alerts import Alerter, AlertRules, Format
from guard.service.metrics import Metrics
from guard.service.ops_http import OpsServer

if TYPE_CHECKING:
    from guard.schedule.scheduler import SchedulerDriver
    from guard.service.health import Health
    from guard.sweep import SweepContext

__all__ = ["DailyReport", "Ops", "alerting", "operations"]


class Guarded(Protocol):
    """What ``operations`` reads of a daemon (not the class itself: no import cycle)."""

    ctx: SweepContext
    health: Health
    driver: SchedulerDriver | None


@dataclass
class Ops:
    alerter: Alerter
    metrics: Metrics
    server: OpsServer | None
    daily: DailyReport | None = None


class DailyReport:
    """The day's report as an alert (``daily_report``), once per trading day at ``at``
    (market time, from ``clock``), through the alerter; weekends and holidays (``calendar()``,
    read each time so a reload counts) send nothing.

    A guard that starts (or was down) after ``at`` still sends that day's report if it is
    less than ``grace`` late; later than that, it waits for the next trading day.
    """

    def __init__(self, at: clock_time, *, clock: Clock, calendar: Callable[[], MarketCalendar],
                 journal: Journal, alerter: Alerter, language: Language,
                 grace: timedelta = timedelta(hours=1)) -> None:
        self.at = at
        self.clock = clock
        self.calendar = calendar
        self.journal = journal
        self.alerter = alerter
        self.language: Language = language
        self.grace = grace
        self.sent_for: date | None = None
        self._log = structlog.get_logger("guard.report")

    def due(self, now: datetime) -> date | None:
        """The exchange day whose report is due at ``now``, if one is (and not sent yet)."""
        local = now.astimezone(EXCHANGE_TZ)
        day = local.date()
        if self.sent_for == day or not self.calendar().is_trading_day(day):
            return None
        when = datetime.combine(day, self.at, tzinfo=EXCHANGE_TZ)
        return day if when <= local < when + self.grace else None

    def tick(self) -> bool:
        """Send the report if it is due now; whether it was. A journal that cannot be read
        is logged (``report.failed``) and that day's report is not tried again."""
        day = self.due(self.clock())
        if day is None:
            return False
        self.sent_for = day
        try:
            summary = summarise(day, self.journal.cancels_on(day), self.journal.events_on(day))
        except Exception as exc:
            self._log.error("report.failed", day=day.isoformat(), error=str(exc))
            return False
        counts = summary.counts()
        self.alerter.report("daily_report", render(summary, self.language), **counts)
        self._log.info("report.issued", **counts)
        return True

    async def run(self, every_s: float = 1.0) -> None:
        """Look every ``every_s`` (real seconds) whether the report is due."""
        while True:
            try:
                self.tick()
            except Exception as exc:  # one bad tick must not end every later report
                self._log.error("report.failed", error=type(exc).__name__)
            await asyncio.sleep(every_s)


@asynccontextmanager
async def alerting(webhook: str | None, fmt: Format = "generic", *,
                   has_holiday_data: Callable[[int], bool] | None = None,
                   timeout_s: float = 5.0, retries: int = 3, backoff_s: float = 0.5,
                   remind_every_s: float = 3600.0, remind_tick_s: float = 30.0,
                   clock: Callable[[], float] = time.time,
                   flush_s: float = 2.0, language: Language = "en") -> AsyncIterator[Alerter]:
    """Turn the log events raised inside the block into webhook alerts (``AlertRules`` +
    ``Alerter``), and on the way out give what is queued or on the wire ``flush_s`` to go out.

    Delivery can never change the outcome of the block: a webhook that hangs, fails or
    cannot even be reached is logged (``alert.delivery_failed``, ``alert.undelivered``) and
    nothing is raised from here. ``has_holiday_data(year)`` lets a reload that adds the
    missing year resolve ``no_holiday_data``.
    """
    alerter = Alerter(webhook, fmt, timeout_s=timeout_s, retries=retries, backoff_s=backoff_s,
                      remind_every_s=remind_every_s, remind_tick_s=remind_tick_s, clock=clock,
                      language=language)
    rules = AlertRules(alerter, has_holiday_data)
    add_observers(rules)
    await alerter.start()
    try:
        yield alerter
    finally:
        try:
            await alerter.stop(flush_s)
        except Exception as exc:  # a delivery task that died: said in the log, never raised
            structlog.get_logger("guard.alerts").error("alert.stop_failed",
                                                       error=type(exc).__name__)
        remove_observers(rules)


def _has_holiday_data(guarded: Guarded) -> Callable[[int], bool]:
    """Whether ``year`` has holidays now: shipped data, or the operator listed some in
    rules.yaml ``holidays:`` (what the ``calendar.no_holiday_data`` warning asks for). Read
    through ``guarded.ctx`` each time, so a reload that adds them counts."""
    def check(year: int) -> bool:
        ctx = guarded.ctx
        return ctx.calendar.has_holiday_data(year) or any(
            d.year == year for d in ctx.rules.holidays)
    return check


def _next_runs(guarded: Guarded) -> Mapping[str, datetime]:
    return guarded.driver.next_fire_times() if guarded.driver is not None else {}


async def _listen(server: OpsServer, port: int) -> int:
    """Bind the metrics server, or a ``ConfigError`` naming the port (exit 1, one line)."""
    try:
        return await server.start(port)
    except (OSError, OverflowError) as exc:
        why = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(f"--metrics-port {port}: cannot listen on 127.0.0.1:{port}: {why}"
                          ) from None


@asynccontextmanager
async def operations(daemon: Guarded, metrics_port: int | None, *,
                     alert_timeout_s: float = 5.0, alert_retries: int = 3,
                     alert_backoff_s: float = 0.5, remind_every_s: float = 3600.0,
                     remind_tick_s: float = 30.0, alert_clock: Callable[[], float] = time.time,
                     flush_s: float = 2.0, report_tick_s: float = 1.0) -> AsyncIterator[Ops]:
    """Alert delivery (``alerting``), metrics, the daily report (``DailyReport``) and (with a
    port; 0 picks one) the /metrics + /healthz server, around a daemon.

    The webhook, its format, the language and the report's time come from rules.yaml
    ``alerts:`` as loaded at start (a reload does not move them). On exit, alerts still queued
    get ``flush_s`` to go out. A port that cannot be bound is a ``ConfigError``.
    """
    alerts = daemon.ctx.rules.alerts
    language: Language = alerts.language if alerts else "en"
    metrics = Metrics()
    metrics.declare_heartbeats(r.name for r in daemon.ctx.rules.rules if r.heartbeat is not None)
    add_observers(metrics)
    try:
        async with alerting(alerts.webhook if alerts else None,
                            alerts.format if alerts else "generic",
                            has_holiday_data=_has_holiday_data(daemon),
                            timeout_s=alert_timeout_s, retries=alert_retries,
                            backoff_s=alert_backoff_s, remind_every_s=remind_every_s,
                            remind_tick_s=remind_tick_s, clock=alert_clock,
                            flush_s=flush_s, language=language) as alerter:
            server: OpsServer | None = None
            daily: DailyReport | None = None
            reporting: asyncio.Task[None] | None = None
            try:
                if alerts is not None and alerts.daily_report_at is not None:
                    daily = DailyReport(alerts.daily_report_at, clock=daemon.ctx.clock,
                                        calendar=lambda: daemon.ctx.calendar,
                                        journal=daemon.ctx.journal, alerter=alerter,
                                        language=language)
                    reporting = asyncio.create_task(daily.run(report_tick_s),
                                                    name="daily-report")
                if metrics_port is not None:
                    server = OpsServer(metrics, lambda: asdict(daemon.health),
                                       lambda: _next_runs(daemon))
                    port = await _listen(server, metrics_port)
                    structlog.get_logger("guard").info(
                        "ops.listening", url=f"http://127.0.0.1:{port}",
                        paths=["/metrics", "/healthz"])
                yield Ops(alerter, metrics, server, daily)
            finally:
                if reporting is not None:
                    reporting.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await reporting
                if server is not None:
                    await server.stop()
    finally:
        remove_observers(metrics)
