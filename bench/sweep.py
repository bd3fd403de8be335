"""Cancel throughput: the seed tutorial's async flow vs the guard's sweep, side by side.

For N = 20, 100 and 500 stale HOSE orders in one account, each flow runs against its own fresh
simulator, seeded identically: 10 requests/s per API key, 20 ms of added latency on every
request, cancels that stay WC for ``CANCEL_DELAY`` s, a FakeClock frozen at Monday 10:00
(continuous trading, so cancels are allowed) and 2048-bit keys (SSI's real size) unless
``--key-bits`` says otherwise.

- seed: transcribed from 09-cancel-order.vi.txt (async sample). AsyncAuth/AsyncTrading with the
  SDK's default Config (its own 10/s limiter), ``get_historical_orders`` for the exchange date,
  the five cancellable statuses, ``asyncio.gather`` of single cancels, then a poll of the book
  every POLL_S until every order it cancelled is final or the deadline passes.
- guard: ``run_sweep`` with ``max_age: 15m``, ``dry_run: false`` and a breaker above N.

Each flow runs in a child process, the simulator in this one: as in production, the client's
pure-Python RSA signing does not share a GIL with the server.

Every figure is a ratio measured in this run; nothing is compared with an absolute time. The
floor is what the rate limit allows: ``ceil(N/20)/10`` s of batch DELETEs at 10/s, plus the
confirmation, defined here as ``CANCEL_DELAY`` + one order-book read of N orders (the median of
3 reads timed in this run against the same simulator).

Exit status: 1 if a guard target at N=500 fails (zero lost; >= 10x faster than the seed;
within 1.5x of the floor). The seed's numbers are reported, not judged.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import math
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ACCOUNT = "0001234"
MONDAY_10AM = (2026, 11, 23, 10, 0, 0)  # exchange time; continuous trading on HOSE
HOSE = ("SSI", "VNM", "FPT", "HPG", "MWG", "VCB")
SIZES = (20, 100, 500)
RATE = 10  # server limit, requests/s per API key
LATENCY_S = 0.02  # added to every request
CANCEL_DELAY = 0.2  # real seconds a cancel stays WC
BATCH = 20
SEED_DEADLINE_S = 100.0  # the whole seed flow, from login; what it achieved by then is reported
SEED_CONFIRM_S = 60.0  # the seed's poll after its gather, capped by SEED_DEADLINE_S
POLL_S = 0.1  # the seed's poll interval (the seed page shows one re-read; this is generous)
TERMINAL = frozenset({"FF", "CL", "RJ", "EX", "FFPC"})
SEED_CANCELLABLE = ("WA", "RS", "SD", "QU", "PF")

RULES = """\
version: 1
accounts: ["{account}"]
dry_run: false
limits:
  max_cancels_per_sweep: {limit}
  confirm_timeout: 60s
rules:
  - name: stale
    max_age: 15m
