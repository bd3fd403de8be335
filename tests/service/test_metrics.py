"""Metrics and /healthz: scraped over HTTP from a daemon sweeping the simulator.

The counters are fed by the guard's own log events, so they are checked against what the
exchange and the broker say (orders cancelled, exact VND released, token expiry).
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from kit import ACCT, BOOK, OTHER, STALE
from kit.ops import job, rules_yaml, running_guard
from prometheus_client.parser import text_string_to_metric_families

from guard.clock import EXCHANGE_TZ, FakeClock
from guard.model import HoldKind
from guard.schedule.scheduler import SchedulerDriver
from guard.service.metrics import HELD_LABELS, Metrics, held_label
from guard.simulator.control import Simulator
from guard.simulator.faults import Fault


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of a Prometheus text exposition."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
          **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


# ---- the processor on its own -----------------------------------------------------------------


def test_processor_counts_events_the_sweep_may_not_emit_yet() -> None:
    m = Metrics()
    events: list[dict[str, Any]] = [
        {"event": "cancel.sent", "order_id": "1", "request_s": 0.2},
        {"event": "cancel.sent", "order_id": "2", "request_s": 3.0},
        {"event": "cancel.sent", "order_id": "3"},  # no timing: not observed
        {"event": "broker.error", "kind": "rate_limited"},
        {"event": "broker.error", "kind": "rate_limited"},
        {"event": "broker.error", "kind": "ambiguous"},
        {"event": "broker.error"},
        # The sender's "not sent" is followed by confirm's final word: counted once.
        {"event": "cancel.failed", "order_id": "4", "reason": "not sent"},
        {"event": "cancel.failed", "order_id": "4", "outcome": "failed", "latency_s": 1.0},
        {"event": "cash.released", "withdrawable_delta": "-5000"},  # a mismatch: not released
        {"event": "cash.released", "withdrawable_delta": "27000000"},
        {"event": "alert.delivery_failed"}, {"event": "alert.undelivered"},
        {"event": "sweep.crashed", "job": "poll"},
        # Garbage must never break the log call it rides on.
        {"event": "cancel.sent", "request_s": "slow"},
        {"event": "cancel.confirmed", "outcome": "cancelled", "latency_s": None},
    ]
    for event in events:
        assert m(None, "info", dict(event)) == event
    s = parse(m.exposition().decode())
    assert value(s, "ssi_guard_cancel_latency_seconds_count") == 3  # 0.2, 3.0 and "slow" -> 0
    assert value(s, "ssi_guard_cancel_latency_seconds_sum") == 3.2
    assert value(s, "ssi_guard_cancel_latency_seconds_bucket", le="0.25") == 2
    assert value(s, "ssi_guard_api_errors_total", kind="rate_limited") == 2
    assert value(s, "ssi_guard_api_errors_total", kind="ambiguous") == 1
    assert value(s, "ssi_guard_api_errors_total", kind="unknown") == 1
    assert value(s, "ssi_guard_cancels_total", outcome="failed") == 1
    assert value(s, "ssi_guard_cancels_total", outcome="not_sent") == 0
    assert value(s, "ssi_guard_released_vnd_total") == 27_000_000
    assert value(s, "ssi_guard_alert_deliveries_total", result="failed") == 1
    assert value(s, "ssi_guard_alert_deliveries_total", result="undelivered") == 1
    assert value(s, "ssi_guard_sweeps_total", result="failed") == 1


def test_held_orders_are_labelled_by_their_hold_kind_not_their_words() -> None:
    m = Metrics()
    for hold in HoldKind:
        m(None, "info", {"event": "order.held", "reason": "words", "hold": hold.value})
    # The kind wins over text that reads like another kind; a stray value stays bounded.
    m(None, "info", {"event": "order.held", "reason": "protected prefix keep-",
                     "hold": HoldKind.BANNED_WINDOW})
    m(None, "info", {"event": "order.held", "reason": "protected prefix keep-",
                     "hold": "made-up"})
    s = parse(m.exposition().decode())
    for hold in HoldKind:
        expected = {HoldKind.BANNED_WINDOW: 2, HoldKind.OTHER: 2}.get(hold, 1)
        assert value(s, "ssi_guard_orders_held_total", reason=hold.value) == expected, hold
    assert value(s, "ssi_guard_orders_matched_total") == len(HoldKind) + 2


def test_the_labels_are_the_engines_hold_kinds_and_the_documented_ones() -> None:
    """README lists these for ssi_guard_orders_held_total{reason}."""
    assert list(HELD_LABELS) == [k.value for k in HoldKind]
    assert [k.value for k in HoldKind] == [
        "protected", "banned_window", "already_cancelling", "not_cancellable", "nothing_left",
        "board_unknown", "account_not_guarded", "other"]


def test_an_event_without_a_hold_kind_counts_as_other() -> None:
    """The label is the engine's kind, never the English wording read back."""
    assert held_label({"reason": "protected prefix keep-"}) == "other"
    assert held_label({"reason": "x", "hold": "nothing_left"}) == "nothing_left"


