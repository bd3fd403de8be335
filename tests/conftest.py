"""Shared fixtures: a simulator on loopback with a market clock the test controls."""

from __future__ import annotations

import io
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest
import structlog
from kit import ACCOUNTS, MONDAY_10AM, wait_until
from ssi_sdk import AsyncAuth, AsyncTrading, Auth, Trading

from guard.clock import FakeClock
from guard.record.log import configure_logging
from guard.simulator.control import Simulator


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


# ---- SDK clients on the simulator (tests/test_sim_*.py) -------------------------------------


@pytest.fixture
def sdk(sim: Simulator) -> Iterator[Callable[..., tuple[Auth, Trading]]]:
    """``sdk(**config_overrides)``: a logged-in sync ``(Auth, Trading)`` on ``sim``.

    Every client made is closed at teardown. ``login=False`` skips ``authenticate``.
    """
    made: list[Auth] = []

    def make(*, login: bool = True, **overrides: Any) -> tuple[Auth, Trading]:
        auth = Auth(sim.sdk_config(**overrides))
        made.append(auth)
        if login:
            auth.authenticate(otp=sim.credentials.otp)
        return auth, Trading(auth)

    yield make
    for auth in made:
        auth.close()


@pytest.fixture
def async_sdk(
    sim: Simulator,
) -> Callable[..., AbstractAsyncContextManager[tuple[AsyncAuth, AsyncTrading]]]:
    """``async with async_sdk(**config_overrides) as (auth, trading)``: a logged-in async client."""

    @asynccontextmanager
    async def open_client(
        *, login: bool = True, **overrides: Any
    ) -> AsyncIterator[tuple[AsyncAuth, AsyncTrading]]:
        async with AsyncAuth(sim.sdk_config(**overrides)) as auth:
            if login:
                await auth.authenticate(otp=sim.credentials.otp)
            yield auth, AsyncTrading(auth)

    return open_client


@pytest.fixture
def until() -> Callable[..., bool]:
    """``until(predicate, timeout=3.0)``: see ``wait_until``."""
    return wait_until


# ---- logging (tests/record/test_redact.py, tests/sweep/test_sweep_secrets.py) ----------


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """The process's logging, JSON, into a buffer; restored afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    buffer = io.StringIO()
    configure_logging(level="DEBUG", fmt="json", stream=buffer)
    yield buffer
    structlog.reset_defaults()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
