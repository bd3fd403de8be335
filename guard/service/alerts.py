"""Alerts: reach a person through a webhook when the guard needs one, and say when it is over.

``AlertRules`` is a structlog processor that maps the guard's own events to conditions that
fire and resolve (re-authentication required, an unconfirmed cancel, a tripped circuit breaker,
a failed sweep, a missed pre-close sweep, a year with no holiday data, a failed rules reload,
a journal that cannot be written, a heartbeat rule whose strategy went quiet). ``Alerter`` keeps
one alert per condition (per rule for heartbeats) until it clears, with a reminder interval,
and delivers in the background: a bounded timeout and a few retries, so a webhook that hangs
or fails never delays a sweep, and no failure of one alert stops the delivery of the next.
Every text a person reads is in ``alerts.language`` (``guard.report.i18n``); condition names
and the JSON keys stay English.
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

from guard.clock import exchange_time
from guard.record.log import Observer
from guard.record.redact import Redactor, secrets_registry
from guard.report import i18n
from guard.report.i18n import Language

__all__ = ["Alert", "AlertRules", "Alerter", "render_body"]

Format = Literal["generic", "slack", "telegram"]
State = Literal["firing", "resolved", "reminder", "report"]


@dataclass(frozen=True)
class Alert:
    """One message to the webhook. ``subject`` tells apart alerts of one condition that fire
    and clear on their own (``heartbeat_lost`` of two rules); ``report`` is a one-off."""

    condition: str
    state: State
    summary: str
    details: dict[str, Any]
    at: float
    subject: str | None = None


def _key(condition: str, subject: str | None) -> str:
    return condition if subject is None else f"{condition}/{subject}"


_SECRET_PART_LEN = 12  # path segments and query values this long may be tokens


def _register_url_secrets(url: str) -> None:
    """Mask a webhook URL's token wherever it may turn up: the whole URL, the URL without its
    query, its path, and each long path segment or query value (Telegram's ``bot<token>``,
    Slack's ``/services/T../B../<secret>``), so a client that rewrites the URL cannot leak it."""
    secrets_registry.add(url)
    try:
        parts = urlsplit(url)
    except ValueError:  # not even splittable: the whole URL is masked, and it cannot be sent
        return
    secrets_registry.add(urlunsplit(parts._replace(query="")))
    if len(parts.path) >= _SECRET_PART_LEN:
        secrets_registry.add(parts.path)
    secrets_registry.add(*(seg for seg in parts.path.split("/") if len(seg) >= _SECRET_PART_LEN))
    for values in parse_qs(parts.query).values():
        secrets_registry.add(*(v for v in values if len(v) >= _SECRET_PART_LEN))
    if parts.password:
        secrets_registry.add(parts.password)


def render_body(alert: Alert, fmt: Format, url: str,
                language: Language = "en") -> dict[str, Any]:
    """The JSON body for one alert in the webhook's format; the chat text in ``language``."""
    icon = i18n.state(alert.state, language)
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
    """Deduplicates conditions and delivers them from a background task on the event loop.

    A firing condition is reminded every ``remind_every_s`` (by ``clock``) while it lasts,
    whether or not its event recurs: some (no holiday data, a missed pre-close sweep) are
    logged once. ``remind_tick_s`` is how often (real seconds) that is looked at.
    """

    def __init__(self, url: str | None, fmt: Format = "generic", *, timeout_s: float = 5.0,
                 retries: int = 3, backoff_s: float = 0.5, remind_every_s: float = 3600.0,
                 remind_tick_s: float = 30.0,
                 clock: Callable[[], float] = time.time, language: Language = "en") -> None:
        self.url = url
        self.fmt = fmt
        self.language: Language = language
        self.timeout_s = timeout_s
        self.retries = max(1, retries)
        self.backoff_s = backoff_s
        self.remind_every_s = remind_every_s
        self.remind_tick_s = remind_tick_s
        self._clock = clock
        self._active: dict[str, float] = {}  # condition -> last sent
        self._latest: dict[str, Alert] = {}  # condition -> its latest summary and details
        self._queue: asyncio.Queue[Alert] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._worker: asyncio.Task[None] | None = None
        self._reminder: asyncio.Task[None] | None = None
        self.sent: list[Alert] = []  # what was delivered (for status and tests)
        self._log = structlog.get_logger("guard.alerts")
        if url:
            _register_url_secrets(url)

    @property
    def active(self) -> dict[str, float]:
        return dict(self._active)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue(maxsize=1000)
        self._worker = asyncio.create_task(self._deliver_forever(), name="alert-delivery")
        self._reminder = asyncio.create_task(self._remind_forever(), name="alert-reminder")

    async def stop(self, flush_s: float = 2.0) -> None:
        """Deliver what is queued or on the wire (a resolution at shutdown), for at most
        ``flush_s``; then stop. Alerts raised after this are kept in ``sent`` only."""
        worker, reminder = self._worker, self._reminder
        if worker is None:
            return
        self._worker = self._reminder = None
        if reminder is not None:
            await self._end(reminder)
        if self._queue is not None and not worker.done():
            # join(), not empty(): an alert taken off the queue may still be on the wire.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), timeout=flush_s)
        await self._end(worker)
        self._queue = None
        self._loop = None

    async def _end(self, task: asyncio.Task[None]) -> None:
        """Cancel and reap a background task; whatever it died of is logged, never raised
        (a traceback at SIGTERM helps nobody, and the exit code must stay the daemon's)."""
        task.cancel()
        [outcome] = await asyncio.gather(task, return_exceptions=True)
        if isinstance(outcome, Exception):
            self._log.error("alert.worker_failed", task=task.get_name(),
                            error=type(outcome).__name__)

    def fire(self, condition: str, summary: str, *, subject: str | None = None,
             **details: Any) -> None:
        now = self._clock()
        key = _key(condition, subject)
        last = self._active.get(key)
        self._latest[key] = Alert(condition, "reminder", summary, details, now, subject)
        if last is not None and now - last < self.remind_every_s:
            return
        state: State = "firing" if last is None else "reminder"
        self._active[key] = now
        self._enqueue(Alert(condition, state, summary, details, now, subject))

    def resolve(self, condition: str, summary: str | None = None, *,
                subject: str | None = None) -> None:
        key = _key(condition, subject)
        self._latest.pop(key, None)
        if self._active.pop(key, None) is not None:
            said = summary if summary is not None else i18n.text("cleared", self.language)
            self._enqueue(Alert(condition, "resolved", said, {}, self._clock(), subject))

    def report(self, condition: str, summary: str, **details: Any) -> None:
        """A one-off message (the day's report): no firing state to keep, no reminder, no
        resolution."""
        self._enqueue(Alert(condition, "report", summary, details, self._clock()))

    def remind_due(self) -> None:
        """Send a reminder for every condition still firing ``remind_every_s`` after its
        last alert (the latest summary seen for it)."""
        now = self._clock()
        for key, last in list(self._active.items()):
            latest = self._latest.get(key)
            if latest is not None and now - last >= self.remind_every_s:
                self._active[key] = now
                self._enqueue(Alert(latest.condition, "reminder", latest.summary,
                                    latest.details, now, latest.subject))

    async def _remind_forever(self) -> None:
        while True:
            await asyncio.sleep(self.remind_tick_s)
            try:
                self.remind_due()
            except Exception as exc:  # one bad tick must not end every later reminder
                self._log.error("alert.remind_failed", error=type(exc).__name__)

    def _enqueue(self, alert: Alert) -> None:
        redactor = Redactor()
        details = dict(redactor(None, "", dict(alert.details)))
        alert = Alert(alert.condition, alert.state, redactor.scrub(alert.summary), details,
                      alert.at, alert.subject)
        queue, loop = self._queue, self._loop
        if queue is None or loop is None or not self.url or loop.is_closed():
            self.sent.append(alert)  # nowhere to deliver: still visible to status and tests
            return

        def put() -> None:
            try:
                queue.put_nowait(alert)
            except asyncio.QueueFull:
                self._log.error("alert.dropped", condition=alert.condition, reason="queue full")

        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            put()
        else:
            try:
                loop.call_soon_threadsafe(put)
            except RuntimeError:  # the loop closed in between: never fail the caller's log call
                self.sent.append(alert)

    async def _deliver_forever(self) -> None:
        """Deliver alerts one by one, for as long as the guard runs. Whatever one alert does
        (a URL httpx refuses, a body that cannot be serialised, a client that cannot be
        built) costs that alert only: it is logged ``alert.undelivered`` and the next goes."""
        queue = self._queue
        assert queue is not None
        client: httpx.AsyncClient | None = None
        try:
            while True:
                alert = await queue.get()
                try:
                    if client is None:
                        client = httpx.AsyncClient(timeout=self.timeout_s)
                    await self._deliver(client, alert)
                except Exception as exc:
                    self._log.error("alert.undelivered", condition=alert.condition,
                                    state=alert.state, attempts=0,
                                    error=type(exc).__name__)  # never str(exc): the URL
                finally:
                    queue.task_done()
        finally:
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose()

    async def _deliver(self, client: httpx.AsyncClient, alert: Alert) -> None:
        """POST one alert, with retries; logs ``alert.sent`` or, after the last try,
        ``alert.undelivered``. Raises only if the body cannot be made (nothing to retry)."""
        url = self.url
        assert url
        content = json.dumps(render_body(alert, self.fmt, url, self.language), default=str)
        error = "unknown"
        for attempt in range(1, self.retries + 1):
            try:
                reply = await client.post(url, content=content,
                                          headers={"Content-Type": "application/json"})
                if reply.status_code < 300:
                    self.sent.append(alert)
                    self._log.info("alert.sent", condition=alert.condition, state=alert.state)
                    return
                error = f"HTTP {reply.status_code}"
            except Exception as exc:  # httpx.InvalidURL is no HTTPError; anything may come
                error = type(exc).__name__  # never str(exc): it may quote the URL
            self._log.warning("alert.delivery_failed", condition=alert.condition,
                              state=alert.state, attempt=attempt, error=error)
            if attempt < self.retries:
                await asyncio.sleep(min(2.0, self.backoff_s * 2 ** (attempt - 1)))
        self._log.error("alert.undelivered", condition=alert.condition, state=alert.state,
                        attempts=self.retries, error=error)


def _when(iso: Any) -> str:
    """An ISO instant as exchange time a person reads (``2026-11-23 10:02:03``); text that is
    not one, as it is."""
    return exchange_time(iso, "%Y-%m-%d %H:%M:%S")


class AlertRules(Observer):
    """structlog processor: the guard's events -> conditions fired or resolved.

    ``has_holiday_data(year)`` lets a reload that adds the missing year's holidays resolve
    the ``no_holiday_data`` condition. Summaries are in the alerter's language. As an
    ``Observer`` it can never break the log call (and so the sweep) it watches.
    """

    def __init__(self, alerter: Alerter,
                 has_holiday_data: Callable[[int], bool] | None = None) -> None:
        self.alerter = alerter
        self.has_holiday_data = has_holiday_data
        self._no_data_years: set[int] = set()

    def _say(self, key: str, **fields: Any) -> str:
        return i18n.text(key, self.alerter.language, **fields)

    def observe(self, event: MutableMapping[str, Any]) -> None:
        kind = event.get("event")
        a = self.alerter
        say = self._say
        if kind == "auth.reauth_required":
            a.fire("reauth_required", say("reauth_required", reason=event.get("reason")),
                   reason=event.get("reason"))
        elif kind == "auth.recovered":
            a.resolve("reauth_required", say("reauth_required.resolved"))
        elif kind == "cancel.failed" and event.get("outcome") == "unconfirmed":
            a.fire("unconfirmed_cancel", say(
                "unconfirmed_cancel", order_id=event.get("order_id"),
                account=event.get("account"), symbol=event.get("symbol"),
                rule=event.get("rule"), detail=event.get("detail")),
                order_id=event.get("order_id"), account=event.get("account"),
                symbol=event.get("symbol"), rule=event.get("rule"))
        elif kind == "breaker.tripped":
            rules = event.get("rules") or {}
            by_rule = ", ".join(f"{r}={n}" for r, n in dict(rules).items())
            extra: dict[str, Any] = {}
            if event.get("late"):  # some accounts had started: say how many cancels went
                extra = {"started": event.get("started"),
                         "accounts_started": list(event.get("accounts_started") or ())}
                words = {"matches": event.get("matches"), "limit": event.get("limit"),
                         "started": extra["started"], "by_rule": by_rule,
                         "accounts": ", ".join(str(x) for x in extra["accounts_started"])}
                if event.get("carried"):  # ...on top of an earlier late trip today
                    extra["carried"] = event.get("carried")
                    text = say("circuit_breaker.late_carried", carried=extra["carried"],
                               **words)
                else:
                    text = say("circuit_breaker.late", **words)
            elif event.get("carried"):  # with what an earlier late trip sent today
                extra = {"carried": event.get("carried")}
                text = say("circuit_breaker.carried", matches=event.get("matches"),
                           carried=extra["carried"], limit=event.get("limit"), by_rule=by_rule)
            else:
                text = say("circuit_breaker", matches=event.get("matches"),
                           limit=event.get("limit"), by_rule=by_rule)
            a.fire("circuit_breaker", text, matches=event.get("matches"),
                   limit=event.get("limit"), rules=dict(rules), **extra)
        elif kind in ("sweep.failed", "sweep.crashed"):
            a.fire("sweep_failed", say("sweep_failed", job=event.get("job"),
                                       error=event.get("error")),
                   job=event.get("job"), error=event.get("error"))
        elif kind == "schedule.missed" and event.get("critical"):
            a.fire("missed_preclose", say("missed_preclose", job=event.get("job"),
                                          scheduled=event.get("scheduled")),
                   job=event.get("job"), scheduled=event.get("scheduled"))
        elif kind == "calendar.no_holiday_data":
            year = event.get("year")
            if isinstance(year, int):
                self._no_data_years.add(year)
            a.fire("no_holiday_data", say("no_holiday_data", year=year), year=year)
        elif kind == "rules.reload_failed":
            self._reload_failed(event)
        elif kind == "rules.reloaded":
            a.resolve("reload_failed", say("reload_failed.resolved", path=event.get("path")))
            self._check_holidays_again()
        elif kind == "journal.write_failed":
            a.fire("journal_failed", say("journal_failed", path=event.get("path"),
                                         error=event.get("error")),
                   path=event.get("path"), error=event.get("error"))
        elif kind == "heartbeat.lost":
            self._heartbeat_lost(event)
        elif kind == "heartbeat.resumed":
            rule = str(event.get("rule"))
            a.resolve("heartbeat_lost", say("heartbeat_lost.resolved", rule=rule,
                                            lost_for=i18n.duration(event.get("lost_for_s"),
                                                                   a.language)),
                      subject=rule)
        elif kind == "sweep.finished":
            self._sweep_finished(event)

    def _heartbeat_lost(self, event: MutableMapping[str, Any]) -> None:
        """One alert per heartbeat rule: the strategy behind it stopped touching its file (or
        the file is gone), so the rule now pulls that strategy's orders."""
        rule = str(event.get("rule"))
        age = event.get("age_s")
        fields = {"rule": rule, "file": event.get("file"),
                  "stale_since": _when(event.get("stale_since"))}
        if age is None:
            summary = self._say("heartbeat_lost.missing", **fields)
        else:
            summary = self._say("heartbeat_lost", age=i18n.duration(age, self.alerter.language),
                                **fields)
        self.alerter.fire("heartbeat_lost", summary, subject=rule, rule=rule,
                          file=event.get("file"), stale_since=event.get("stale_since"),
                          age_s=age)

    def _reload_failed(self, event: MutableMapping[str, Any]) -> None:
        """The guard runs on, on the old rules: say which file and what is wrong with it."""
        raw = event.get("problems")
        problems = [str(p) for p in raw] if isinstance(raw, list | tuple) else []
        path = event.get("path")
        first = problems[0] if problems else self._say("reload_failed.see_log")
        more = (self._say("reload_failed.more", n=len(problems) - 1) if len(problems) > 1
                else "")
        self.alerter.fire("reload_failed", self._say("reload_failed", path=path, first=first,
                                                     more=more),
                          path=path, problems=problems)

    def _check_holidays_again(self) -> None:
        if self.has_holiday_data is None or not self._no_data_years:
            return
        if all(self.has_holiday_data(y) for y in self._no_data_years):
            years = ", ".join(str(y) for y in sorted(self._no_data_years))
            self._no_data_years.clear()
            self.alerter.resolve("no_holiday_data",
                                 self._say("no_holiday_data.resolved", years=years))

    def _sweep_finished(self, event: MutableMapping[str, Any]) -> None:
        a = self.alerter
        say = self._say
        result = event.get("result")
        trigger = str(event.get("trigger", ""))
        raw_unread = event.get("unread_accounts") or []
        unread = [raw_unread] if isinstance(raw_unread, str) else list(raw_unread)
        if result in ("ok", "nothing_to_do", "dry_run"):
            a.resolve("sweep_failed", say("sweep_failed.resolved"))
            if not event.get("unconfirmed"):
                a.resolve("unconfirmed_cancel", say("unconfirmed_cancel.resolved"))
            a.resolve("circuit_breaker", say("circuit_breaker.resolved"))
            a.resolve("journal_failed", say("journal_failed.resolved"))
            if trigger.startswith(("pre-close:", "at:")):  # the critical, fixed-time jobs
                a.resolve("missed_preclose", say("missed_preclose.resolved", trigger=trigger))
        elif result == "incomplete" or unread:
            # (a sweep blocked by the breaker can also have books it could not read: those
            # accounts were not guarded at all, which the breaker alert does not say)
            problems = [say(f"problem.{k}", n=event.get(k)) for k in ("unconfirmed", "failed")
                        if event.get(k)]
            if unread:
                problems.append(say("problem.unread", accounts=", ".join(map(str, unread))))
            if event.get("deferred"):
                problems.append(say("problem.deferred", n=event.get("deferred")))
            if event.get("paused"):
                problems.append(say("problem.paused", n=event.get("paused")))
            a.fire("sweep_failed", say("sweep_incomplete", trigger=trigger,
                                       result=i18n.result(str(result), a.language),
                                       problems="; ".join(problems) or say("problem.none")),
                   trigger=trigger, unread_accounts=unread,
                   unconfirmed=event.get("unconfirmed"), failed=event.get("failed"))
