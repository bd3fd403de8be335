"""The one request budget of an API key: a token bucket (burst one less than the rate) whose
waiters are served cancels first, then the pages a decision waits for, proof, confirmation,
and the rest; accounts by rank within a priority."""

from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st

from guard.broker.budget import Budget, Priority, spending
from guard.simulator.ratelimit import TokenBuckets


def test_waiters_are_served_by_priority_then_account_rank_then_arrival() -> None:
    async def scenario() -> list[str]:
        budget = Budget(20)
        for _ in range(20):
            await budget.take()  # the burst is spent: every later call waits
        order: list[str] = []

        async def call(name: str, priority: Priority, rank: int) -> None:
            with spending(priority, rank):
                await budget.take()
            order.append(name)

        calls = [("cash-after", Priority.BACKGROUND, 0), ("confirm-A", Priority.CONFIRM, 0),
                 ("page-B", Priority.DECIDE, 1), ("batch-B", Priority.CANCEL, 1),
                 ("page-A", Priority.DECIDE, 0), ("batch-A", Priority.CANCEL, 0),
                 ("proof-A", Priority.PROOF, 0), ("batch-A2", Priority.CANCEL, 0)]
        tasks = []
        for name, priority, rank in calls:
            tasks.append(asyncio.ensure_future(call(name, priority, rank)))
            await asyncio.sleep(0)  # queued in this order
        await asyncio.gather(*tasks)
        return order

    assert asyncio.run(scenario()) == ["batch-A", "batch-A2", "batch-B", "page-A", "page-B",
                                       "proof-A", "confirm-A", "cash-after"]


def test_the_rate_holds_and_a_full_bucket_is_a_burst_of_one_less_than_the_rate() -> None:
    async def scenario() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        budget = Budget(10)
        assert budget.full()
        start = loop.time()
        await asyncio.gather(*(budget.take() for _ in range(9)))
        burst = loop.time() - start
        await asyncio.gather(*(budget.take() for _ in range(5)))
        return burst, loop.time() - start

    burst, paced = asyncio.run(scenario())
    assert burst < 0.05  # nine at once
    assert paced >= 0.45  # five more at 10/s


@given(st.floats(0.0, 0.1), st.integers(1, 40))
def test_the_servers_remaining_never_reads_zero_when_the_burst_lands_late(
        late_s: float, n: int) -> None:
    """The budget's grants (a burst of ``rate - 1`` at once, then one per ``1/rate``), with
    the burst reaching the simulator's bucket (10/s, burst 10, remaining rounded down) up to
    100 ms late: no reply says ``X-RateLimit-Remaining: 0``, on which the SDK would rest a
    whole second. A burst of the full rate fails this once it lands 12 ms late."""
    rate = 9
    burst = Budget(rate).burst
    grants = [0.0] * int(burst) + [(k + 1) / rate for k in range(n)]
    arrivals = [late_s] * int(burst) + grants[int(burst):]
    now = [0.0]
    server = TokenBuckets(10, monotonic=lambda: now[0])
    for at in sorted(arrivals):
        now[0] = at
        admission = server.admit("key")
        assert admission.allowed and admission.remaining >= 1, (at, admission)


def test_a_pause_holds_every_waiter_and_a_cancelled_waiter_gives_nothing_away() -> None:
    async def scenario() -> tuple[float, int]:
        loop = asyncio.get_running_loop()
        budget = Budget(50)
        budget.pause(0.3)  # the server said its quota is spent
        start = loop.time()
        gone = asyncio.ensure_future(budget.take())
        await asyncio.sleep(0.01)
        gone.cancel()
        await budget.take()
        return loop.time() - start, budget.waiting

    waited, left = asyncio.run(scenario())
    assert waited >= 0.29 and left == 0
