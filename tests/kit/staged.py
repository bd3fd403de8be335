"""A staged critical sweep on the simulator: twelve accounts (more books than one burst of the
request budget), one FPT order each, the daemon's pre-read at 14:24:52 and the pre-close
sweep at 14:25 (tests/sweep/test_preclose_staged.py and the review files beside it)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from guard.simulator.control import Simulator
from guard.snapshot.fetch import pre_read
from guard.sweep import SweepContext, SweepReport, run_sweep
from kit import BATCH, FRESH, SINGLE
from kit.sweep import at

__all__ = ["ACCOUNTS", "LAST", "TRIGGER", "cancelled_ids", "open_fpt", "pre_read_then_sweep",
           "rules", "setup"]

ACCOUNTS = tuple(f"001{i:02d}01" for i in range(12))
LAST = ACCOUNTS[-1]
TRIGGER = "pre-close:pull-before-atc"


def rules(max_cancels: int = 200, *, dry: bool = False, extra: str = "") -> str:
    return f"""
version: 1
accounts: [{", ".join(f'"{a}"' for a in ACCOUNTS)}]
dry_run: {"true" if dry else "false"}
limits: {{max_cancels_per_sweep: {max_cancels}, confirm_timeout: 5s}}
rules:
  - name: pull-before-atc
    before_close: 5m
    match: {{boards: [HOSE], symbols: ["FPT"]}}
{extra}"""


def open_fpt(sim: Simulator, account: str, n: int = 1) -> list[str]:
    return [sim.seed_order(account, "FPT", "B", 95_000, 100, age=FRESH) for _ in range(n)]


def setup(sim: Simulator) -> dict[str, list[str]]:
    for account in ACCOUNTS:
        if account not in sim.exchange.accounts:
            sim.add_account(account)
    return {a: open_fpt(sim, a) for a in ACCOUNTS}


async def pre_read_then_sweep(ctx: SweepContext, sim: Simulator,
                              between: Callable[[], object] = lambda: None, *,
                              critical: bool = True, marks: list[int] | None = None,
                              pre_read_ok: int = len(ACCOUNTS)) -> SweepReport:
    """The daemon's pre-read at 14:24:52 (``pre_read_ok`` books read), ``between()``, a full
    budget, the sweep at 14:25 (``marks`` gets the simulator's request count at the second)."""
    sim.set_clock(at(sim, 14, 24, 52))
    await ctx.broker.ensure_session()
    read = await pre_read(ctx.broker, list(ACCOUNTS), sim.clock().date(), ctx.recent, ctx.log)
    assert read == pre_read_ok
    between()
    await asyncio.sleep(1.2)  # the budget refills before the second, as the daemon keeps it
    sim.set_clock(at(sim, 14, 25, 0))
    if marks is not None:
        marks.append(len(sim.requests))
    return await run_sweep(ctx, TRIGGER, critical=critical)


def cancelled_ids(sim: Simulator) -> list[str]:
    """Every order a DELETE (batch or single) asked to cancel, repeats included."""
    out = [i["orderId"] for r in sim.requests_to("DELETE", BATCH) for i in r.body["orders"]]
    return out + [r.body["orderId"] for r in sim.requests_to("DELETE", SINGLE)]
