"""Operating unattended: a bad webhook never slows a sweep, its token never reaches the
log, and ``operations`` leaves the process as it found it.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
import structlog
from kit import ACCT, STALE
from kit.ops import Events, Mode, Receiver, job, recording, rules_yaml, running_guard, until

from guard.clock import FakeClock
from guard.record.log import configure_logging
from guard.simulator.control import Simulator

FAST_FAIL = {"alert_timeout_s": 0.3, "alert_retries": 2, "alert_backoff_s": 0.05}


async def breaker_sweep(sim: Simulator, tmp_path: Path, market_clock: FakeClock, hook: Receiver,
                        events: Events) -> float:
    """One sweep that trips the breaker (so an alert fires mid-sweep); its duration in s."""
    async with running_guard(sim, tmp_path, rules_yaml(webhook=hook.url(), max_cancels=1),
                             market_clock, metrics_port=None, **FAST_FAIL) as (daemon, _):
        t0 = time.monotonic()
        report = await daemon.fire(job(daemon))
        took = time.monotonic() - t0
        assert report is not None and report.result == "blocked"
        assert len(events.named("breaker.tripped")) >= 1
        # Still inside operations: wait for the delivery to finish, whatever its fate.
        await until(lambda: bool(events.named("alert.sent") or events.named("alert.undelivered")))
    return took


@pytest.mark.parametrize("mode", ["hang", "error"])
def test_a_bad_webhook_does_not_delay_the_sweep(
    mode: Mode, sim: Simulator, market_clock: FakeClock, tmp_path: Path
) -> None:
    for _ in range(3):
        sim.seed_order(ACCT, "SSI", "B", 27_000, 100, age=STALE)

    async def main() -> tuple[float, float, Events, Events, int]:
        async with recording() as good_events, Receiver("ok") as good:
            with_good = await breaker_sweep(sim, tmp_path / "good", market_clock, good,
                                            good_events)
        assert [(b["condition"], b["state"]) for b in good.bodies] == [
            ("circuit_breaker", "firing")]
        # Both guards share one API key's rate limit at the simulator (10/s): let its bucket
        # refill, so the second sweep is timed against the webhook, not against a 429.
        await asyncio.sleep(1.1)
        async with recording() as bad_events, Receiver(mode, hang_s=30) as bad:
            with_bad = await breaker_sweep(sim, tmp_path / "bad", market_clock, bad, bad_events)
            tries = len(bad.hits)
        return with_good, with_bad, good_events, bad_events, tries

    with_good, with_bad, good_events, bad_events, tries = asyncio.run(main())
    assert with_bad - with_good < 0.5, (with_good, with_bad)
    assert not good_events.named("alert.delivery_failed")
    failed = bad_events.named("alert.delivery_failed")
    assert [(e["attempt"], e["condition"]) for e in failed] == [
        (1, "circuit_breaker"), (2, "circuit_breaker")]
    expected = "ReadTimeout" if mode == "hang" else "HTTP 500"
    assert {e["error"] for e in failed} == {expected}
    [undelivered] = bad_events.named("alert.undelivered")
    assert undelivered["condition"] == "circuit_breaker" and undelivered["attempts"] == 2
    assert tries == 2  # bounded: exactly `retries` POSTs


def test_the_webhook_token_never_reaches_the_log(
    sim: Simulator, market_clock: FakeClock, tmp_path: Path
) -> None:
    for _ in range(2):
        sim.seed_order(ACCT, "SSI", "B", 27_000, 100, age=STALE)
    token = "987654321:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
    buf = io.StringIO()
    saved_structlog = structlog.get_config()
    root = logging.getLogger()
    saved_root = (list(root.handlers), root.level)

    async def main(hook_mode: Mode) -> None:
        async with recording() as events, Receiver(hook_mode) as hook:
            url = hook.url(f"/bot{token}/sendMessage", "chat_id=-1001234567890")
            rules = rules_yaml(webhook=url, fmt="telegram", max_cancels=1)
            async with running_guard(sim, tmp_path, rules, market_clock, metrics_port=None,
                                     **FAST_FAIL) as (daemon, _):
                await daemon.fire(job(daemon))
                await until(lambda: bool(events.named("alert.undelivered")))
                # A library that quotes the URL (httpx does, in its request lines and errors).
                logging.getLogger("httpx").warning("HTTP Request: POST %s failed", url)
            assert hook.hits and hook.hits[0].path == f"/bot{token}/sendMessage"

    try:
        configure_logging("DEBUG", "json", stream=buf)
        asyncio.run(main("error"))
    finally:
        structlog.configure(**saved_structlog)
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved_root[0]:
            root.addHandler(handler)
        root.setLevel(saved_root[1])

    text = buf.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]
    names = [line.get("event", "") for line in lines]
    assert "alert.delivery_failed" in names and "alert.undelivered" in names
    assert "HTTP Request: POST *** failed" in names  # the library's line, masked
    assert token not in text
    assert token.split(":")[1] not in text  # not even the secret half


def test_operations_restore_the_log_chain_and_bind_loopback_only(
    sim: Simulator, market_clock: FakeClock, tmp_path: Path
) -> None:
    before = list(structlog.get_config()["processors"])

    async def main() -> tuple[Any, list[Any], list[Any]]:
        async with running_guard(sim, tmp_path, rules_yaml(), market_clock) as (daemon, ops):
            assert ops.server is not None and ops.alerter.url is None
            during = list(structlog.get_config()["processors"])
            assert ops.server._runner is not None
            addresses = list(ops.server._runner.addresses)
            report = await daemon.fire(job(daemon))
            assert report is not None
        after_exit = list(structlog.get_config()["processors"])
        structlog.get_logger("guard").info("sweep.finished", result="ok")  # not counted now
        return ops, [during, after_exit], addresses

    ops, (during, after_exit), addresses = asyncio.run(main())
    assert ops.metrics in during and ops.metrics not in before
    assert after_exit == before
    assert [a[0] for a in addresses] == ["127.0.0.1"]
    sweeps = ops.metrics.sweeps.labels("nothing_to_do")._value.get()
    assert sweeps == 1
