"""Shared fixtures: a simulator on loopback with a market clock the test controls."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest

from guard.clock import EXCHANGE_TZ, FakeClock
from guard.simulator.control import Simulator

ACCOUNTS = ("0001234", "0001238")
# A Monday, mid-morning continuous trading on every board.
MONDAY_10AM = datetime(2026, 11, 23, 10, 0, 0, tzinfo=EXCHANGE_TZ)


@pytest.fixture
def market_clock() -> FakeClock:
    return FakeClock(MONDAY_10AM)


@pytest.fixture
def sim(market_clock: FakeClock) -> Iterator[Simulator]:
    """A running simulator. 1024-bit keys keep the SDK's pure-Python signing fast in tests."""
    with Simulator(
        clock=market_clock, key_bits=1024, cancel_delay=0.05, accounts=ACCOUNTS
    ) as simulator:
        yield simulator
