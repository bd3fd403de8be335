"""Rule evaluation vs one order-book fetch: is the engine small next to the I/O it follows?

What a sweep pays per poll is evaluating the book *and* wording every decision's reason (it
journals each decision with its reason text), after fetching the book over a network. So in one
run, interleaved so that both see the same machine noise:
- ``guard.evaluate.engine.evaluate`` over 10,000 orders (3 accounts, HOSE/HNX/UPCoM symbols,
  varied sides, types, statuses, fills and ages) against 20 rules (max_age, before_close and at
  triggers, with account, board, symbol-glob, side, type, status, partial-fill and quantity
  filters), then every decision's ``reason`` read; and the same over 1,000 of those orders;
- one ``get_historical_orders`` of a 1,000-order book from the simulator through the real SDK
  (``AsyncAuth``/``AsyncTrading``) with 20 ms added to the request (the latency bench/sweep.py
  models for a broker across a network).

Each figure is the median of REPEATS repetitions. The target: evaluating and wording 1,000
orders costs at most 15% of that fetch (judged on the larger of the two figures: 10,000/10 and
1,000 timed directly). Exit status 1 on FAIL.

Printed for context, never judged: the same fetch on loopback with NO added latency (the
cheapest a fetch can be); ``evaluate`` alone, reasons not worded (what a poll that only decides
would pay); and the output contract's own floor: sorting the orders and building the same
``Decision`` tuples from answers given in advance (no filter, trigger or hold logic), a lower
bound for any engine that returns those objects from CPython.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import sys
import time
from datetime import datetime, timedelta
from decimal import Decimal

from ssi_sdk import AsyncAuth, AsyncTrading

from guard.clock import EXCHANGE_TZ, FakeClock
from guard.config.loader import load_rules_text
from guard.evaluate.engine import Decision, _sorted_live, evaluate
from guard.market.holidays import build_calendar
from guard.market.instruments import BoardMap
from guard.model import BookOrder
from guard.simulator.control import DEFAULT_SYMBOLS, Simulator
from guard.simulator.faults import Fault

REPEATS = 7
INNER_1K = 10  # 1,000-order evaluations per timed sample (then divided)
ORDERS = 10_000
FETCH = 1_000
TARGET_PCT = 15.0
LATENCY_S = 0.02  # added to the judged fetch
ACCOUNTS = ("0001234", "0001238", "0002001")
NOW = datetime(2026, 11, 23, 14, 26, 0, tzinfo=EXCHANGE_TZ)  # Monday, 4 min before HOSE ATC

RULES = """\
version: 1
accounts: ["0001234", "0001238", "0002001"]
dry_run: false
cancellable: [WA, RS, SD, QU, PF, PD]
limits: {max_cancels_per_sweep: 100000}
protect: {client_request_id_prefixes: ["keep-", "hedge-"]}
holidays: ["2026-12-31"]
boards: {VEA: UPCOM}
rules:
  - {name: stale-15m, max_age: 15m}
  - {name: stale-hose-buys, max_age: 5m, match: {boards: [HOSE], sides: [B]}}
  - {name: stale-hnx-sells, max_age: 10m, match: {boards: [HNX], sides: [S]}}
  - {name: stale-upcom, max_age: 30m, match: {boards: [UPCOM]}}
  - {name: stale-banks, max_age: 2m, match: {symbols: ["VCB", "CTG", "BID", "TCB"]}}
  - {name: stale-v-glob, max_age: 7m, match: {symbols: ["V*"]}}
  - {name: stale-big, max_age: 3m, match: {min_remaining_qty: 5000}}
  - {name: stale-queued-only, max_age: 20m, match: {statuses: [QU]}}
  - {name: stale-no-partials, max_age: 25m, match: {partially_filled: skip}}
  - {name: stale-acct2, max_age: 1h, match: {accounts: ["0001238"]}}
  - {name: stale-mtl, max_age: 1m, match: {order_types: [MTL, MP]}}
  - {name: stale-glob-mix, max_age: 45m, match: {symbols: ["S?I", "F*", "[HM]*"], sides: [S]}}
  - {name: close-hose, before_close: 5m, match: {boards: [HOSE]}}
  - {name: close-hnx-buys, before_close: 10m, match: {boards: [HNX], sides: [B]}}
  - {name: close-upcom, before_close: 15m, match: {boards: [UPCOM]}}
  - {name: close-all-big, before_close: 30m, match: {min_remaining_qty: 10000}}
  - {name: lunch, at: ["11:25"], match: {boards: [HOSE, HNX]}}
  - {name: fixed-times, at: ["09:30", "10:45", "14:26"], at_window: 2m, match: {sides: [S]}}
  - {name: fixed-acct3, at: ["14:25:30"], match: {accounts: ["0002001"], statuses: [QU, PF]}}
  - {name: fixed-derivs, at: ["14:20"], match: {boards: [DER]}}
