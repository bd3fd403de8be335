"""Alerts: every condition is tripped through the simulator and the real daemon, and
the webhook receiver (a real HTTP server on loopback) is asked exactly what it got.

One alert per condition until it clears, a reminder after ``remind_every_s``, a resolution
when the guard recovers; formats generic, Slack and Telegram.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from apscheduler.triggers.base import BaseTrigger
from kit import ACCT, BOOK, OTHER, STALE
from kit.ops import Receiver, job, recording, rules_yaml, running_guard, until

from guard.clock import EXCHANGE_TZ, FakeClock
from guard.schedule.scheduler import SchedulerDriver
from guard.schedule.triggers import JobSpec
from guard.service.alerts import Alert, Alerter, AlertRules, render_body
from guard.simulator.control import Simulator
from guard.simulator.faults import Fault


def only(bodies: list[dict[str, Any]], condition: str) -> list[dict[str, Any]]:
    return [b for b in bodies if b["condition"] == condition]


# ---- the Alerter on its own: dedup, reminder, resolution, formats ---------------------------


class Tick:
    """An injected wall clock (epoch seconds) for the reminder interval."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_one_alert_per_condition_until_it_clears_with_a_reminder() -> None:
    async def main() -> list[tuple[Any, ...]]:
        tick = Tick()
        async with Receiver() as hook:
            alerter = Alerter(hook.url(), "generic", remind_every_s=600, clock=tick)
            await alerter.start()
            try:
                for _ in range(3):
                    alerter.fire("circuit_breaker", "3 > 1")
                tick.now += 599
                alerter.fire("circuit_breaker", "still 3 > 1")  # inside the interval: quiet
                alerter.fire("sweep_failed", "book unreadable")  # another condition: its own
                await hook.wait_for(2)
                tick.now += 2  # 601 s after the first alert
                alerter.fire("circuit_breaker", "still 3 > 1")
                await hook.wait_for(3)
                alerter.resolve("circuit_breaker", "back under the limit")
                alerter.resolve("circuit_breaker", "again")  # not firing: nothing to say
                alerter.resolve("never_fired")
                alerter.fire("circuit_breaker", "tripped again")  # a new episode
                await hook.wait_for(5)
                assert alerter.active.keys() == {"circuit_breaker", "sweep_failed"}
            finally:
                await alerter.stop()
            await asyncio.sleep(0.05)  # nothing more may arrive after the five
            return [(b["condition"], b["state"], b["summary"], b["at"]) for b in hook.bodies]

    got = asyncio.run(main())
    t0 = 1_000_000.0
    assert got == [
        ("circuit_breaker", "firing", "3 > 1", t0),
        ("sweep_failed", "firing", "book unreadable", t0 + 599),
        ("circuit_breaker", "reminder", "still 3 > 1", t0 + 601),
        ("circuit_breaker", "resolved", "back under the limit", t0 + 601),
        ("circuit_breaker", "firing", "tripped again", t0 + 601),
    ]


def test_render_body_formats() -> None:
    alert = Alert("circuit_breaker", "firing", "3 cancels wanted", {"limit": 1}, 12.5)
    tg = "https://api.telegram.org/bot123456:ABC-def/sendMessage?chat_id=-100987654321"
    assert render_body(alert, "slack", "https://hooks.slack.com/services/T/B/x") == {
        "text": "[ssi-guard ALERT] circuit_breaker: 3 cancels wanted"}
    assert render_body(alert, "telegram", tg) == {
        "chat_id": "-100987654321", "text": "[ssi-guard ALERT] circuit_breaker: 3 cancels wanted"}
    resolved = Alert("circuit_breaker", "resolved", "ok again", {}, 13.0)
    assert render_body(resolved, "slack", "")["text"].startswith("[ssi-guard RESOLVED]")
    generic = render_body(alert, "generic", "")
    keys = ("source", "condition", "state", "summary", "details", "at")
    assert {k: generic[k] for k in keys} == {
        "source": "ssi-guard", "condition": "circuit_breaker", "state": "firing",
        "summary": "3 cancels wanted", "details": {"limit": 1}, "at": 12.5}
    assert generic["host"]


