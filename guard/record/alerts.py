"""Alerts: reach a person through a webhook when the guard needs one, and say when it is over.

``AlertRules`` is a structlog processor that maps the guard's own events to conditions that
fire and resolve (re-authentication required, an unconfirmed cancel, a tripped circuit breaker,
a failed sweep, a missed pre-close sweep, a year with no holiday data). ``Alerter`` keeps one
alert per condition until it clears, with a reminder interval, and delivers in the background:
a bounded timeout and a few retries, so a webhook that hangs or fails never delays a sweep.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit, urlunsplit

import httpx
import structlog

from guard.record.redact import Redactor, secrets_registry

__all__ = ["Alert", "AlertRules", "Alerter", "render_body"]

Format = Literal["generic", "slack", "telegram"]
State = Literal["firing", "resolved", "reminder"]


@dataclass(frozen=True)
class Alert:
    condition: str
    state: State
    summary: str
    details: dict[str, Any]
    at: float


def render_body(alert: Alert, fmt: Format, url: str) -> dict[str, Any]:
    """The JSON body for one alert in the webhook's format."""
    icon = {"firing": "ALERT", "reminder": "STILL FIRING", "resolved": "RESOLVED"}[alert.state]
    text = f"[ssi-guard {icon}] {alert.condition}: {alert.summary}"
    if fmt == "slack":
        return {"text": text}
    if fmt == "telegram":
        chat = parse_qs(urlsplit(url).query).get("chat_id", [""])[0]
        return {"chat_id": chat, "text": text}
    return {"source": "ssi-guard", "host": socket.gethostname(), "condition": alert.condition,
            "state": alert.state, "summary": alert.summary, "details": alert.details,
            "at": alert.at}


class Alerter:
    """Deduplicates conditions and delivers them from a background task on the event loop."""

    def __init__(self, url: str | None, fmt: Format = "generic", *, timeout_s: float = 5.0,
                 retries: int = 3, remind_every_s: float = 3600.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.url = url
        self.fmt = fmt
        self.timeout_s = timeout_s
        self.retries = retries
        self.remind_every_s = remind_every_s
        self._clock = clock
        self._active: dict[str, float] = {}  # condition -> last sent
        self._queue: asyncio.Queue[Alert] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._worker: asyncio.Task[None] | None = None
        self.sent: list[Alert] = []  # what was delivered (for status and tests)
        self._log = structlog.get_logger("guard.alerts")
        if url:
            secrets_registry.add(url)  # a webhook URL often carries its token
            parts = urlsplit(url)
            if parts.query:
                secrets_registry.add(urlunsplit(parts._replace(query="")))

    @property
    def active(self) -> dict[str, float]:
        return dict(self._active)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue(maxsize=1000)
        self._worker = asyncio.create_task(self._deliver_forever())

    async def stop(self, flush_s: float = 2.0) -> None:
        if self._worker is None:
            return
        if self._queue is not None and not self._queue.empty():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), timeout=flush_s)
        self._worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._worker
        self._worker = None

    def fire(self, condition: str, summary: str, **details: Any) -> None:
        now = self._clock()
        last = self._active.get(condition)
        if last is not None and now - last < self.remind_every_s:
            return
        state: State = "firing" if last is None else "reminder"
        self._active[condition] = now
        self._enqueue(Alert(condition, state, summary, details, now))

    def resolve(self, condition: str, summary: str = "cleared") -> None:
        if self._active.pop(condition, None) is not None:
            self._enqueue(Alert(condition, "resolved", summary, {}, self._clock()))

    def _enqueue(self, alert: Alert) -> None:
        alert = Alert(alert.condition, alert.state, Redactor().scrub(alert.summary),
                      alert.details, alert.at)
        if self._queue is None or self._loop is None or not self.url:
            self.sent.append(alert)  # nowhere to deliver: still visible to status and tests
            return
        def put() -> None:
            assert self._queue is not None
            try:
                self._queue.put_nowait(alert)
            except asyncio.QueueFull:
                self._log.error("alert.dropped", condition=alert.condition, reason="queue full")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            put()
        else:
            self._loop.call_soon_threadsafe(put)

    async def _deliver_forever(self) -> None:
        assert self._queue is not None
        async with httpx.AsyncClient(timeout=self.timeout_s) as client:
            while True:
                alert = await self._queue.get()
                try:
                    await self._deliver(client, alert)
                finally:
                    self._queue.task_done()

    async def _deliver(self, client: httpx.AsyncClient, alert: Alert) -> None:
        assert self.url
        body = render_body(alert, self.fmt, self.url)
        for attempt in range(1, self.retries + 1):
            try:
                reply = await client.post(self.url, content=json.dumps(body, default=str),
                                          headers={"Content-Type": "application/json"})
                if reply.status_code < 300:
                    self.sent.append(alert)
                    self._log.info("alert.sent", condition=alert.condition, state=alert.state)
                    return
                error = f"HTTP {reply.status_code}"
            except httpx.HTTPError as exc:
                error = type(exc).__name__
            self._log.warning("alert.delivery_failed", condition=alert.condition,
                              attempt=attempt, error=error)
            await asyncio.sleep(min(2.0, 0.25 * 2 ** attempt))
        self._log.error("alert.undelivered", condition=alert.condition, state=alert.state)


