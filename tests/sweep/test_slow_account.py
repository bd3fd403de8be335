"""A steadily slow account is not starved by the straggler cut-off: cut off in one sweep, it
is waited for in full by the next; the operator's cancel-all never cuts an account off."""

from __future__ import annotations

import asyncio
from pathlib import Path

from kit import ACCT, BOOK, OTHER, STALE
from kit.sweep import Guard, rules_text

from guard.service.panic import CancelAll, PanicResult, press
from guard.simulator.control import Simulator
from guard.simulator.faults import Fault
from guard.sweep import SweepReport, run_sweep


def test_a_slow_account_cut_off_once_is_read_in_full_next_time(
        sim: Simulator, tmp_path: Path) -> None:
    mine = sim.seed_order(ACCT, "SSI", "B", 27_000, 100, age=STALE)
    other = [sim.seed_order(OTHER, "VNM", "B", 62_000, 100, age=STALE) for _ in range(2)]
    sim.inject(Fault("latency", "GET", BOOK, seconds=2.5, times=None, account=OTHER))
    guard = Guard(sim, tmp_path / "state", rules_text())

    async def two_sweeps() -> list[SweepReport]:
        async with guard.context() as ctx:  # one daemon: the same context for both sweeps
            return [await run_sweep(ctx, "poll"), await run_sweep(ctx, "poll")]

    first, second = asyncio.run(two_sweeps())
    assert [a for a, _ in first.unread_accounts] == [OTHER]
    assert "left out of this sweep" in dict(first.unread_accounts)[OTHER]
    assert sim.order(mine).status == "CL"  # the fast account was not held back
    assert second.unread_accounts == () and second.result == "ok"
    assert all(sim.order(o).status == "CL" for o in other)


def test_cancel_all_waits_for_every_account(sim: Simulator, tmp_path: Path) -> None:
    sim.seed_order(ACCT, "SSI", "B", 27_000, 100, age=STALE)
    slow = sim.seed_order(OTHER, "VNM", "B", 62_000, 100, age=STALE)
    sim.inject(Fault("latency", "GET", BOOK, seconds=2.5, times=None, account=OTHER))
    guard = Guard(sim, tmp_path / "state", rules_text())

    async def pressed() -> PanicResult:
        async with guard.context() as ctx:
            return await press(ctx, CancelAll())

    result = asyncio.run(pressed())
    assert result.unread == ()
    assert sim.order(slow).status == "CL"


def test_a_critical_sweep_never_waits_in_full_for_a_slow_account(
        sim: Simulator, tmp_path: Path) -> None:
    """A pre-close right after a poll cut an account off must not wait for it in full (its
    time is the point): it cuts it off again after STRAGGLER_S; the next poll waits."""
    import time

    from guard.snapshot.fetch import STRAGGLER_S

    sim.seed_order(ACCT, "SSI", "B", 27_000, 100, age=STALE)
    sim.inject(Fault("latency", "GET", BOOK, seconds=6.0, times=None, account=OTHER))
    guard = Guard(sim, tmp_path / "state", rules_text())

    async def sweeps() -> tuple[list[SweepReport], float]:
        async with guard.context() as ctx:
            poll = await run_sweep(ctx, "poll")
            sim.seed_order(ACCT, "VNM", "B", 62_000, 100, age=STALE)
            t0 = time.monotonic()
            critical = await run_sweep(ctx, "pre-close:close", critical=True)
            return [poll, critical], time.monotonic() - t0

    (poll, critical), took = asyncio.run(sweeps())
    assert [a for a, _ in poll.unread_accounts] == [OTHER]
    assert [a for a, _ in critical.unread_accounts] == [OTHER]
    assert took < STRAGGLER_S + 3.0  # not the 6 s of a full read