def test_rules_map_events_and_never_raise() -> None:
    alerter = Alerter(None)  # nowhere to deliver: kept in ``sent``
    rules = AlertRules(alerter)
    for event in (
        {"event": "sweep.crashed", "job": "poll", "error": "KeyError"},
        {"event": "sweep.failed", "job": "poll", "error": "again"},  # same condition: quiet
        {"event": "schedule.missed", "job": "poll", "critical": False},  # a poll: no alert
        {"event": "schedule.missed", "job": "pre-close:x", "critical": True,
         "scheduled": "2026-11-23T14:25:00+07:00"},
        {"event": "cancel.failed", "outcome": "failed", "order_id": "1"},  # not unconfirmed
        {"event": "sweep.finished", "result": "blocked", "trigger": "poll"},  # neither way
        {"event": "sweep.finished", "result": "ok", "trigger": "poll", "unconfirmed": 0},
    ):
        assert rules(None, "info", event) == event
    assert [(a.condition, a.state) for a in alerter.sent] == [
        ("sweep_failed", "firing"), ("missed_preclose", "firing"), ("sweep_failed", "resolved")]
    assert "pre-close:x" in alerter.sent[1].summary and "14:25" in alerter.sent[1].summary
    # A poll that succeeds does not prove the pre-close sweep ran; a pre-close sweep does.
    assert "missed_preclose" in alerter.active
    rules(None, "info", {"event": "sweep.finished", "result": "nothing_to_do",
                         "trigger": "pre-close:x"})
    assert alerter.active == {}
    # An `at:` job is critical too: its own next run clears its miss.
    rules(None, "error", {"event": "schedule.missed", "job": "at:noon", "critical": True})
    rules(None, "info", {"event": "sweep.finished", "result": "incomplete", "trigger": "at:noon"})
    assert set(alerter.active) == {"missed_preclose", "sweep_failed"}
    rules(None, "info", {"event": "sweep.finished", "result": "ok", "trigger": "at:noon"})
    assert alerter.active == {}
    # An observer must never break the log call that feeds it.
    rules(None, "error", {"event": "breaker.tripped", "rules": object()})
    rules(None, "error", {"event": "breaker.tripped", "rules": 5})


# ---- through the simulator and the real daemon ------------------------------------------------


def test_reauth_required_alerts_once_and_resolves_on_recovery(
    sim: Simulator, market_clock: FakeClock, tmp_path: Path
) -> None:
    async def main() -> tuple[list[dict[str, Any]], int]:
        async with Receiver() as hook, recording() as events:
            rules = rules_yaml(webhook=hook.url())
            # reauth_repeat_s=0: the daemon logs auth.reauth_required on every failed probe,
            # so only the alerter's own dedup keeps the webhook to one alert.
            opts = {"recovery_probe_s": 0.05, "recovery_tick_s": 0.02, "reauth_repeat_s": 0.0}
            async with running_guard(sim, tmp_path, rules, market_clock,
                                     daemon_opts=opts) as (daemon, _):
                assert daemon.health.state == "healthy"
                sim.revoke_session()
                assert await daemon.fire(job(daemon)) is None
                assert daemon.needs_login
                await hook.wait_for(1)
                recovery = asyncio.create_task(daemon.recovery_loop())
                try:
                    await until(lambda: len(events.named("auth.reauth_required")) >= 3)
                    assert len(hook.hits) == 1  # three events, one alert
                    await daemon.ctx.broker.login(otp=sim.credentials.otp)  # `ssi-guard login`
                    await until(lambda: daemon.health.state == "healthy")
                    await hook.wait_for(2)
                finally:
                    recovery.cancel()
                    await asyncio.gather(recovery, return_exceptions=True)
                # Back to work: a sweep runs again, and nothing more is alerted.
                report = await daemon.fire(job(daemon))
                assert report is not None and report.result == "nothing_to_do"
            return hook.bodies, len(events.named("auth.recovered"))

    bodies, recovered = asyncio.run(main())
    assert recovered == 1
    assert [(b["condition"], b["state"]) for b in bodies] == [
        ("reauth_required", "firing"), ("reauth_required", "resolved")]
    assert "ssi-guard login" in bodies[0]["summary"]
    assert bodies[1]["summary"] == "session restored"


