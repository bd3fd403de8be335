"""``plan_cancels``: pure. Which decisions become cancels, in which batches, or why none."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from guard.act.plan import CancelPlan, plan_cancels
from guard.clock import EXCHANGE_TZ
from guard.evaluate.engine import Decision, Match, Verdict
from guard.market.calendar import Board
from guard.model import BookOrder

T0 = datetime(2026, 11, 23, 9, 30, tzinfo=EXCHANGE_TZ)


def order(order_id: str, account: str = "0001234", status: str = "QU") -> BookOrder:
    return BookOrder(account=account, order_id=order_id, client_request_id=f"c-{order_id}",
                     symbol="SSI", side="B", order_type="LO", price=Decimal(27_000),
                     price_word=None, quantity=100, filled=0, cancelled=0, status=status,
                     input_time=T0)


def decide(order_id: str, account: str = "0001234", *, rules: tuple[str, ...] = ("stale",),
           held: str | None = None) -> Decision:
    verdict = Verdict.of(*(Match(r, f"{r} says so") for r in rules))
    return Decision(order=order(order_id, account), board=Board.HOSE, verdict=verdict, held=held)


def plan(decisions: list[Decision], **kw: object) -> CancelPlan:
    args: dict[str, object] = {"max_cancels": 200, "dry_run": False, "paused": False}
    args.update(kw)
    return plan_cancels(decisions, **args)  # type: ignore[arg-type]


def ids(p: CancelPlan) -> list[list[str]]:
    return [[t.order.order_id for t in batch] for batch in p.batches]


def test_only_decided_cancels_are_targets() -> None:
    p = plan([decide("1"), decide("2", held="status WC already cancelling"),
              decide("3", rules=()), decide("4", held="HOSE in ATC: cancel banned")])
    assert [t.order.order_id for t in p.targets] == ["1"]
    assert ids(p) == [["1"]] and p.blocked is None and not p.tripped and p.to_send == 1


def test_target_keeps_every_rule_and_reason() -> None:
    [target] = plan([decide("1", rules=("stale", "pre-close"))]).targets
    assert target.rules == ("stale", "pre-close")
    assert target.reason == "stale says so; pre-close says so"
    assert target.key == ("0001234", "1")


def test_batches_hold_at_most_twenty_orders_of_one_account_in_order() -> None:
    a = [decide(f"a{i:02}", "0001234") for i in range(45)]
    b = [decide(f"b{i}", "0001238") for i in range(3)]
    p = plan([*b, *a])
    assert [len(x) for x in p.batches] == [20, 20, 5, 3]
    assert ids(p)[0] == [f"a{i:02}" for i in range(20)]
    assert ids(p)[2] == [f"a{i:02}" for i in range(40, 45)]
    assert ids(p)[3] == ["b0", "b1", "b2"]
    for batch in p.batches:
        assert len({t.order.account for t in batch}) == 1
    assert p.to_send == 48


def test_batch_size_is_a_parameter_and_must_be_positive() -> None:
    assert [len(x) for x in plan([decide(str(i)) for i in range(5)], batch_size=2).batches] == [
        2, 2, 1]
    with pytest.raises(ValueError, match="batch_size"):
        plan([decide("1")], batch_size=0)


def test_an_order_is_in_one_batch_at_most_and_never_if_in_flight() -> None:
    p = plan([decide("1"), decide("1"), decide("2"), decide("3")],
             in_flight={("0001234", "2"), ("0001238", "3")})
    # "2" is in flight; "3" in flight is another account's order of the same id.
    assert ids(p) == [["1", "3"]]


def test_breaker_trips_above_the_limit_and_sends_nothing() -> None:
    decisions = [decide(str(i)) for i in range(4)]
    tripped = plan(decisions, max_cancels=3)
    assert tripped.tripped and tripped.batches == () and tripped.to_send == 0
    assert len(tripped.targets) == 4
    assert tripped.blocked == "circuit breaker: 4 matches > max_cancels_per_sweep 3"
    at_limit = plan(decisions, max_cancels=4)
    assert not at_limit.tripped and at_limit.to_send == 4


def test_breaker_counts_targets_not_held_orders_nor_in_flight() -> None:
    decisions = [decide("1"), decide("2"), decide("3", held="protected prefix keep-")]
    assert not plan(decisions, max_cancels=2).tripped
    assert not plan([*decisions, decide("4")], max_cancels=2,
                    in_flight={("0001234", "4")}).tripped


def test_breaker_wins_over_dry_run_and_pause() -> None:
    p = plan([decide("1"), decide("2")], max_cancels=1, dry_run=True, paused=True)
    assert p.tripped and p.blocked is not None and p.blocked.startswith("circuit breaker")


def test_dry_run_and_pause_list_targets_but_send_nothing() -> None:
    dry = plan([decide("1")], dry_run=True)
    assert (dry.blocked, dry.batches, dry.tripped) == ("dry run", (), False)
    assert [t.order.order_id for t in dry.targets] == ["1"]
    paused = plan([decide("1")], paused=True)
    assert (paused.blocked, paused.batches) == ("paused by the pause file", ())
    assert len(paused.targets) == 1


def test_nothing_to_do() -> None:
    p = plan([])
    assert (p.targets, p.batches, p.blocked, p.tripped) == ((), (), None, False)


@given(
    st.lists(st.tuples(st.sampled_from(["0001234", "0001238", "0009999"]),
                       st.integers(0, 60), st.booleans()), max_size=120),
    st.integers(1, 25),
    st.sets(st.integers(0, 60), max_size=10),
)
def test_every_target_is_sent_exactly_once_within_limits(
    rows: list[tuple[str, int, bool]], size: int, flying: set[int]
) -> None:
    decisions = [decide(str(n), acct, held=None if ok else "held") for acct, n, ok in rows]
    in_flight = {("0001234", str(n)) for n in flying}
    p = plan(decisions, batch_size=size, max_cancels=10_000, in_flight=in_flight)
    wanted = {(a, str(n)) for a, n, ok in rows if ok} - in_flight
    sent = [t.key for batch in p.batches for t in batch]
    assert sorted(sent) == sorted(wanted)  # each once, none missing, none extra
    assert all(1 <= len(b) <= size and len({t.order.account for t in b}) == 1 for b in p.batches)