"""


# ---- instrumentation (child process) --------------------------------------------------------


class Probe:
    """What the SDK did inside one flow: limiter pauses (``X-RateLimit-Remaining: 0`` or 429),
    and time spent signing."""

    def __init__(self) -> None:
        self.pauses: list[tuple[float, float]] = []
        self.sign_s = 0.0
        self.signatures = 0

    def watch_limiter(self, rest_client: Any) -> None:
        limiter = rest_client._rate_limiter
        original = limiter.pause

        def pause(seconds: float) -> None:
            if seconds > 0:
                self.pauses.append((time.monotonic(), seconds))
            original(seconds)

        limiter.pause = pause

    def paused_s(self, until: float) -> float:
        """Wall time covered by the union of pause windows, up to ``until``."""
        total, end = 0.0, 0.0
        for at, seconds in sorted(self.pauses):
            start, stop = max(at, end), min(at + seconds, until)
            if stop > start:
                total += stop - start
                end = stop
        return total

    def watch_signing(self) -> Callable[[], None]:
        """Time every RSA signature: the SDK's own cancel methods (the seed flow) sign in
        ``_sign_and_encode``; the guard's client signs the same body with ``ssi_sdk.utils.sign``
        (it reads the raw reply; see guard/broker/client.py)."""
        import ssi_sdk.services.trading as trading

        import guard.broker.client as client

        def timing(original: Callable[..., Any]) -> Callable[..., Any]:
            def timed(*args: Any, **kwargs: Any) -> Any:
                t = time.perf_counter()
                try:
                    return original(*args, **kwargs)
                finally:
                    self.sign_s += time.perf_counter() - t
                    self.signatures += 1
            return timed

        originals = (trading._sign_and_encode, client.sign)
        trading._sign_and_encode = timing(originals[0])
        client.sign = timing(originals[1])  # type: ignore[attr-defined]

        def undo() -> None:
            trading._sign_and_encode, client.sign = originals  # type: ignore[attr-defined]

        return undo


def _market_now() -> datetime:
    from guard.clock import EXCHANGE_TZ

    return datetime(*MONDAY_10AM, tzinfo=EXCHANGE_TZ)


def _sdk_config(env: dict[str, str]) -> Any:
    from ssi_sdk import Config

    # The seed's Config: credentials and URL only, every other setting at the SDK's default.
    return Config(client_id=env["SSI_CLIENT_ID"], api_key=env["SSI_API_KEY"],
                  api_secret=env["SSI_API_SECRET"], private_key=env["SSI_PRIVATE_KEY"],
                  api_url=env["SSI_API_URL"])


# ---- the seed's async flow (child process) ----------------------------------------------------


async def _seed_flow(env: dict[str, str]) -> dict[str, Any]:
    from ssi_sdk import AsyncAuth, AsyncTrading
    from ssi_sdk.enums import OrderStatus

    cancellable = {OrderStatus.PENDING_APPROVAL, OrderStatus.READY, OrderStatus.SENT,
                   OrderStatus.QUEUED, OrderStatus.PARTIAL_FILLED}
    probe = Probe()
    undo = probe.watch_signing()
    day = _market_now().strftime("%Y/%m/%d")  # the exchange date, not the host's
    t0 = time.monotonic()
    deadline = t0 + SEED_DEADLINE_S
    out: dict[str, Any] = {"cut_off": False}
    try:
        async with AsyncAuth(_sdk_config(env)) as auth:
            probe.watch_limiter(auth.rest_client)
            await auth.authenticate(otp=env["SSI_OTP"])  # ensure_auth_async, without input()
            async with AsyncTrading(auth) as trading:
                orders = await trading.portfolio.get_historical_orders(ACCOUNT, day, day)
                open_orders = [o for o in orders if o.status in cancellable]
                # The seed: every open order at once, unbounded.
                gathered = asyncio.ensure_future(asyncio.gather(
                    *[trading.trading.cancel_order_by_order_id(account_no=ACCOUNT,
                                                               order_id=o.order_id)
                      for o in open_orders],
                    return_exceptions=True,
                ))
                done, _ = await asyncio.wait({gathered}, timeout=deadline - time.monotonic())
                if not done:
                    out["cut_off"] = True
                    gathered.cancel()
                    await asyncio.gather(gathered, return_exceptions=True)
                    results: list[Any] = []
                else:
                    results = gathered.result()
                t_sent = time.monotonic()
                errors = Counter(type(r).__name__ for r in results if isinstance(r, BaseException))
                ok = {o.order_id for o, r in zip(open_orders, results, strict=False)
                      if not isinstance(r, BaseException)}
                # Confirm: re-read the book until every cancel it made is final.
                confirmed_at = None
                poll_end = min(deadline, t_sent + SEED_CONFIRM_S)
                reads = 0
                while time.monotonic() < poll_end:
                    book = await trading.portfolio.get_historical_orders(ACCOUNT, day, day)
                    reads += 1
                    final = {o.order_id for o in book if str(getattr(o.status, "value", o.status))
                             in TERMINAL}
                    if ok <= final:
                        confirmed_at = time.monotonic()
                        break
                    await asyncio.sleep(POLL_S)
    finally:
        undo()
    end = confirmed_at or time.monotonic()
    out.update(
        open_before=len(open_orders), sent=len(results), ok=len(ok), errors=dict(errors),
        wall_s=end - t0, send_s=t_sent - t0, confirm_s=end - t_sent,
        confirmed=confirmed_at is not None, reads=reads,
        pauses=len(probe.pauses), paused_s=probe.paused_s(end),
        sign_s=probe.sign_s, signatures=probe.signatures,
    )
    return out


# ---- the guard's sweep (child process) -------------------------------------------------------


async def _guard_flow(env: dict[str, str], n: int) -> dict[str, Any]:
    import structlog
    from timed import timed_broker

    from guard.clock import FakeClock
    from guard.config.loader import load_rules_text
    from guard.market.holidays import build_calendar
    from guard.record.journal import Journal
    from guard.settings import load_credentials
    from guard.sweep import SweepContext, run_sweep

    spans: list[tuple[str, float, float]] = []

    TimedBroker = timed_broker(spans)

    with tempfile.TemporaryDirectory() as tmp:
        rules = load_rules_text(RULES.format(account=ACCOUNT, limit=max(1000, n)), "bench.yaml")
        probe = Probe()
        undo = probe.watch_signing()
        journal = Journal(Path(tmp) / "journal.sqlite3")
        broker = TimedBroker(load_credentials(env), None)
        try:
            await broker.open()
            probe.watch_limiter(broker.auth.rest_client)
            ctx = SweepContext(broker=broker, rules=rules, calendar=build_calendar(rules.holidays),
                               journal=journal, state_dir=Path(tmp),
                               clock=FakeClock(_market_now()),
                               log=structlog.get_logger("guard"))
            t0 = time.monotonic()
            report = await run_sweep(ctx, "bench")
            end = time.monotonic()
        finally:
            undo()
            await broker.close()
            journal.close()
    cancels = [s for s in spans if s[0] == "cancel"]
    first_cancel = min(s[1] for s in cancels) if cancels else end
    last_cancel = max(s[2] for s in cancels) if cancels else end
    polls = [s for s in spans if s[0] == "book" and s[1] >= last_cancel]
    confirmed = max((s[2] for s in polls), default=last_cancel)
    kinds = Counter(o.kind for o in report.outcomes)
    return {
        "result": report.result, "targets": len(report.plan.targets),
        "batches": len(report.plan.batches), "outcomes": dict(kinds),
        "not_ok": sum(1 for o in report.outcomes if not o.ok)
        + len(report.plan.targets) - len(report.outcomes),
        "wall_s": confirmed - t0,  # until every cancel is confirmed, as for the seed
        "sweep_s": end - t0,  # the whole run_sweep, with the cash read and journal after
        "before_s": first_cancel - t0,  # session, book, master data, cash
        "send_s": last_cancel - first_cancel,
        "confirm_s": confirmed - last_cancel,
        "after_s": end - confirmed,  # cash again, journal
        "confirm_reads": len(polls),
        "cancel_calls": len(cancels),
        "cancel_call_s": [round(s[2] - s[1], 3) for s in sorted(cancels, key=lambda s: s[1])],
        "pauses": len(probe.pauses), "paused_s": probe.paused_s(end),
        "paused_in_send_s": probe.paused_s(last_cancel) - probe.paused_s(first_cancel),
        "sign_s": probe.sign_s, "signatures": probe.signatures,
    }


_SINK: list[Any] = []


def _child(flow: str, env: dict[str, str], n: int) -> dict[str, Any]:
    """Entry point in the worker process. Logs (the guard's JSON lines, the SDK's records) are
    formatted as in production, then written to /dev/null."""
    if not _SINK:
        from guard.record.log import configure_logging

        _SINK.append(open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115 - process lifetime
        configure_logging(level="INFO", fmt="json", stream=_SINK[0])
    if flow == "seed":
        return asyncio.run(_seed_flow(env))
    return asyncio.run(_guard_flow(env, n))


# ---- the parent: simulators, seeding, counting ------------------------------------------------


def _new_sim(key_bits: int) -> Any:
    from guard.clock import FakeClock
    from guard.simulator.control import Simulator
    from guard.simulator.faults import Fault

    sim = Simulator(clock=FakeClock(_market_now()), rate_limit=RATE, cancel_delay=CANCEL_DELAY,
                    key_bits=key_bits, accounts=(ACCOUNT,))
    sim.start()
    sim.inject(Fault("latency", seconds=LATENCY_S, times=None))
    return sim


def _seed_orders(sim: Any, n: int) -> list[str]:
    ref = {s.symbol: s.ref_price for s in sim.exchange.symbols.values()}
    return [
        sim.seed_order(ACCOUNT, HOSE[i % len(HOSE)], side="B", price=ref[HOSE[i % len(HOSE)]],
                       quantity=100, age=timedelta(minutes=20, seconds=i % 600))
        for i in range(n)
    ]


def _book_read_s(sim: Any) -> float:
    """The median of 3 timed order-book reads of the current book, through the real SDK."""
    from ssi_sdk import Auth, Trading

    time.sleep(1.1)  # let the server's bucket refill after the flow
    day = _market_now().strftime("%Y/%m/%d")
    auth = Auth(sim.sdk_config(log_level="WARNING"))
    try:
        auth.authenticate(otp=sim.credentials.otp)
        trading = Trading(auth)
        times = []
        for _ in range(3):
            t = time.perf_counter()
            trading.portfolio.get_historical_orders(ACCOUNT, day, day)
            times.append(time.perf_counter() - t)
        return statistics.median(times)
    finally:
        auth.close()


def _run(pool: concurrent.futures.Executor, flow: str, n: int, key_bits: int,
         calibrate: bool) -> dict[str, Any]:
    sim = _new_sim(key_bits)
    try:
        ids = _seed_orders(sim, n)
        future = pool.submit(_child, flow, sim.env(), n)
        res = future.result()
        reqs = sim.requests
        time.sleep(CANCEL_DELAY + 0.1)  # anything still WC settles
        sim.exchange.settle()
        statuses = Counter(sim.exchange.orders[i].status for i in ids)
        accepted = Counter(sim.accepted_cancels())
        res.update(
            n=n,
            requests=len(reqs),
            deletes=sum(1 for r in reqs if r.method == "DELETE"),
            http_429=sum(1 for r in reqs if r.status == 429),
            book_gets=sum(1 for r in reqs if r.path == "/api/v3/trading/orderBook"),
            still_open=sum(c for s, c in statuses.items() if s not in TERMINAL),
            cancelled=statuses.get("CL", 0),
            twice=sum(1 for c in accepted.values() if c > 1),
        )
        if calibrate:
            res["book_read_s"] = _book_read_s(sim)
        return res
    finally:
        sim.stop()


def _floor(n: int, guard: dict[str, Any]) -> float:
    return math.ceil(n / BATCH) / RATE + CANCEL_DELAY + guard["book_read_s"]


def _fmt_s(x: float) -> str:
    return f"{x:7.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--key-bits", type=int, default=2048, choices=(1024, 2048))
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    args = parser.parse_args(argv)
    sizes = sorted(set(args.sizes))

    print(f"bench/sweep.py: simulator at {RATE} req/s, +{LATENCY_S * 1000:.0f} ms on every "
          f"request, cancel_delay {CANCEL_DELAY} s, {args.key_bits}-bit RSA keys"
          + (" (SSI's real size)" if args.key_bits == 2048 else
             " (NOT SSI's 2048: signing is cheaper than in production)"))
    print("one account, HOSE buy LOs aged 20 min, FakeClock Mon 2026-11-23 10:00 (continuous); "
          "each flow in its own process, each on a fresh simulator seeded identically\n")

    t_start = time.monotonic()
    rows: list[tuple[int, dict[str, Any], dict[str, Any]]] = []
    spawn = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
        pool.submit(time.sleep, 0).result()  # start the worker before anything is timed
        for n in sizes:
            guard = _run(pool, "guard", n, args.key_bits, calibrate=True)
            seed = _run(pool, "seed", n, args.key_bits, calibrate=False)
            rows.append((n, seed, guard))
            print(f"  N={n}: seed {seed['wall_s']:.2f} s, guard {guard['wall_s']:.2f} s",
                  flush=True)
    total = time.monotonic() - t_start

    print()
    head = (f"{'N':>4} {'flow':<6} {'wall s':>7} {'send s':>7} {'conf s':>7} {'lost':>5} "
            f"{'failed':>6} {'HTTP':>5} {'DELETE':>6} {'429':>4} {'paused s':>8} "
            f"{'sign s':>7} {'floor s':>7} {'x floor':>7} {'seed/guard':>10}")
    print(head)
    print("-" * len(head))
    verdicts: list[tuple[str, bool]] = []
    for n, seed, guard in rows:
        floor = _floor(n, guard)
        ratio = seed["wall_s"] / guard["wall_s"]
        seed_failed = seed["open_before"] - seed["ok"]
        for name, r, failed in (("seed", seed, seed_failed), ("guard", guard, guard["not_ok"])):
            print(f"{n:>4} {name:<6} {_fmt_s(r['wall_s'])} {_fmt_s(r['send_s'])} "
                  f"{_fmt_s(r['confirm_s'])} {r['still_open']:>5} {failed:>6} "
                  f"{r['requests']:>5} {r['deletes']:>6} {r['http_429']:>4} "
                  f"{r['paused_s']:>8.2f} {r['sign_s']:>7.2f} {floor:>7.2f} "
                  f"{r['wall_s'] / floor:>7.2f} "
                  + (f"{ratio:>10.1f}" if name == "guard" else f"{'':>10}"))
        if n == max(sizes):
            verdicts = [
                (f"N={n}: guard loses no cancel (still open {guard['still_open']}, "
                 f"failed {guard['not_ok']})", guard["still_open"] == 0 and guard["not_ok"] == 0),
                (f"N={n}: guard >= 10x faster than the seed flow ({ratio:.1f}x)", ratio >= 10),
                (f"N={n}: guard within 1.5x of the floor ({guard['wall_s'] / floor:.2f}x of "
                 f"{floor:.2f} s)", guard["wall_s"] <= 1.5 * floor),
            ]

    print("\ncolumns: wall = flow start (login) until every cancel it made is confirmed final in "
          "the book (seed: only the cancels it got accepted); send = start until the last cancel "
          "reply (guard: first to last cancel call); "
          "conf = last cancel reply until confirmed; lost = orders still open at the end; "
          "failed = seed: cancels that raised (never retried), guard: outcomes not ok; "
          "HTTP = requests the simulator received; paused = time the SDK limiter was paused "
          "(X-RateLimit-Remaining: 0 -> 1 s, or 429); sign = client time in RSA signing; "
          f"floor = ceil(N/{BATCH})/{RATE} s + cancel_delay {CANCEL_DELAY} s + one book read "
          "(median of 3 reads of the N-order book, timed in this run)")

    print("\ndetail")
    for n, seed, guard in rows:
        print(f"  N={n} seed : {seed['ok']}/{seed['open_before']} cancels accepted, errors "
              f"{seed['errors'] or '{}'}, {seed['signatures']} signatures, {seed['pauses']} "
              f"limiter pauses, {seed['reads']} book reads to confirm"
              + (", confirmed" if seed["confirmed"] else ", NOT confirmed by the deadline")
              + (f", CUT OFF at {SEED_DEADLINE_S:.0f} s" if seed["cut_off"] else "")
              + f"; cancelled twice: {seed['twice']}")
        print(f"  N={n} guard: result {guard['result']}, {guard['targets']} targets in "
              f"{guard['batches']} batches, outcomes {guard['outcomes']}, "
              f"{guard['cancel_calls']} cancel calls, {guard['signatures']} signatures, "
              f"{guard['pauses']} limiter pauses ({guard['paused_in_send_s']:.2f} s of them "
              f"while sending), {guard['confirm_reads']} confirm reads; phases: before first "
              f"cancel {guard['before_s']:.2f} s, sending {guard['send_s']:.2f} s, confirm "
              f"{guard['confirm_s']:.2f} s, after (journal outcomes, cash) "
              f"{guard['after_s']:.2f} s; whole run_sweep {guard['sweep_s']:.2f} s = "
              f"{guard['sweep_s'] / _floor(n, guard):.2f}x floor; "
              f"one book read {guard['book_read_s'] * 1000:.0f} ms; cancelled twice: "
              f"{guard['twice']}")
    print(f"\ntotal run {total:.0f} s")
    print(f"\ntargets (guard, N={max(sizes)})")
    for text, ok in verdicts:
        print(f"  {'PASS' if ok else 'FAIL'}  {text}")
    return 0 if all(ok for _, ok in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
