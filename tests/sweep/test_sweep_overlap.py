"""Sweeps that overlap in one guard (a poll beside a fixed-time sweep, or a slow
batch still on the wire when the next poll fires): one session, one claim per order, one
cancel per order, one outcome per intent."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

from kit import ACCT, BATCH, OTHER, STALE, wait_until
from kit.sweep import Guard, assert_one_outcome_per_intent, outcomes, rules_text

from guard.simulator.control import Simulator
from guard.simulator.faults import Fault
from guard.sweep import SweepReport, run_sweep


def sent_ids(sim: Simulator) -> Counter[str]:
    return Counter(i["orderId"] for r in sim.requests_to("DELETE", BATCH)
                   for i in r.body["orders"])


def test_two_sweeps_started_together_send_each_cancel_once(
    sim: Simulator, tmp_path: Path
) -> None:
    """Both log in through one session (not two logins, not "OTP already spent"), both plan
    from the same book, and only one of them may send each order's cancel."""
    ids = [sim.seed_order(ACCT, "SSI", age=STALE) for _ in range(3)]
    ids += [sim.seed_order(OTHER, "VNM", "B", 62_000, age=STALE) for _ in range(2)]
    guard = Guard(sim, tmp_path / "state", rules_text())

    async def together() -> list[SweepReport]:
        async with guard.context() as ctx:
            return list(await asyncio.gather(run_sweep(ctx, "poll"), run_sweep(ctx, "at")))

    reports = asyncio.run(together())
    assert len(sim.requests_to("POST", "/api/v3/auth/token")) == 1
    assert sent_ids(sim) == Counter({i: 1 for i in ids})
    assert sorted(sim.accepted_cancels()) == sorted(ids)
    assert sorted(r.result for r in reports) == ["nothing_to_do", "ok"]
    assert sum(len(r.plan.batches) for r in reports) == 2  # one batch per account
    assert_one_outcome_per_intent(guard.journal_path)


def test_a_sweep_beside_an_in_flight_sweep_leaves_its_intents_alone(
    sim: Simulator, tmp_path: Path
) -> None:
    """Two sweeps of one guard overlap (a poll while a slow batch is on the wire): the second
    must not call the first's intents orphans, nor send their orders again."""
    ids = [sim.seed_order(ACCT, "SSI", age=STALE) for _ in range(2)]
    sim.inject(Fault("latency", "DELETE", BATCH, seconds=0.6))
    guard = Guard(sim, tmp_path / "state", rules_text())

    async def both() -> tuple[str, str]:
        async with guard.context() as ctx:
            first = asyncio.create_task(run_sweep(ctx, "first"))
            # Start the second once the first's batch is on the wire (a thread polls the
            # simulator; the event loop must stay free to run the first sweep).
            arrived = await asyncio.to_thread(
                wait_until, lambda: bool(sim.requests_to("DELETE", BATCH)), 5.0)
            assert arrived
            second = await run_sweep(ctx, "second")
            return (await first).result, second.result

    first, second = asyncio.run(both())
    assert first == "ok" and second == "nothing_to_do"
    assert sorted(sim.accepted_cancels()) == sorted(ids)
    assert len(sim.requests_to("DELETE", BATCH)) == 1
    got = outcomes(guard.journal_path)
    assert {k: [r[0] for r in v] for k, v in got.items()} == {i: ["cancelled"] for i in ids}
    assert_one_outcome_per_intent(guard.journal_path)