class AlertRules:
    """structlog processor: the guard's events -> conditions fired or resolved."""

    def __init__(self, alerter: Alerter) -> None:
        self.alerter = alerter

    def __call__(self, logger: Any, name: str,
                 event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        kind = event.get("event")
        a = self.alerter
        if kind == "auth.reauth_required":
            a.fire("reauth_required", "SSI session lost: run `ssi-guard login` on the host",
                   reason=event.get("reason"))
        elif kind == "auth.recovered":
            a.resolve("reauth_required", "session restored")
        elif kind == "cancel.failed" and event.get("outcome") == "unconfirmed":
            a.fire("unconfirmed_cancel", f"cancel of order {event.get('order_id')} "
                   f"({event.get('account')} {event.get('symbol')}) not confirmed",
                   order_id=event.get("order_id"), account=event.get("account"),
                   rule=event.get("rule"))
        elif kind == "breaker.tripped":
            a.fire("circuit_breaker", f"{event.get('matches')} matches > limit "
                   f"{event.get('limit')}: nothing cancelled; by rule {event.get('rules')}",
                   matches=event.get("matches"), limit=event.get("limit"),
                   rules=event.get("rules"))
        elif kind in ("sweep.failed", "sweep.crashed"):
            a.fire("sweep_failed", f"sweep {event.get('job')} failed: {event.get('error')}",
                   job=event.get("job"))
        elif kind == "schedule.missed" and event.get("critical"):
            a.fire("missed_preclose", f"scheduled sweep {event.get('job')} missed "
                   f"(was due {event.get('scheduled')})", job=event.get("job"))
        elif kind == "calendar.no_holiday_data":
            a.fire("no_holiday_data", f"no exchange holiday list for {event.get('year')}: add "
                   "it to rules.yaml `holidays:`", year=event.get("year"))
        elif kind == "sweep.finished":
            result = event.get("result")
            if result in ("ok", "nothing_to_do", "dry_run"):
                a.resolve("sweep_failed", "sweeps succeed again")
                if not event.get("unconfirmed"):
                    a.resolve("unconfirmed_cancel", "a later sweep confirmed every cancel")
                a.resolve("circuit_breaker", "matches back under the limit")
                if str(event.get("trigger", "")).startswith("pre-close"):
                    a.resolve("missed_preclose", "a pre-close sweep ran")
            elif result == "incomplete":
                a.fire("sweep_failed", "sweep finished incomplete: some cancels are not final",
                       trigger=event.get("trigger"))
        return event