def test_unconfirmed_cancel_alerts_and_a_later_sweep_resolves(
    sim: Simulator, market_clock: FakeClock, tmp_path: Path
) -> None:
    order = sim.seed_order(ACCT, "SSI", "B", 27_000, 100, age=STALE)

    async def main() -> list[dict[str, Any]]:
        async with Receiver() as hook:
            rules = rules_yaml(webhook=hook.url(), confirm_timeout="1s")
            async with running_guard(sim, tmp_path, rules, market_clock) as (daemon, _):
                with sim.paused_cancels():
                    report = await daemon.fire(job(daemon))
                    assert report is not None and report.result == "incomplete"
                    assert [o.kind for o in report.outcomes] == ["unconfirmed"]
                    await hook.wait_for(2)
                assert sim.order(order).status == "CL"  # the exchange caught up
                report = await daemon.fire(job(daemon))
                assert report is not None and report.result == "nothing_to_do"
                await hook.wait_for(4)
            return hook.bodies

    bodies = asyncio.run(main())
    assert sorted((b["condition"], b["state"]) for b in bodies[:2]) == [
        ("sweep_failed", "firing"), ("unconfirmed_cancel", "firing")]
    assert sorted((b["condition"], b["state"]) for b in bodies[2:]) == [
        ("sweep_failed", "resolved"), ("unconfirmed_cancel", "resolved")]
    [unconfirmed] = only(bodies[:2], "unconfirmed_cancel")
    assert unconfirmed["details"] == {"order_id": order, "account": ACCT, "symbol": "SSI",
                                      "rule": "stale"}
    assert order in unconfirmed["summary"] and "not confirmed" in unconfirmed["summary"]
    [incomplete] = only(bodies[:2], "sweep_failed")
    assert "incomplete" in incomplete["summary"] and "1 unconfirmed" in incomplete["summary"]


def test_circuit_breaker_names_rule_and_count_once_and_resolves_after_reload(
    sim: Simulator, market_clock: FakeClock, tmp_path: Path
) -> None:
    ids = [sim.seed_order(ACCT, "SSI", "B", 27_000, 100, age=STALE) for _ in range(3)]

    async def main() -> list[dict[str, Any]]:
        async with Receiver() as hook:
            rules = rules_yaml(webhook=hook.url(), max_cancels=1)
            async with running_guard(sim, tmp_path, rules, market_clock) as (daemon, _):
                for _ in range(2):  # tripped twice: one alert
                    report = await daemon.fire(job(daemon))
                    assert report is not None and report.result == "blocked"
                await hook.wait_for(1)
                assert sim.accepted_cancels() == []
                # The operator looks, decides the cancels are right, and raises the limit.
                daemon.rules_path.write_text(rules_yaml(webhook=hook.url(), max_cancels=10))
                assert daemon.reload()
                report = await daemon.fire(job(daemon))
                assert report is not None and report.result == "ok"
                await hook.wait_for(2)
            return hook.bodies

    bodies = asyncio.run(main())
    assert [(b["condition"], b["state"]) for b in bodies] == [
        ("circuit_breaker", "firing"), ("circuit_breaker", "resolved")]
    assert bodies[0]["details"] == {"matches": 3, "limit": 1, "rules": {"stale": 3}}
    summary = bodies[0]["summary"]
    assert "3 cancels wanted" in summary and "limit 1" in summary and "stale=3" in summary
    assert sorted(sim.accepted_cancels()) == sorted(ids)


