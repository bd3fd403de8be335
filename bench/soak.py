"""Soak: an accelerated trading day of 1,000 sweeps over 5 accounts, one long-lived guard.

One ``open_guard`` context (as the daemon holds it: one broker, one journal, one SDK client)
sweeps 1,000 times against the in-process simulator. Between sweeps a ``FakeClock`` moves
through continuous trading (09:15-11:30, 13:00-14:30: 225 minutes, 13.5 s a sweep) and new
orders arrive on HOSE, HNX and UPCOM symbols in random accounts; ``max_age: 1m`` makes each
stale about 5 sweeps later, so every sweep cancels for real (some orders are part-filled
first). Rate limits are off on both sides; cancels settle at once (``cancel_delay=0``).

Only the guard is judged, so the simulator is kept stationary: its request log and its
accepted-cancel list are emptied after each sweep (once checked: no order cancelled twice),
and orders that finished more than 2 market minutes ago are forgotten. Without that, the
simulator's own state (in this process) would grow all day, and so would every book read.

Measured after a warm-up (the first 100 sweeps) and at the end:
- RSS (VmRSS, after ``gc.collect()``): target, grows < 5%. SQLite's own heap
  (``sqlite3_memory_used``: the journal's page cache, bounded by its ``cache_size``) and
  Python's allocated blocks are printed beside it, to tell a leak from a cache filling up;
- threads (``threading.active_count()`` and /proc's ``Threads:``): target, the same count;
- open file descriptors (``/proc/self/fd``): target, no more at the end. The sockets of the
  SDK's keep-alive pool and their in-process server ends come and go in pairs from one sweep
  to the next, so descriptors and threads are counted after every sweep and judged on the
  peak of the 50 sweeps up to the warm-up against the peak of the last 50; and every
  descriptor that is not a socket must be the same file at both points;
- unclosed-resource warnings (``ResourceWarning``, "unclosed"/"Unclosed" log records, from
  asyncio debug mode among others, and unraisable exceptions): target, zero. Warnings are
  recorded with ``simplefilter("always")`` for the whole run, shutdown included, and the
  capture is proven first on a deliberate leak.

Exit status 1 on any FAIL. ``--tracemalloc N`` shows where Python memory went (the top
differences from the warm-up to the end, N frames deep); it is slow, and the warm-up snapshot
it keeps is itself in RSS, so the RSS verdict of such a run means nothing. Every figure is
measured in this run; nothing is compared with a number from another machine. The RSA key is
1024 bits (``--key-bits``) to keep the SDK's pure-Python signing quick.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import ctypes.util
import gc
import logging
import os
import random
import sys
import tempfile
import threading
import time
import tracemalloc
import warnings
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from guard.clock import EXCHANGE_TZ, FakeClock
from guard.record.log import configure_logging
from guard.service.runtime import open_guard
from guard.simulator.control import DEFAULT_SYMBOLS, Simulator
from guard.sweep import run_sweep

ACCOUNTS = ("0001234", "0001235", "0001236", "0001237", "0001238")
DAY = (2026, 11, 23)  # a Monday
SESSIONS = (((9, 15), (11, 30)), ((13, 0), (14, 30)))  # continuous trading on all three boards
SYMBOLS = [s for s in DEFAULT_SYMBOLS if s.board in ("HOSE", "HNX", "UPCOM")]
FORGET_AFTER = timedelta(minutes=2)  # market time a finished order stays in the simulator
RSS_GROWTH_MAX = 0.05
WINDOW = 50  # sweeps over which the peak descriptor and thread counts are taken

RULES = """\
version: 1
accounts: [{accounts}]
dry_run: false
limits:
  max_cancels_per_sweep: 200
  confirm_timeout: 10s
rules:
  - name: stale
    max_age: 1m
"""


# ---- what the process holds -----------------------------------------------------------------


def _status_field(name: str) -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {name} in /proc/self/status")


def fd_kinds() -> Counter[str]:
    """What the open descriptors are: socket, pipe, anon_inode:..., or a file's name."""
    kinds: Counter[str] = Counter()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # the listing's own descriptor, already closed
        kinds[target.split(":")[0] if target.startswith(("socket:", "pipe:")) else
              target.rsplit("/", 1)[-1]] += 1
    return kinds


def _sqlite_memory() -> Any:
    """``sqlite3_memory_used()`` of the libsqlite3 this Python's sqlite3 module is linked to
    (its page caches are C memory: in RSS, invisible to tracemalloc); None if not found."""
    try:
        import _sqlite3  # the C module: its dynamic libsqlite3 is the one we load again here

        lib = ctypes.CDLL(ctypes.util.find_library("sqlite3") or _sqlite3.__file__)
        fn = lib.sqlite3_memory_used
    except (OSError, AttributeError, ImportError):
        return None
    fn.restype = ctypes.c_int64
    return fn


