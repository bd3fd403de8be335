"""Helpers for the sweep integration tests (tests/test_sweep_*.py).

A sweep here is the real pipeline: the real ``ssi_sdk`` over real HTTP to the simulator, a real
journal on ``tmp_path``. Nothing of the SDK is patched; faults are injected at the simulator.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog

from guard.broker.client import Broker
from guard.broker.tokens import TokenCache
from guard.clock import Clock
from guard.config.loader import load_rules_text
from guard.market.holidays import build_calendar
from guard.record.journal import Journal
from guard.settings import load_credentials
from guard.simulator.control import Simulator
from guard.sweep import SweepContext, SweepReport, run_sweep
from kit import ACCT, OTHER


def rules_text(*, dry_run: bool = False, max_age: str = "15m", max_cancels: int = 200,
               confirm_timeout: str = "5s", protect: tuple[str, ...] = ("keep-",),
               extra: str = "") -> str:
    """A rules.yaml: one stale-order rule over both test accounts, live unless told."""
    prefixes = ", ".join(f'"{p}"' for p in protect)
    return f"""
version: 1
accounts: ["{ACCT}", "{OTHER}"]
dry_run: {"true" if dry_run else "false"}
limits:
  max_cancels_per_sweep: {max_cancels}
  confirm_timeout: {confirm_timeout}
protect:
  client_request_id_prefixes: [{prefixes}]
rules:
  - name: stale
    max_age: {max_age}
{extra}"""


@dataclass
class Guard:
    """A guard's state directory and its settings, reusable across sweeps (like a restart)."""

    sim: Simulator
    state_dir: Path
    rules: str
    timeout_ms: int = 10_000

    @property
    def journal_path(self) -> Path:
        return self.state_dir / "journal.sqlite3"

    def env(self) -> dict[str, str]:
        return {**self.sim.env(), "SSI_GUARD_STATE_DIR": str(self.state_dir)}

    def sweep(self, *, clock: Clock | None = None, trigger: str = "test",
              log: Any = None) -> SweepReport:
        """One sweep, as runtime.open_guard builds it (fresh broker and journal handle)."""
        return asyncio.run(self.asweep(clock=clock, trigger=trigger, log=log))

    async def asweep(self, *, clock: Clock | None = None, trigger: str = "test",
                     log: Any = None) -> SweepReport:
        async with self.context(clock=clock, log=log) as ctx:
            return await run_sweep(ctx, trigger)

    @contextmanager
    def journal(self) -> Iterator[Journal]:
        journal = Journal(self.journal_path)
        try:
            yield journal
        finally:
            journal.close()

    def context(self, *, clock: Clock | None = None, log: Any = None) -> Any:
        return _Context(self, clock, log)


class _Context:
    def __init__(self, guard: Guard, clock: Clock | None, log: Any) -> None:
        self.guard = guard
        self.clock = clock or guard.sim.clock
        self.log = log
        self.broker: Broker | None = None
        self.journal: Journal | None = None

    async def __aenter__(self) -> SweepContext:
        g = self.guard
        env = g.env()
        rules = load_rules_text(g.rules, "rules.yaml")
        creds = load_credentials(env)
        g.state_dir.mkdir(mode=0o700, exist_ok=True)
        self.journal = Journal(g.journal_path)
        self.broker = Broker(creds, TokenCache(g.state_dir), timeout_ms=g.timeout_ms)
        await self.broker.open()
        return SweepContext(
            broker=self.broker, rules=rules, calendar=build_calendar(rules.holidays),
            journal=self.journal, state_dir=g.state_dir, clock=self.clock,
            log=self.log or structlog.get_logger("guard.test"),
        )

    async def __aexit__(self, *exc: object) -> None:
        if self.broker is not None:
            await self.broker.close()
        if self.journal is not None:
            self.journal.close()


def outcomes(journal_path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """order_id -> [(outcome, cancelled_qty, final_status, detail), ...] from the journal."""
    journal = Journal(journal_path)
    try:
        rows = journal.query("SELECT order_id, outcome, cancelled_qty, final_status, detail "
                             "FROM outcomes ORDER BY id")
    finally:
        journal.close()
    out: dict[str, list[tuple[Any, ...]]] = {}
    for order_id, *rest in rows:
        out.setdefault(order_id, []).append(tuple(rest))
    return out


def intents(journal_path: Path) -> list[tuple[Any, ...]]:
    journal = Journal(journal_path)
    try:
        return journal.query("SELECT id, order_id FROM intents ORDER BY id")
    finally:
        journal.close()


def assert_no_double_cancel(sim: Simulator) -> None:
    counts = Counter(sim.accepted_cancels())
    twice = {k: v for k, v in counts.items() if v > 1}
    assert not twice, f"orders cancelled more than once at the exchange: {twice}"


def assert_one_outcome_per_intent(journal_path: Path) -> None:
    journal = Journal(journal_path)
    try:
        rows = journal.query(
            "SELECT i.id, COUNT(o.id) FROM intents i LEFT JOIN outcomes o ON o.intent_id = i.id "
            "GROUP BY i.id")
        assert journal.integrity_ok()
    finally:
        journal.close()
    bad = [(i, n) for i, n in rows if n != 1]
    assert not bad, f"intents without exactly one outcome (intent, count): {bad}"


def run_when(predicate: Callable[[], bool], action: Callable[[], None],
             timeout: float = 10.0) -> threading.Thread:
    """In a thread: poll ``predicate`` (every 5 ms) and run ``action`` once it holds."""
    import time

    def body() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                action()
                return
            time.sleep(0.005)

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread


def at(sim: Simulator, hh: int, mm: int, ss: int = 0) -> datetime:
    """The simulator's day at hh:mm:ss exchange time."""
    return sim.clock().replace(hour=hh, minute=mm, second=ss, microsecond=0)


def answered(sim: Simulator, timeout: float = 5.0) -> None:
    """Wait until the simulator has finished every request it received (a hung or slow
    handler still sleeping when the test ends would be destroyed mid-await at shutdown)."""
    import time

    deadline = time.monotonic() + timeout
    while any(r.status == 0 for r in sim.requests) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert all(r.status != 0 for r in sim.requests), "the simulator is still answering"
