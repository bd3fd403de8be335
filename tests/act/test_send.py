"""``send_plan`` on a scripted broker adapter (our own interface, not the SDK): the journal is
written before the first byte, and a fatal failure never leaves a batch running unrecorded."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from guard.act.plan import plan_cancels
from guard.act.send import SendAborted, send_plan
from guard.clock import EXCHANGE_TZ
from guard.errors import BrokerCallError, ReauthRequired
from guard.evaluate.engine import Decision, Match, Verdict
from guard.market.calendar import Board
from guard.model import BookOrder, CancelReply
from guard.record.journal import Journal

T0 = datetime(2026, 11, 23, 9, 30, tzinfo=EXCHANGE_TZ)


def decision(account: str, order_id: str) -> Decision:
    order = BookOrder(account=account, order_id=order_id, client_request_id="c", symbol="SSI",
                      side="B", order_type="LO", price=Decimal(27_000), price_word=None,
                      quantity=100, filled=0, cancelled=0, status="QU", input_time=T0)
    return Decision(order, Board.HOSE, Verdict.of(Match("stale", "age")), None)


class Log:
    def bind(self, **_: Any) -> Log:
        return self

    def info(self, *_: Any, **__: Any) -> None:
        pass

    warning = error = info


class Adapter:
    """Per account: ``"fatal"`` raises ReauthRequired at once, ``"slow"`` answers after a
    while, ``"429"`` is rate limited once; every cancel that is answered is accepted."""

    def __init__(self, journal: Journal, behaviour: dict[str, str]) -> None:
        self.journal = journal
        self.behaviour = behaviour
        self.finished: list[str] = []
        self.intents_seen: list[int] = []
        self.limited: set[str] = set()

    async def cancel_batch(self, items: Sequence[tuple[str, str]]) -> list[CancelReply]:
        account = items[0][0]
        self.intents_seen.append(len(self.journal.query(
            "SELECT id FROM intents WHERE account = ?", [account])))
        how = self.behaviour.get(account, "")
        if how == "fatal":
            await asyncio.sleep(0.05)  # fails while the slow batch is on the wire
            raise ReauthRequired("the SSI session was revoked")
        if how == "429" and account not in self.limited:
            self.limited.add(account)
            raise BrokerCallError("rate_limited", "429", retry_after=0.7, status=429)
        if how == "slow":
            await asyncio.sleep(0.2)
        self.finished.append(account)
        return [CancelReply(a, o, True, "WC", "", "") for a, o in items]

    async def orders(self, account: str, day: Any) -> tuple[BookOrder, ...]:
        return tuple(decision(account, o).order for o in ("1", "2"))


def run(tmp_path: Path, behaviour: dict[str, str], accounts: Sequence[str],
        sleeps: list[float] | None = None) -> tuple[Adapter, Journal, Any]:
    journal = Journal(tmp_path / "j.sqlite3")
    sweep = journal.start_sweep(T0, "t", T0, False)
    plan = plan_cancels([decision(a, o) for a in accounts for o in ("1", "2")],
                        max_cancels=100, dry_run=False, paused=False)
    adapter = Adapter(journal, behaviour)

    async def fake_sleep(seconds: float) -> None:
        if sleeps is not None:
            sleeps.append(seconds)

    async def go() -> Any:
        return await send_plan(plan, broker=adapter, journal=journal,
                               sweep_id=sweep, clock=lambda: T0, log=Log(), concurrency=2,
                               sleep=fake_sleep)

    try:
        result: Any = asyncio.run(go())
    except SendAborted as exc:
        result = exc
    return adapter, journal, result


def test_intents_are_journaled_before_the_cancel_is_sent(tmp_path: Path) -> None:
    adapter, journal, results = run(tmp_path, {}, ["A", "B"])
    try:
        assert adapter.intents_seen == [2, 2]
        assert [r.status for r in results] == ["accepted"] * 4
        assert journal.query("SELECT COUNT(*) FROM requests") == [(2,)]
    finally:
        journal.close()


def test_a_fatal_batch_fails_the_send_only_after_the_others_finish(tmp_path: Path) -> None:
    adapter, journal, result = run(tmp_path, {"A": "fatal", "B": "slow"}, ["A", "B", "C"])
    try:
        assert isinstance(result, SendAborted) and isinstance(result.cause, ReauthRequired)
        # B's cancels went out before the send stopped: they are handed back for confirmation.
        assert sorted({r.target.order.account for r in result.results}) == ["B"]
        assert adapter.finished == ["B"]  # B, already on the wire, was seen through
        accounts = [a for (a,) in journal.query("SELECT DISTINCT account FROM intents")]
        assert sorted(accounts) == ["A", "B"]  # C never started: no intent, nothing sent
        assert journal.query("SELECT request_key FROM requests WHERE kind = 'batch'") != []
    finally:
        journal.close()


def test_rate_limited_batch_waits_retry_after_and_rereads(tmp_path: Path) -> None:
    sleeps: list[float] = []
    adapter, journal, results = run(tmp_path, {"A": "429"}, ["A"], sleeps)
    try:
        assert sleeps == [0.7]
        assert adapter.finished == ["A"] and [r.status for r in results] == ["accepted"] * 2
        kinds = [k for (k,) in journal.query("SELECT kind FROM requests ORDER BY id")]
        assert kinds == ["error", "resending", "batch"]
    finally:
        journal.close()


@pytest.mark.parametrize("n", [1, 21])
def test_every_target_gets_exactly_one_result(tmp_path: Path, n: int) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    sweep = journal.start_sweep(T0, "t", T0, False)
    plan = plan_cancels([decision("A", str(i)) for i in range(n)], max_cancels=100,
                        dry_run=False, paused=False)

    class Single(Adapter):
        async def cancel_one(self, account: str, order_id: str) -> CancelReply:
            return CancelReply(account, order_id, True, "WC", "", "")

    adapter = Single(journal, {})
    results = asyncio.run(send_plan(plan, broker=adapter, journal=journal,
                                    sweep_id=sweep, clock=lambda: T0, log=Log()))
    try:
        assert sorted(r.target.order.order_id for r in results) == sorted(map(str, range(n)))
        assert sorted(r.intent_id for r in results) == list(range(1, n + 1))
    finally:
        journal.close()