def test_refresh_converts_market_time_to_wall_epoch() -> None:
    m = Metrics()
    market = datetime(2026, 11, 23, 14, 25, tzinfo=EXCHANGE_TZ)
    m.refresh({"state": "healthy", "token_expires_at": 1_900_000_000,
               "last_ok_sweep_at": "2026-11-23T10:00:00+07:00", "market_offset_s": 3600.0},
              {"poll": market - timedelta(hours=4), "pre-close:close": market,
               "pre-close:late": market + timedelta(minutes=30)})
    s = parse(m.exposition().decode())
    ten = datetime(2026, 11, 23, 10, tzinfo=EXCHANGE_TZ).timestamp()
    assert value(s, "ssi_guard_last_successful_sweep_timestamp_seconds") == ten - 3600
    assert value(s, "ssi_guard_next_preclose_sweep_timestamp_seconds") == (
        market.timestamp() - 3600)
    assert value(s, "ssi_guard_token_valid") == 1 and value(s, "ssi_guard_healthy") == 1
    m.refresh({"state": "degraded", "reason": "re-authentication required: x",
               "token_expires_at": 1_900_000_000, "last_ok_sweep_at": "not a time"}, {})
    s = parse(m.exposition().decode())
    assert value(s, "ssi_guard_token_valid") == 0 and value(s, "ssi_guard_healthy") == 0
    assert value(s, "ssi_guard_next_preclose_sweep_timestamp_seconds") == 0


# ---- live: a daemon on the simulator, scraped over HTTP --------------------------------------


