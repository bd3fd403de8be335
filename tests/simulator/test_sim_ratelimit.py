"""Simulator conformance: the gateway's 10 requests/s per API key, its 429 reply and
``X-RateLimit-*`` headers, and how the real ``ssi_sdk`` meets them (limiter on and off).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
import pytest
from kit import ACCT, DAY
from ssi_sdk import RateLimitError

from guard.clock import EXCHANGE_TZ, FakeClock
from guard.simulator.control import Simulator
from guard.simulator.faults import Fault

INFO = "/api/v3/account/info"


def _burst(sim: Simulator, token: str, n: int) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=sim.url, headers=headers) as client:
            return list(await asyncio.gather(*(client.get(INFO) for _ in range(n))))

    return asyncio.run(run())


def test_a_burst_past_10_per_second_is_429_with_retry_after(sim: Simulator, sdk: Any) -> None:
    auth, _ = sdk()  # the login took one token of the key's bucket
    replies = _burst(sim, auth.token.access_token, 25)
    ok = [r for r in replies if r.status_code == 200]
    refused = [r for r in replies if r.status_code == 429]
    assert len(ok) + len(refused) == 25
    assert len(ok) >= 9 and len(refused) >= 5  # a burst of 10, plus what refills meanwhile
    assert sim.buckets.refused == len(refused)

    for reply in refused:
        assert float(reply.headers["Retry-After"]) >= 1
        assert reply.headers["X-RateLimit-Limit"] == "10"
        assert reply.headers["X-RateLimit-Remaining"] == "0"
        assert reply.json()["code"] == 429100 and reply.json()["msg"]
    assert {r.headers["X-RateLimit-Limit"] for r in ok} == {"10"}
    assert min(int(r.headers["X-RateLimit-Remaining"]) for r in ok) == 0
    assert max(int(r.headers["X-RateLimit-Remaining"]) for r in ok) >= 7


def test_the_limit_is_per_api_key_and_refills(sim: Simulator, sdk: Any,
                                              until: Callable[..., bool]) -> None:
    auth, _ = sdk()
    token = auth.token.access_token
    assert any(r.status_code == 429 for r in _burst(sim, token, 20))
    # Another key (here: an anonymous caller) has its own bucket: 401, not 429.
    assert httpx.get(sim.url + INFO).status_code == 401
    started = time.monotonic()
    assert until(lambda: httpx.get(sim.url + INFO, headers={
        "Authorization": f"Bearer {token}"}).status_code == 200, timeout=2)
    assert time.monotonic() - started < 1.0  # 10/s: a token is back within 0.1 s or so


def test_a_refresh_with_a_stale_token_counts_against_the_api_key() -> None:
    # 1 request/s: the login spends the key's only token for a whole second.
    clock = FakeClock(datetime(2026, 11, 23, 10, tzinfo=EXCHANGE_TZ))
    with Simulator(clock=clock, key_bits=1024, rate_limit=1) as sim, httpx.Client(
        base_url=sim.url
    ) as client:
        c = sim.credentials
        login = client.post("/api/v3/auth/token",
                            json={"apiKey": c.api_key, "apiSecret": c.api_secret, "otp": c.otp})
        assert login.headers["X-RateLimit-Remaining"] == "0"
        token = login.json()["data"]
        sim.expire_tokens()
        refresh = client.post("/api/v3/auth/refresh",
                              json={"refreshToken": token["refreshToken"]},
                              headers={"Authorization": f"Bearer {token['accessToken']}"})
        # Metered under the apiKey its stale bearer token names, not as an anonymous caller.
        assert refresh.status_code == 429
        assert client.get(INFO).status_code == 401  # an anonymous caller has its own bucket


def test_sdk_with_its_limiter_off_gets_rate_limit_errors_on_cancels(
    sim: Simulator, async_sdk: Any
) -> None:
    ids = [sim.seed_order(ACCT, "SSI") for _ in range(25)]

    async def run() -> list[Any]:
        async with async_sdk(rate_limit_per_second=0) as (_, trading):
            return list(await asyncio.gather(
                *(trading.trading.cancel_order_by_order_id(ACCT, i) for i in ids),
                return_exceptions=True))

    results = asyncio.run(run())
    limited = [(i, r) for i, r in zip(ids, results, strict=True) if isinstance(r, Exception)]
    assert limited and all(isinstance(r, RateLimitError) for _, r in limited)
    for order_id, error in limited:
        assert (error.status_code, error.retry_after_ms) == (429, 1000.0)
        assert (error.limit, error.remaining) == (10, 0)
        assert sim.order(order_id).status == "QU"  # lost: a DELETE is never retried
    assert len(sim.requests_to("DELETE", "/api/v3/trading/order")) == 25
    assert len(sim.accepted_cancels()) == 25 - len(limited)


def test_the_sdk_limiter_keeps_25_sequential_gets_free_of_429(sim: Simulator, sdk: Any) -> None:
    sim.seed_order(ACCT, "SSI")
    _, trading = sdk()
    for _ in range(25):
        assert len(trading.portfolio.get_historical_orders(ACCT, DAY, DAY)) == 1
    assert sim.buckets.refused == 0
    assert all(r.status != 429 for r in sim.requests)


def test_the_sdk_waits_out_a_429_on_get(sim: Simulator, sdk: Any) -> None:
    sim.seed_order(ACCT, "SSI")
    _, trading = sdk()
    sim.inject(Fault("error", method="GET", path="/api/v3/trading/orderBook", status=429,
                     retry_after=0.1))
    assert len(trading.portfolio.get_historical_orders(ACCT, DAY, DAY)) == 1
    assert [r.status for r in sim.requests_to("GET", "/api/v3/trading/orderBook")] == [429, 200]


def test_a_429_on_delete_is_raised_at_once(sim: Simulator, sdk: Any) -> None:
    order_id = sim.seed_order(ACCT, "SSI")
    _, trading = sdk()
    sim.inject(Fault("error", method="DELETE", status=429, retry_after=2))
    with pytest.raises(RateLimitError) as exc:
        trading.trading.cancel_order_by_order_id(ACCT, order_id)
    assert exc.value.retry_after_ms == 2000.0
    assert len(sim.requests_to("DELETE", "/api/v3/trading/order")) == 1
    assert sim.order(order_id).status == "QU"
