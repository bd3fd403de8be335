"""Issue "Hardening", findings 6 and 12 (alert side) and the new alert conditions.

The delivery worker must outlive any failure of one alert (an ``httpx.InvalidURL``, a body
that cannot be serialised, anything) and count it as undelivered; ``Alerter.stop`` never
raises. ``reload_failed`` fires on a failed SIGHUP reload and clears on the next good one;
``journal_failed`` fires when the journal cannot be written and clears when a sweep completes.
The webhook receiver is a real HTTP server on loopback.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from kit import ACCT, OTHER
from kit.ops import Receiver, recording, rules_yaml, running_guard, until

from guard.clock import FakeClock
from guard.record.log import add_observers, remove_observers
from guard.service.alerts import Alerter, AlertRules
from guard.service.metrics import Metrics
from guard.simulator.control import Simulator

BAD_PORT = "http://127.0.0.1:18o99/hook"  # passed `validate` before: httpx.InvalidURL on send


def deliveries(metrics: Metrics, result: str) -> float:
    value = metrics.registry.get_sample_value("ssi_guard_alert_deliveries_total",
                                              {"result": result})
    return value or 0.0


class Unprintable:
    """A detail whose text cannot be made: json.dumps(default=str) raises on it."""

    def __str__(self) -> str:
        raise RuntimeError("no text for you")

    __repr__ = __str__


# ---- the worker survives any exception of one alert ------------------------------


def test_an_invalid_url_is_counted_undelivered_and_later_alerts_still_go_out() -> None:
    async def main() -> tuple[list[dict[str, Any]], Any, Metrics]:
        metrics = Metrics()
        add_observers(metrics)
        try:
            async with Receiver() as hook, recording() as events:
                alerter = Alerter(BAD_PORT, retries=2, backoff_s=0.0)
                await alerter.start()
                try:
                    alerter.fire("circuit_breaker", "3 > 1")
                    await until(lambda: bool(events.named("alert.undelivered")))
                    # Only the URL was wrong: pointed at a live receiver, the same worker
                    # delivers the next alerts.
                    alerter.url = hook.url()
                    alerter.fire("sweep_failed", "book unreadable")
                    alerter.resolve("circuit_breaker", "back under the limit")
                    await hook.wait_for(2)
                finally:
                    await alerter.stop()  # must not raise
            return hook.bodies, events, metrics
        finally:
            remove_observers(metrics)

    bodies, events, metrics = asyncio.run(main())
    assert [(b["condition"], b["state"]) for b in bodies] == [
        ("sweep_failed", "firing"), ("circuit_breaker", "resolved")]
    [undelivered] = events.named("alert.undelivered")
    assert undelivered["condition"] == "circuit_breaker" and undelivered["attempts"] == 2
    failed = events.named("alert.delivery_failed")
    assert [(f["attempt"], f["error"]) for f in failed] == [(1, "InvalidURL"), (2, "InvalidURL")]
    assert all("18o99" not in str(e) for e in [*failed, undelivered])
    assert deliveries(metrics, "undelivered") == 1
    assert deliveries(metrics, "failed") == 2
    assert deliveries(metrics, "sent") == 2


def test_an_alert_that_cannot_be_rendered_is_undelivered_and_the_next_is_sent() -> None:
    async def main() -> tuple[list[dict[str, Any]], Any]:
        async with Receiver() as hook, recording() as events:
            alerter = Alerter(hook.url(), retries=3, backoff_s=0.0)
            await alerter.start()
            try:
                alerter.fire("unconfirmed_cancel", "order 1", order_id=Unprintable())
                alerter.fire("sweep_failed", "book unreadable")
                await hook.wait_for(1)
                await until(lambda: bool(events.named("alert.undelivered")))
            finally:
                await alerter.stop()
        return hook.bodies, events

    bodies, events = asyncio.run(main())
    assert [(b["condition"], b["state"]) for b in bodies] == [("sweep_failed", "firing")]
    [undelivered] = events.named("alert.undelivered")
    assert undelivered["condition"] == "unconfirmed_cancel"
    assert undelivered["error"] == "RuntimeError"


def test_stop_never_raises_even_if_the_worker_died() -> None:
    async def main() -> None:
        alerter = Alerter(BAD_PORT, retries=1, backoff_s=0.0)
        await alerter.start()
        alerter.fire("circuit_breaker", "3 > 1")
        await asyncio.sleep(0.1)
        await alerter.stop()
        await alerter.stop()  # twice: still nothing

    asyncio.run(main())


def test_a_url_that_cannot_even_be_split_does_not_break_the_alerter() -> None:
    async def main() -> list[str]:
        async with recording() as events:
            alerter = Alerter("http://[::1/x", retries=1, backoff_s=0.0)  # unbalanced bracket
            await alerter.start()
            try:
                alerter.fire("circuit_breaker", "3 > 1")
                await until(lambda: bool(events.named("alert.undelivered")))
            finally:
                await alerter.stop()
        return [e["event"] for e in events.seen if str(e["event"]).startswith("alert.")]

    assert asyncio.run(main()) == ["alert.delivery_failed", "alert.undelivered"]


# ---- a failed reload alerts, a good one resolves --------------------------------


def test_reload_failed_alerts_with_file_and_first_problem_then_a_good_reload_resolves(
    sim: Simulator, market_clock: FakeClock, tmp_path: Path
) -> None:
    async def main() -> tuple[list[dict[str, Any]], str]:
        async with Receiver() as hook:
            good = rules_yaml(webhook=hook.url())
            async with running_guard(sim, tmp_path, good, market_clock) as (daemon, _):
                path = str(daemon.rules_path)
                daemon.rules_path.write_text(good.replace("max_age: 15m", "max_age: 5x"))
                assert not daemon.reload()
                await hook.wait_for(1)
                daemon.rules_path.write_text(good)
                assert daemon.reload()
                await hook.wait_for(2)
            return hook.bodies, path

    bodies, path = asyncio.run(main())
    assert [(b["condition"], b["state"]) for b in bodies] == [
        ("reload_failed", "firing"), ("reload_failed", "resolved")]
    summary = bodies[0]["summary"]
    assert path in summary and "previous rules kept" in summary
    assert "rules[0].max_age: '5x' is not a duration" in summary
    assert bodies[0]["details"]["path"] == path
    assert bodies[0]["details"]["problems"][0].endswith("'5x' is not a duration "
                                                        "(use 30s, 15m, 1h30m)")
    assert bodies[1]["summary"] == f"rules reloaded from {path}"


def test_reload_failed_summary_counts_the_other_problems() -> None:
    alerter = Alerter(None)
    rules = AlertRules(alerter)
    rules(None, "error", {"event": "rules.reload_failed", "path": "/etc/r.yaml",
                          "problems": ["/etc/r.yaml:3: a", "/etc/r.yaml:9: b",
                                       "/etc/r.yaml:12: c"], "kept": "previous rules"})
    rules(None, "error", {"event": "rules.reload_failed", "path": "/etc/r.yaml",
                          "problems": "not a list", "kept": "previous rules"})
    assert [(a.condition, a.state) for a in alerter.sent] == [("reload_failed", "firing")]
    assert alerter.sent[0].summary == ("reload of /etc/r.yaml failed, previous rules kept: "
                                       "/etc/r.yaml:3: a (and 2 more problems)")
    rules(None, "info", {"event": "rules.reloaded", "path": "/etc/r.yaml"})
    assert [(a.condition, a.state) for a in alerter.sent][-1] == ("reload_failed", "resolved")


# ---- journal_failed ---------------------------------------------------------------------------


def test_journal_failed_fires_and_only_a_completed_sweep_resolves_it() -> None:
    alerter = Alerter(None)
    rules = AlertRules(alerter)
    failed = {"event": "journal.write_failed", "error": "disk I/O error",
              "path": "/var/lib/ssi-guard/journal.sqlite3"}
    rules(None, "error", dict(failed))
    rules(None, "error", dict(failed))  # still the same episode: one alert
    for result in ("incomplete", "blocked"):  # these prove nothing about the journal
        rules(None, "info", {"event": "sweep.finished", "result": result, "trigger": "poll"})
    journal = [a for a in alerter.sent if a.condition == "journal_failed"]
    assert [a.state for a in journal] == ["firing"]
    first = journal[0]
    assert first.summary == ("journal /var/lib/ssi-guard/journal.sqlite3 cannot be written: "
                             "disk I/O error")
    assert first.details == {"path": failed["path"], "error": "disk I/O error"}
    rules(None, "info", {"event": "sweep.finished", "result": "dry_run", "trigger": "poll"})
    assert [(a.condition, a.state) for a in alerter.sent][-1] == ("journal_failed", "resolved")
    assert "journal_failed" not in alerter.active
    for result in ("ok", "nothing_to_do"):
        rules(None, "error", dict(failed))
        rules(None, "info", {"event": "sweep.finished", "result": result, "trigger": "poll"})
        assert "journal_failed" not in alerter.active


# ---- sweep_failed names the accounts that were not read --------------------------------------


def test_sweep_failed_names_unread_accounts_whatever_the_result() -> None:
    alerter = Alerter(None)
    rules = AlertRules(alerter)
    rules(None, "error", {"event": "sweep.finished", "result": "incomplete", "trigger": "poll",
                          "unread_accounts": [ACCT], "unconfirmed": 0, "failed": 0,
                          "deferred": 0})
    [first] = alerter.sent
    assert first.summary == f"sweep poll incomplete: accounts not read: {ACCT}"
    assert first.details["unread_accounts"] == [ACCT]
    rules(None, "info", {"event": "sweep.finished", "result": "ok", "trigger": "poll"})
    # A tripped breaker (result "blocked") with an unread book: the breaker alert says
    # nothing about the account that was not guarded at all, so sweep_failed does.
    rules(None, "error", {"event": "sweep.finished", "result": "blocked", "trigger": "poll",
                          "unread_accounts": [OTHER], "deferred": 0})
    assert [(a.condition, a.state) for a in alerter.sent] == [
        ("sweep_failed", "firing"), ("sweep_failed", "resolved"), ("sweep_failed", "firing")]
    assert alerter.sent[-1].summary == f"sweep poll blocked: accounts not read: {OTHER}"
    assert alerter.sent[-1].details["unread_accounts"] == [OTHER]


def test_sweep_failed_says_how_many_cancels_were_deferred() -> None:
    alerter = Alerter(None)
    AlertRules(alerter)(None, "error", {"event": "sweep.finished", "result": "incomplete",
                                        "trigger": "poll", "unread_accounts": [],
                                        "unconfirmed": 0, "failed": 0, "deferred": 2})
    assert alerter.sent[0].summary == ("sweep poll incomplete: 2 deferred (a cancel of a "
                                       "previous run may still be on the wire)")
