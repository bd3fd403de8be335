"""The tests' shared kit: constants, rule builders, guards on the simulator, log recorders.

Everything a test needs twice lives here once: ``kit.sweep`` (a guard's sweeps on the
simulator, journal readers), ``kit.daemon`` (the daemon as a subprocess), ``kit.clocks``
(a market clock running in real time, exact mtimes), ``kit.ops`` (alerts,
metrics and /healthz), ``kit.log`` (recorders of log events).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from guard.clock import EXCHANGE_TZ

__all__ = ["ACCOUNTS", "ACCT", "AT", "BATCH", "BOOK", "DAY", "FRESH", "MONDAY_10AM", "OTHER",
           "REPO", "SINGLE", "STALE", "wait_until"]

REPO = Path(__file__).resolve().parents[2]  # the repository's root: rules.yaml, docs/, systemd/

ACCT = "0001234"
OTHER = "0001238"
ACCOUNTS = (ACCT, OTHER)

BOOK = "/api/v3/trading/orderBook"
BATCH = "/api/v3/trading/order/batch"
SINGLE = "/api/v3/trading/order"

# A Monday, mid-morning continuous trading on every board.
MONDAY_10AM = datetime(2026, 11, 23, 10, 0, 0, tzinfo=EXCHANGE_TZ)
DAY = "2026/11/23"  # the same day as the broker writes it
AT = "2026-11-23T10:00:00"  # the same instant, as --at takes it

STALE = timedelta(minutes=20)  # older than the test rules' 15m max_age
FRESH = timedelta(minutes=2)


def wait_until(predicate: Callable[[], bool], timeout: float = 3.0) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` (s) passes; no fixed sleeps in tests."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()