def test_metrics_after_a_sweep_that_cancels_stale_orders(
    sim: Simulator, market_clock: FakeClock, tmp_path: Path
) -> None:
    a = sim.seed_order(ACCT, "SSI", "B", 27_000, 1_000, age=STALE)
    b = sim.seed_order(ACCT, "FPT", "B", 95_500, 300, age=STALE)
    c = sim.seed_order(OTHER, "HPG", "B", 26_400, 500, age=STALE)
    sim.seed_order(ACCT, "VCB", "B", 91_000, 100, age=STALE, client_request_id="keep-core")
    sim.seed_order(ACCT, "VNM", "B", 62_000, 100, age=timedelta(minutes=2))  # fresh

    async def main() -> tuple[str, str, int, float, float, int]:
        async with running_guard(sim, tmp_path, rules_yaml(before_close=True),
                                 market_clock) as (daemon, ops):
            assert ops.server is not None and ops.server.port
            # Wire the scheduler as a rehearsal daemon does (`run --at`): market time runs
            # ahead of the wall clock by `offset`. Paused at once: it fires nothing here.
            offset = market_clock() - datetime.now(EXCHANGE_TZ)
            daemon.driver = SchedulerDriver(daemon.fire, daemon.log, offset=offset)
            daemon.health = daemon.health.with_(market_offset_s=offset.total_seconds())
            daemon.driver.start(daemon.jobs)
            daemon.driver.pause()
            try:
                report = await daemon.fire(job(daemon))
                assert report is not None and report.result == "ok"
                swept_at = time.time()
                sim.inject(Fault("malformed", "GET", BOOK, times=1, account=OTHER))  # unreadable
                again = await daemon.fire(job(daemon))
                assert again is not None and again.result == "incomplete"
                base = f"http://127.0.0.1:{ops.server.port}"
                async with httpx.AsyncClient(timeout=5) as client:
                    metrics = await client.get(f"{base}/metrics")
                    health = await client.get(f"{base}/healthz")
                assert metrics.status_code == 200
                assert metrics.headers["content-type"] == (
                    "text/plain; version=0.0.4; charset=utf-8")
            finally:
                daemon.driver.shutdown()
            return (metrics.text, health.text, health.status_code, offset.total_seconds(),
                    swept_at, daemon.ctx.broker.token_expires_at)

    text, health, status, offset_s, swept_at, token_expiry = asyncio.run(main())
    s = parse(text)
    assert sorted(sim.accepted_cancels()) == sorted([a, b, c])
    assert value(s, "ssi_guard_sweeps_total", result="ok") == 1
    assert value(s, "ssi_guard_sweeps_total", result="incomplete") == 1
    assert value(s, "ssi_guard_api_errors_total", kind="unavailable") == 1  # the bad book read
    # Sweep 1: three cancelled + one held. Sweep 2 cannot read OTHER's book but still decides
    # ACCT's, where the protected order is matched and held again.
    assert value(s, "ssi_guard_orders_matched_total") == 5
    assert value(s, "ssi_guard_orders_held_total", reason="protected") == 2
    assert value(s, "ssi_guard_cancels_total", outcome="cancelled") == 3
    assert value(s, "ssi_guard_confirm_latency_seconds_count") == 3
    assert 0 < value(s, "ssi_guard_confirm_latency_seconds_sum") < 15
    # One observation per cancel sent (two batch DELETEs: ACCT's two orders, OTHER's one).
    assert value(s, "ssi_guard_cancel_latency_seconds_count") == 3
    assert 0 < value(s, "ssi_guard_cancel_latency_seconds_sum") < 15
    assert value(s, "ssi_guard_released_vnd_total") == 27_000 * 1_000 + 95_500 * 300 + 26_400 * 500
    assert value(s, "ssi_guard_token_valid") == 1
    # The last sweep left an account unread: the guard says so (health is what happened).
    assert value(s, "ssi_guard_healthy") == 0
    assert value(s, "ssi_guard_token_expiry_timestamp_seconds") == token_expiry > time.time()
    # Wall-clock epochs, comparable with Prometheus' time(), although the market clock is
    # a fixed Monday 10:00 rehearsal.
    assert abs(value(s, "ssi_guard_last_successful_sweep_timestamp_seconds") - swept_at) < 5
    preclose = datetime(2026, 11, 23, 14, 25, tzinfo=EXCHANGE_TZ).timestamp() - offset_s
    assert abs(value(s, "ssi_guard_next_preclose_sweep_timestamp_seconds") - preclose) < 2
    assert status == 503 and '"state": "degraded"' in health
    assert f"accounts not read: {OTHER}" in health

    names = {name for name, _ in s}
    assert names and all(n.startswith("ssi_guard_") for n in names)
    declared = [line.split()[2] for line in text.splitlines() if line.startswith("# ")]
    assert declared and all(n.startswith("ssi_guard_") for n in declared)
    assert not any(n.startswith(("python_", "process_")) for n in names)  # own registry


def test_healthz_503_with_the_reason_when_the_session_is_revoked(
    sim: Simulator, market_clock: FakeClock, tmp_path: Path
) -> None:
    async def main() -> list[tuple[int, str, str]]:
        out = []
        async with running_guard(sim, tmp_path, rules_yaml(), market_clock) as (daemon, ops):
            assert ops.server is not None
            base = f"http://127.0.0.1:{ops.server.port}"
            async with httpx.AsyncClient(timeout=5) as client:
                async def scrape() -> None:
                    h = await client.get(f"{base}/healthz")
                    m = await client.get(f"{base}/metrics")
                    out.append((h.status_code, h.text, m.text))

                await scrape()
                sim.revoke_session()
                assert await daemon.fire(job(daemon)) is None
                await scrape()
        return out

    (ok, ok_body, ok_metrics), (bad, bad_body, bad_metrics) = asyncio.run(main())
    assert ok == 200 and '"state": "healthy"' in ok_body
    good = parse(ok_metrics)
    assert value(good, "ssi_guard_token_valid") == 1
    assert value(good, "ssi_guard_next_preclose_sweep_timestamp_seconds") == 0  # no scheduler
    assert bad == 503
    assert '"state": "degraded"' in bad_body
    assert '"reason": "re-authentication required: ' in bad_body
    s = parse(bad_metrics)
    assert value(s, "ssi_guard_token_valid") == 0
    assert value(s, "ssi_guard_healthy") == 0