"""

# Extra symbols so the board map and the globs have real work: (symbol, board).
_MORE = [(f"{a}{b}{c}", board)
         for a, board in (("A", "HOSE"), ("B", "HNX"), ("C", "UPCOM"), ("V", "HOSE"))
         for b in "ABCDEFGH" for c in "KLMN"]
SYMBOLS = [(s.symbol, s.board) for s in DEFAULT_SYMBOLS if s.board != "DERIVATIVES"] + _MORE
STATUSES = ("QU",) * 10 + ("PF",) * 3 + ("WA", "RS", "SD", "PD", "WC", "FF", "CL", "RJ", "FFPC")
TYPES = ("LO",) * 8 + ("MTL", "MP", "ATC")


def make_orders(n: int, rng: random.Random) -> list[BookOrder]:
    orders = []
    for i in range(n):
        symbol, _ = rng.choice(SYMBOLS)
        qty = rng.choice((100, 500, 1000, 5000, 20000))
        status = rng.choice(STATUSES)
        filled = qty // 2 if status in ("PF", "FFPC") else (qty if status == "FF" else 0)
        cancelled = qty - filled if status in ("CL", "FFPC") else 0
        order_type = rng.choice(TYPES)
        market = order_type != "LO"
        orders.append(BookOrder(
            account=rng.choice(ACCOUNTS), order_id=f"{i:08d}",
            client_request_id=rng.choice(("keep-1", "hedge-7", "")) + f"c{i}"
            if rng.random() < 0.05 else f"c{i}",
            symbol=symbol, side=rng.choice("BS"), order_type=order_type,
            price=None if market else Decimal(rng.randrange(10_000, 120_000, 50)),
            price_word=order_type if market else None,
            quantity=qty, filled=filled, cancelled=cancelled, status=status,
            input_time=NOW - timedelta(seconds=rng.randrange(0, 5 * 3600)),
        ))
    return orders


def time_evaluate(orders: list[BookOrder], rules: object, calendar: object, boards: object,
                  inner: int = 1) -> float:
    t = time.perf_counter()
    for _ in range(inner):
        evaluate(orders, rules, NOW, calendar, boards)  # type: ignore[arg-type]
    return (time.perf_counter() - t) / inner


def time_evaluate_worded(orders: list[BookOrder], rules: object, calendar: object,
                         boards: object, inner: int = 1) -> float:  # the judged figure
    """``evaluate``, then word every decision's reason, as a sweep's journal does."""
    t = time.perf_counter()
    for _ in range(inner):
        for d in evaluate(orders, rules, NOW, calendar, boards):  # type: ignore[arg-type]
            d.reason  # noqa: B018 -- the wording is the point
    return (time.perf_counter() - t) / inner


def time_contract_floor(orders: list[BookOrder], decisions: list[Decision],
                        inner: int = 1) -> float:
    """Filter and sort ``orders`` and rebuild ``decisions`` (their result), every answer given.

    The engine's own filter and sort, then one ``Decision`` tuple per live order from its
    board, verdict and hold given in advance: a lower bound for any engine with this output.
    """
    answers = {(d.order.account, d.order.order_id): (d.board, d.verdict, d.hold)
               for d in decisions}
    new = tuple.__new__
    t = time.perf_counter()
    for _ in range(inner):
        [new(Decision, (o, *answers[o.account, o.order_id])) for o in _sorted_live(orders)]
    return (time.perf_counter() - t) / inner


async def time_fetch(trading: AsyncTrading, account: str, day: str) -> tuple[float, int]:
    t = time.perf_counter()
    book = await trading.portfolio.get_historical_orders(account, day, day)
    return time.perf_counter() - t, len(book)


async def run() -> int:
    rng = random.Random(20261123)
    rules = load_rules_text(RULES, "bench-evaluate.yaml")
    calendar = build_calendar(rules.holidays)
    boards = BoardMap(NOW.date(), SYMBOLS, rules.boards)
    orders = make_orders(ORDERS, rng)
    first_k = orders[:FETCH]
    decisions = evaluate(orders, rules, NOW, calendar, boards)
    matched = sum(1 for d in decisions if d.verdict)
    to_cancel = sum(1 for d in decisions if d.cancel)

    sim = Simulator(clock=FakeClock(NOW.replace(hour=10, minute=0)), rate_limit=10,
                    key_bits=1024, accounts=(ACCOUNTS[0],))
    sim.start()
    try:
        hose = [s for s in DEFAULT_SYMBOLS if s.board == "HOSE"]
        for i in range(FETCH):
            s = hose[i % len(hose)]
            sim.seed_order(ACCOUNTS[0], s.symbol, side="BS"[i % 2], price=s.ref_price,
                           quantity=100,
                           age=timedelta(minutes=i % 60))
        day = NOW.strftime("%Y/%m/%d")
        worded_10k: list[float] = []
        worded_1k: list[float] = []
        evals_1k: list[float] = []
        fetches: list[float] = []
        fetches_20ms: list[float] = []
        floors: list[float] = []
        first_k_decisions = evaluate(first_k, rules, NOW, calendar, boards)
        # The SDK's defaults (10/s limiter); reads are spaced so no limiter wait is timed.
        async with AsyncAuth(sim.sdk_config(log_level="WARNING")) as auth:
            await auth.authenticate(otp=sim.credentials.otp)
            trading = AsyncTrading(auth)
            await time_fetch(trading, ACCOUNTS[0], day)  # warm the connection and the parser
            time_evaluate_worded(orders, rules, calendar, boards)  # warm caches
            for _ in range(REPEATS):
                await asyncio.sleep(1.0)  # both rate buckets full again: no pause in the read
                took, rows = await time_fetch(trading, ACCOUNTS[0], day)
                if rows != FETCH:
                    raise SystemExit(f"fetched {rows} orders, expected {FETCH}")
                fetches.append(took)
                await asyncio.sleep(1.0)
                sim.inject(Fault("latency", seconds=LATENCY_S, times=1))
                took, rows = await time_fetch(trading, ACCOUNTS[0], day)
                if rows != FETCH:
                    raise SystemExit(f"fetched {rows} orders, expected {FETCH}")
                fetches_20ms.append(took)
                worded_10k.append(time_evaluate_worded(orders, rules, calendar, boards))
                worded_1k.append(time_evaluate_worded(first_k, rules, calendar, boards,
                                                      INNER_1K))
                evals_1k.append(time_evaluate(first_k, rules, calendar, boards, INNER_1K))
                floors.append(time_contract_floor(first_k, first_k_decisions, INNER_1K))
    finally:
        sim.stop()

    fetch_20 = statistics.median(fetches_20ms)
    loopback = statistics.median(fetches)
    w10k = statistics.median(worded_10k)
    per_1k_from_10k = w10k / 10
    per_1k_direct = statistics.median(worded_1k)
    worst = max(per_1k_from_10k, per_1k_direct)
    pct = 100 * worst / fetch_20
    plain = statistics.median(evals_1k)
    floor = statistics.median(floors)
    ms = f"{LATENCY_S * 1e3:g} ms"

    def row(name: str, samples: list[float] | None, median: float) -> None:
        spread = (f" {min(samples) * 1e3:>8.2f} {max(samples) * 1e3:>8.2f}"
                  if samples is not None else "")
        print(f"{name:<52} {median * 1e3:>10.2f}{spread}")

    print(f"bench/evaluate.py: {ORDERS:,} orders x {len(rules.rules)} rules at "
          f"{NOW:%Y-%m-%d %H:%M} exchange time ({len(decisions):,} live orders, {matched:,} "
          f"matched, {to_cancel:,} to cancel); fetch = get_historical_orders of a {FETCH:,}-order "
          f"book from the simulator via the real SDK, +{ms} latency (judged) and loopback with "
          f"no added latency (context); median of {REPEATS} interleaved repetitions\n")
    print(f"{'measurement':<52} {'median ms':>10} {'min ms':>8} {'max ms':>8}")
    row("evaluate + word 10,000 orders", worded_10k, w10k)
    row("evaluate + word 1,000 orders (10,000 / 10)", None, per_1k_from_10k)
    row("evaluate + word 1,000 orders (timed directly)", worded_1k, per_1k_direct)
    row(f"fetch 1,000 orders, +{ms} latency", fetches_20ms, fetch_20)
    row("fetch 1,000 orders, loopback (context)", fetches, loopback)
    row("evaluate 1,000 orders, reasons unworded (context)", evals_1k, plain)
    row("contract floor, 1,000 orders (context)", floors, floor)
    print(f"\nevaluating and wording 1,000 orders = {100 * per_1k_from_10k / fetch_20:.1f}% "
          f"(from 10,000) / {100 * per_1k_direct / fetch_20:.1f}% (direct) of fetching 1,000 "
          f"with {ms} latency; side by side, {100 * worst / loopback:.1f}% of a loopback fetch "
          "(context, not judged)")
    print(f"evaluating 1,000 orders without wording = {100 * plain / fetch_20:.1f}% of the "
          f"{ms} fetch, {100 * plain / loopback:.1f}% of a loopback fetch (context, not judged)")
    print(f"the contract floor alone (filter + sort + one Decision tuple each, no rule logic) = "
          f"{100 * floor / fetch_20:.1f}% of the {ms} fetch (context, not judged)")
    ok = pct <= TARGET_PCT
    print(f"\n  {'PASS' if ok else 'FAIL'}  evaluating and wording 1,000 orders costs {pct:.1f}% "
          f"of fetching 1,000 with {ms} latency (target <= {TARGET_PCT:g}%, judged on the "
          "larger figure)")
    return 0 if ok else 1


def main() -> int:
    return asyncio.run(run())


if __name__ == "__main__":
    sys.exit(main())