SQLITE_MEMORY = _sqlite_memory()


def sample() -> dict[str, Any]:
    gc.collect()
    return {
        "sqlite_kib": SQLITE_MEMORY() // 1024 if SQLITE_MEMORY else -1,
        "py_blocks": sys.getallocatedblocks(),
        "fd_kinds": fd_kinds(),
        "rss_kib": _status_field("VmRSS"),
        "fds": len(os.listdir("/proc/self/fd")),
        "threads_py": threading.active_count(),
        "threads_os": _status_field("Threads"),
    }


class Unclosed(logging.Handler):
    """Log records that say something was not closed (asyncio debug, aiohttp, the SDK)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.hits: list[str] = []
        self.slow_callbacks = 0

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "nclosed" in message:
            self.hits.append(f"{record.name}: {message[:300]}")
        elif record.name == "asyncio" and message.startswith("Executing "):
            self.slow_callbacks += 1  # debug mode's "took 0.1xx seconds": reported, not judged


async def _leak() -> None:
    """Leave a socket and an aiohttp client session unclosed."""
    import aiohttp

    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    aiohttp.ClientSession()
    server.close()
    del writer


def prove_capture(caught: list[warnings.WarningMessage], unclosed: Unclosed) -> str:
    asyncio.run(_leak(), debug=True)
    gc.collect()
    found = (sum(issubclass(w.category, ResourceWarning) for w in caught), len(unclosed.hits))
    if not all(found):
        raise SystemExit(f"the warning capture does not work: caught {found} from a leak")
    return f"{found[0]} ResourceWarning(s) and {found[1]} 'unclosed' log record(s)"


# ---- the day --------------------------------------------------------------------------------


def schedule(sweeps: int) -> list[datetime]:
    """``sweeps`` market instants spread evenly over the continuous sessions."""
    spans = [(datetime(*DAY, *a, tzinfo=EXCHANGE_TZ), datetime(*DAY, *b, tzinfo=EXCHANGE_TZ))
             for a, b in SESSIONS]
    total = sum((b - a for a, b in spans), timedelta())
    step = total / sweeps
    out = []
    for i in range(sweeps):
        offset = step * i
        for a, b in spans:
            if offset < b - a:
                out.append(a + offset)
                break
            offset -= b - a
    return out


def feed(sim: Simulator, rng: random.Random, per_sweep: int) -> int:
    """New orders at the market instant now; now and then part-fill an open one."""
    for _ in range(per_sweep):
        sym = rng.choice(SYMBOLS)
        side = rng.choice("BS")
        price = rng.randint(sym.floor // 100, sym.ceiling // 100) * 100
        sim.seed_order(rng.choice(ACCOUNTS), sym.symbol, side, price, 100 * rng.randint(1, 20))
    filled = 0
    with sim.exchange.lock:
        open_orders = [o for o in sim.exchange.orders.values()
                       if o.status in ("QU", "PF") and o.remaining > 100]
    if open_orders and rng.random() < 0.3:
        order = rng.choice(open_orders)
        sim.fill(order.order_id, 100 * rng.randint(1, order.remaining // 100 - 1 or 1))
        filled = 1
    return filled


def forget_finished(sim: Simulator, now: datetime) -> int:
    """Drop orders that finished more than FORGET_AFTER ago (the simulator's memory only)."""
    ex = sim.exchange
    with ex.lock:
        ex.settle()
        old = {oid for oid, o in ex.orders.items()
               if o.status in ("CL", "FF", "FFPC", "RJ", "EX")
               and (o.modified_time or o.input_time) < now - FORGET_AFTER}
        for oid in old:
            del ex.orders[oid]
        for acct in ex.accounts.values():
            acct.orders = [oid for oid in acct.orders if oid not in old]
    return len(old)


class Checks:
    """Correctness along the way: no order cancelled twice, every sweep complete."""

    def __init__(self) -> None:
        self.cancelled: set[str] = set()
        self.duplicates: list[str] = []
        self.results: Counter[str] = Counter()
        self.cancels = 0
        self.fills = 0
        self.requests = 0

    def after_sweep(self, sim: Simulator) -> None:
        ex = sim.exchange
        with ex.lock:
            accepted = [oid for oid, _ in ex.accepted_cancels]
            ex.accepted_cancels.clear()
        for oid in accepted:
            if oid in self.cancelled:
                self.duplicates.append(oid)
            self.cancelled.add(oid)
        self.cancels += len(accepted)
        self.requests += len(sim.server.requests)
        sim.server.requests.clear()


async def soak(sim: Simulator, clock: FakeClock, rules: Path, env: dict[str, str], sweeps: int,
               warmup: int, seed: int, use_tracemalloc: bool) -> dict[str, Any]:
    rng = random.Random(seed)
    checks = Checks()
    samples: dict[int, dict[str, Any]] = {}
    counts: list[tuple[int, int, int]] = []  # (fds, threads, /proc threads) after each sweep
    snapshots: dict[str, Any] = {}
    t0 = time.monotonic()
    t_warm = t0
    async with open_guard(rules, clock=clock, env=env, broker_rate_limit=0) as ctx:
        for i, instant in enumerate(schedule(sweeps), 1):
            clock.set(instant)
            checks.fills += feed(sim, rng, per_sweep=3)
            report = await run_sweep(ctx, "soak")
            checks.results[report.result] += 1
            checks.after_sweep(sim)
            forget_finished(sim, instant)
            counts.append((len(os.listdir("/proc/self/fd")), threading.active_count(),
                           _status_field("Threads")))
            if i in (warmup, sweeps) or i % 100 == 0:
                samples[i] = sample()
                print(f"  sweep {i}: {time.monotonic() - t0:.0f}s, "
                      f"RSS {samples[i]['rss_kib'] / 1024:.1f} MiB", file=sys.stderr, flush=True)
            if i == warmup:
                t_warm = time.monotonic()
                if use_tracemalloc:
                    snapshots["warm"] = tracemalloc.take_snapshot()
        if use_tracemalloc:
            gc.collect()
            snapshots["end"] = tracemalloc.take_snapshot()
    return {"samples": samples, "counts": counts, "checks": checks, "snapshots": snapshots,
            "seconds": time.monotonic() - t0, "after_warmup_s": time.monotonic() - t_warm}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sweeps", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--seed", type=int, default=20261123)
    parser.add_argument("--key-bits", type=int, default=1024,
                        help="simulator RSA key size (1024 keeps pure-Python signing quick)")
    parser.add_argument("--tracemalloc", type=int, default=0, metavar="FRAMES",
                        help="trace allocations (FRAMES deep: slow) and print the top growth "
                             "from the warm-up to the end")
    args = parser.parse_args(argv)
    if args.tracemalloc:
        tracemalloc.start(args.tracemalloc)

    tmp = Path(tempfile.mkdtemp(prefix="ssi-guard-soak-"))
    configure_logging(level="INFO", fmt="json", stream=open(os.devnull, "w"))  # noqa: SIM115
    unclosed = Unclosed()
    logging.getLogger().addHandler(unclosed)
    logging.getLogger("asyncio").setLevel(logging.DEBUG)
    unraisable: list[str] = []
    previous_hook = sys.unraisablehook
    sys.unraisablehook = lambda u: unraisable.append(f"{u.exc_type.__name__}: {u.exc_value} "
                                                     f"in {u.object!r}"[:300])

    clock = FakeClock(schedule(args.sweeps)[0])
    sim = Simulator(clock=clock, rate_limit=0,
                    cancel_delay=0.0, key_bits=args.key_bits, accounts=ACCOUNTS)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # Prove the capture works before trusting its zero: leak on purpose, then forget.
        probe = prove_capture(caught, unclosed)
        caught.clear()
        unclosed.hits.clear()
        sim.start()
        try:
            rules = tmp / "rules.yaml"
            rules.write_text(RULES.format(accounts=", ".join(f'"{a}"' for a in ACCOUNTS)))
            env = {**sim.env(), "SSI_GUARD_STATE_DIR": str(tmp / "state")}
            out = asyncio.run(soak(sim, clock, rules, env, args.sweeps, args.warmup, args.seed,
                                   args.tracemalloc), debug=True)
        finally:
            sim.stop()
        gc.collect()
    sys.unraisablehook = previous_hook

    samples, checks = out["samples"], out["checks"]
    warm, end = samples[args.warmup], samples[args.sweeps]
    resource_warnings = [str(w.message)[:300] for w in caught
                         if issubclass(w.category, ResourceWarning)]
    other_warnings = Counter(f"{w.category.__name__}: {str(w.message)[:120]}" for w in caught
                             if not issubclass(w.category, ResourceWarning))

    rows: list[tuple[str, str, str, str, str, bool]] = []

    def row(name: str, a: int, b: int, target: str, ok: bool) -> None:
        ratio = f"{b / a:.3f}" if a else "-"
        rows.append((name, str(a), str(b), ratio, target, ok))

    growth = end["rss_kib"] / warm["rss_kib"] - 1
    row("RSS (KiB)", warm["rss_kib"], end["rss_kib"], "< 1.050", growth < RSS_GROWTH_MAX)
    # Sockets of the SDK's keep-alive pool (and their in-process server ends) come and go in
    # pairs from one sweep to the next, so the descriptor count is judged on its peak over a
    # window of WINDOW sweeps: the WINDOW up to the warm-up sample against the last WINDOW.
    counts = out["counts"]
    before, last = counts[max(0, args.warmup - WINDOW):args.warmup], counts[-WINDOW:]
    # Threads must be the same; descriptors must not rise (a peak that falls is no leak).
    for n, name in enumerate(("open fds (peak)", "threads (threading, peak)",
                              "threads (/proc, peak)")):
        a, b = max(c[n] for c in before), max(c[n] for c in last)
        if n == 0:
            row(name, a, b, "<= 1.000", b <= a)
        else:
            row(name, a, b, "= 1.000", a == b)
    others_warm = {k: v for k, v in warm["fd_kinds"].items() if k != "socket"}
    others_end = {k: v for k, v in end["fd_kinds"].items() if k != "socket"}
    rows.append(("fds other than sockets", str(sum(others_warm.values())),
                 str(sum(others_end.values())), "-", "same files", others_warm == others_end))
    n_unclosed = len(resource_warnings) + len(unclosed.hits) + len(unraisable)
    rows.append(("unclosed-resource warnings", "-", str(n_unclosed), "-", "0", n_unclosed == 0))
    complete = checks.results["ok"] + checks.results["nothing_to_do"] == args.sweeps
    rows.append(("sweeps complete (ok/nothing)", "-",
                 f"{checks.results['ok'] + checks.results['nothing_to_do']}/{args.sweeps}", "-",
                 f"{args.sweeps}", complete))
    rows.append(("orders cancelled twice", "-", str(len(checks.duplicates)), "-", "0",
                 not checks.duplicates))

    print(f"soak: {args.sweeps} sweeps over {len(ACCOUNTS)} accounts, warm-up {args.warmup}, "
          f"seed {args.seed}, {out['seconds']:.0f}s ({out['after_warmup_s']:.0f}s after "
          f"warm-up); {checks.cancels} cancels, {checks.fills} part-fills, "
          f"{checks.requests} requests; results {dict(checks.results)}")
    headers = ("figure", f"after {args.warmup}", f"after {args.sweeps}", "end/warm", "target",
               "verdict")
    cells = [headers] + [(*r[:5], "PASS" if r[5] else "FAIL") for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(headers))]
    for n, c in enumerate(cells):
        print("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))
    trend = ", ".join(f"{i}: {s['rss_kib'] / 1024:.1f}" for i, s in sorted(samples.items()))
    print(f"RSS (MiB) by sweep: {trend}")
    trend = ", ".join(f"{i}: {s['sqlite_kib'] / 1024:.1f}" for i, s in sorted(samples.items()))
    print(f"  of which SQLite's own heap (MiB; page cache, bounded by cache_size): {trend}")
    trend = ", ".join(f"{i}: {s['py_blocks'] // 1000}k" for i, s in sorted(samples.items()))
    print(f"Python allocated blocks by sweep: {trend}")
    fds = ", ".join(f"{i}: {s['fds']}" for i, s in sorted(samples.items()))
    print(f"fds by sweep (sampled): {fds}; range over the whole run "
          f"{min(c[0] for c in counts)}..{max(c[0] for c in counts)}")
    print(f"fds after warm-up: {dict(sorted(warm['fd_kinds'].items()))}")
    print(f"fds at the end:    {dict(sorted(end['fd_kinds'].items()))}")
    print(f"capture self-check (a deliberate leak before the soak): {probe} caught")
    print(f"asyncio debug slow-callback reports (not judged): {unclosed.slow_callbacks}")
    for text in resource_warnings[:10] + unclosed.hits[:10] + unraisable[:10]:
        print(f"  unclosed: {text}")
    for text, n in other_warnings.most_common(10):
        print(f"  other warning x{n}: {text}")
    if "warm" in out["snapshots"]:
        print("tracemalloc, top growth from warm-up to end:")
        for stat in out["snapshots"]["end"].compare_to(out["snapshots"]["warm"], "traceback")[:15]:
            print(f"  {stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d} blocks  "
                  f"{stat.traceback.format()[-1].strip()}")
            for line in stat.traceback.format()[-8:-1]:
                print(f"        {line.rstrip()}")
    failed = [r[0] for r in rows if not r[5]]
    print("PASS" if not failed else f"FAIL: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