def test_failed_sweep_when_no_book_can_be_read_then_resolves(
    sim: Simulator, market_clock: FakeClock, tmp_path: Path
) -> None:
    async def main() -> list[dict[str, Any]]:
        async with Receiver() as hook:
            async with running_guard(sim, tmp_path, rules_yaml(webhook=hook.url()),
                                     market_clock) as (daemon, _):
                fault = sim.inject(Fault("malformed", "GET", BOOK, times=None))
                for _ in range(2):
                    report = await daemon.fire(job(daemon))
                    assert report is not None and report.result == "incomplete"
                    assert sorted(a for a, _ in report.unread_accounts) == [ACCT, OTHER]
                await hook.wait_for(1)
                sim.faults.clear()
                assert fault.times is None
                report = await daemon.fire(job(daemon))
                assert report is not None and report.result == "nothing_to_do"
                await hook.wait_for(2)
            return hook.bodies

    bodies = asyncio.run(main())
    assert [(b["condition"], b["state"]) for b in bodies] == [
        ("sweep_failed", "firing"), ("sweep_failed", "resolved")]
    assert f"accounts not read: {ACCT}, {OTHER}" in bodies[0]["summary"]
    assert bodies[0]["details"]["unread_accounts"] == [ACCT, OTHER]


class OnceInThePast(BaseTrigger):  # type: ignore[misc]
    """Fires once, an hour ago: APScheduler finds it past its grace time and reports it missed
    (what a host that slept through 14:25 looks like to the scheduler)."""

    def get_next_fire_time(self, previous: datetime | None, now: datetime) -> datetime | None:
        return now - timedelta(hours=1) if previous is None else None


def test_missed_preclose_sweep_alerts_critical_and_a_preclose_sweep_resolves(
    sim: Simulator, market_clock: FakeClock, tmp_path: Path
) -> None:
    async def main() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        async with Receiver() as hook, recording() as events:
            rules = rules_yaml(webhook=hook.url(), before_close=True)
            async with running_guard(sim, tmp_path, rules, market_clock) as (daemon, _):
                preclose = job(daemon, "pre-close:close")
                assert preclose.critical
                missed = JobSpec(preclose.job_id, OnceInThePast(), misfire_grace_s=1,
                                 critical=True)
                poll_missed = JobSpec("poll", OnceInThePast(), misfire_grace_s=1, critical=False)
                driver = SchedulerDriver(daemon.fire, daemon.log)
                driver.start([missed, poll_missed])
                try:
                    await until(lambda: len(events.named("schedule.missed")) == 2)
                    await hook.wait_for(1)
                finally:
                    driver.shutdown()
                poll = await daemon.fire(job(daemon))  # a poll proves nothing about pre-close
                assert poll is not None and poll.result == "nothing_to_do"
                await asyncio.sleep(0.05)
                assert len(hook.hits) == 1
                report = await daemon.fire(preclose)  # the next pre-close sweep runs
                assert report is not None and report.trigger == "pre-close:close"
                await hook.wait_for(2)
            return hook.bodies, events.named("schedule.missed")

    bodies, missed_events = asyncio.run(main())
    assert sorted((e["job"], e["critical"]) for e in missed_events) == [
        ("poll", False), ("pre-close:close", True)]
    assert [(b["condition"], b["state"]) for b in bodies] == [
        ("missed_preclose", "firing"), ("missed_preclose", "resolved")]
    assert bodies[0]["details"]["job"] == "pre-close:close"
    assert "pre-close:close" in bodies[0]["summary"] and "missed" in bodies[0]["summary"]


