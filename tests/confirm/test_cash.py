"""``expected_release`` and ``cash_release``: cash back = price x cancelled qty of buy LOs."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from decimal import Decimal

from guard.clock import EXCHANGE_TZ
from guard.confirm.cash import cash_release, expected_release
from guard.model import BookOrder, CancelTarget, CashFigures, Outcome, OutcomeKind, SendResult

T0 = datetime(2026, 11, 23, 9, 30, tzinfo=EXCHANGE_TZ)
BUY = BookOrder(account="0001234", order_id="1", client_request_id="c", symbol="SSI", side="B",
                order_type="LO", price=Decimal(27_000), price_word=None, quantity=1_000,
                filled=0, cancelled=0, status="QU", input_time=T0)


def outcome(kind: OutcomeKind, qty: int, order: BookOrder = BUY) -> Outcome:
    sent = SendResult(CancelTarget(order, ("stale",), "age"), 1, "accepted", "", "WC")
    return Outcome(sent, kind, qty, "CL", "", 0.1)


def cash(withdrawable: int, power: int | None = None) -> CashFigures:
    return CashFigures(Decimal(withdrawable), Decimal(0),
                       Decimal(power if power is not None else withdrawable))


def test_expected_counts_cancelled_buy_limit_orders_only() -> None:
    got = expected_release([
        outcome("cancelled", 1_000),                                          # 27,000,000
        outcome("partially_cancelled", 300, replace(BUY, price=Decimal("95500.5"))),
        outcome("cancelled", 500, replace(BUY, side="S")),                    # a sell: none
        outcome("cancelled", 500, replace(BUY, order_type="ATC", price=None,
                                          price_word="ATC")),                  # no price
        outcome("filled_first", 0),
        outcome("already_done", 700),  # someone else's cancel: not this sweep's release
        outcome("failed", 0),
        outcome("unconfirmed", 0),
    ])
    assert got == Decimal(27_000 * 1_000) + Decimal("95500.5") * 300


def test_expected_of_nothing_is_zero() -> None:
    assert expected_release([]) == 0


def test_release_compares_observed_with_expected_per_account() -> None:
    other = replace(BUY, account="0001238", order_id="2")
    outcomes = [outcome("cancelled", 1_000), outcome("cancelled", 100, other)]
    got = cash_release("0001234", cash(1_000_000_000, 900), cash(1_027_000_000, 1_200),
                       outcomes)
    assert got.account == "0001234"
    assert got.expected == Decimal(27_000_000)  # the other account's order is not counted
    assert got.withdrawable_delta == Decimal(27_000_000)
    assert got.purchasing_power_delta == Decimal(300)
    assert not got.mismatch


def test_mismatch_beyond_tolerance_is_flagged() -> None:
    outcomes = [outcome("cancelled", 1_000)]  # expects 27,000,000; tolerance 2% = 540,000
    near = cash_release("0001234", cash(0), cash(27_000_000 - 540_000), outcomes)
    far = cash_release("0001234", cash(0), cash(27_000_000 - 540_001), outcomes)
    assert not near.mismatch and far.mismatch


def test_small_amounts_use_the_absolute_tolerance() -> None:
    tiny = [outcome("cancelled", 1, replace(BUY, price=Decimal(1_000)))]  # expects 1,000
    assert not cash_release("0001234", cash(0), cash(2_000), tiny).mismatch
    assert cash_release("0001234", cash(0), cash(2_001), tiny).mismatch
    assert cash_release("0001234", cash(0), cash(5_000), []).mismatch