def test_no_holiday_data_alerts_is_reminded_and_a_reload_with_holidays_resolves(
    sim: Simulator, market_clock: FakeClock, tmp_path: Path
) -> None:
    market_clock.set(datetime(2031, 3, 3, 10, 0, tzinfo=EXCHANGE_TZ))  # a Monday, no data
    tick = Tick()

    async def main() -> list[dict[str, Any]]:
        async with Receiver() as hook:
            rules = rules_yaml(webhook=hook.url())
            async with running_guard(sim, tmp_path, rules, market_clock, remind_every_s=600,
                                     remind_tick_s=0.01, alert_clock=tick) as (daemon, _):
                await hook.wait_for(1)
                report = await daemon.fire(job(daemon))  # sweeps go on, no second alert
                assert report is not None
                assert daemon.reload()  # reloading without holidays clears nothing
                await asyncio.sleep(0.1)  # ten reminder ticks, none due yet
                assert len(hook.hits) == 1
                # The daemon logs this once a year: the reminder comes from the alerter.
                tick.now += 600
                await hook.wait_for(2)
                daemon.rules_path.write_text(
                    rules_yaml(webhook=hook.url(), holidays=("2031-04-30", "2031-05-01")))
                assert daemon.reload()
                await hook.wait_for(3)
                tick.now += 6000
                await asyncio.sleep(0.05)  # resolved: no more reminders
            return hook.bodies

    bodies = asyncio.run(main())
    assert [(b["condition"], b["state"]) for b in bodies] == [
        ("no_holiday_data", "firing"), ("no_holiday_data", "reminder"),
        ("no_holiday_data", "resolved")]
    assert bodies[0]["details"] == bodies[1]["details"] == {"year": 2031}
    assert bodies[1]["summary"] == bodies[0]["summary"]
    assert "2031" in bodies[0]["summary"] and "holidays:" in bodies[0]["summary"]
    assert [b["at"] for b in bodies] == [1_000_000.0, 1_000_600.0, 1_000_600.0]


@pytest.mark.parametrize("fmt", ["slack", "telegram"])
def test_slack_and_telegram_bodies_on_the_wire(
    fmt: str, sim: Simulator, market_clock: FakeClock, tmp_path: Path
) -> None:
    for _ in range(2):
        sim.seed_order(ACCT, "SSI", "B", 27_000, 100, age=STALE)

    async def main() -> list[tuple[str, dict[str, str], dict[str, Any]]]:
        async with Receiver() as hook:
            url = (hook.url("/bot123456789:AAE-test-token/sendMessage", "chat_id=-1001234567890")
                   if fmt == "telegram" else hook.url("/services/T0001/B0001/abcdefghijklmnop"))
            rules = rules_yaml(webhook=url, fmt=fmt, max_cancels=1)
            async with running_guard(sim, tmp_path, rules, market_clock) as (daemon, _):
                await daemon.fire(job(daemon))
                await hook.wait_for(1)
                daemon.rules_path.write_text(rules_yaml(webhook=url, fmt=fmt, max_cancels=5))
                daemon.reload()
                await daemon.fire(job(daemon))
                await hook.wait_for(2)
            return [(h.path, h.query, h.body) for h in hook.hits]

    hits = asyncio.run(main())
    firing = ("[ssi-guard ALERT] circuit_breaker: circuit breaker: 2 cancels wanted, limit 1 "
              "per sweep; nothing was cancelled (by rule: stale=2)")
    resolved = "[ssi-guard RESOLVED] circuit_breaker: matches back under the limit"
    if fmt == "telegram":
        assert [h[0] for h in hits] == ["/bot123456789:AAE-test-token/sendMessage"] * 2
        assert [h[1] for h in hits] == [{"chat_id": "-1001234567890"}] * 2
        assert [h[2] for h in hits] == [{"chat_id": "-1001234567890", "text": firing},
                                        {"chat_id": "-1001234567890", "text": resolved}]
    else:
        assert [h[2] for h in hits] == [{"text": firing}, {"text": resolved}]
