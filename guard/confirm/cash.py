"""Cash released by a sweep: observed (balance after minus before) against expected (price x
cancelled quantity of each cancelled buy LO). Pure."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from guard.model import CashFigures, Outcome

__all__ = ["CashRelease", "cash_release", "expected_release"]

MISMATCH_ABS = Decimal(1_000)  # VND: rounding and fees below this are noise
MISMATCH_REL = Decimal("0.02")


@dataclass(frozen=True, slots=True)
class CashRelease:
    """What one account got back. ``mismatch`` flags an observed delta far from expected."""

    account: str
    withdrawable_delta: Decimal
    purchasing_power_delta: Decimal
    expected: Decimal
    mismatch: bool


def expected_release(outcomes: Iterable[Outcome]) -> Decimal:
    """Sum of price x cancelled quantity over cancelled buy LO orders."""
    total = Decimal(0)
    for outcome in outcomes:
        order = outcome.sent.target.order
        if (outcome.kind in ("cancelled", "partially_cancelled") and order.side == "B"
                and order.order_type == "LO" and order.price is not None):
            total += order.price * outcome.cancelled_qty
    return total


def cash_release(account: str, before: CashFigures, after: CashFigures,
                 outcomes: Iterable[Outcome]) -> CashRelease:
    expected = expected_release(o for o in outcomes if o.sent.target.order.account == account)
    delta = after.withdrawable - before.withdrawable
    tolerance = max(MISMATCH_ABS, abs(expected) * MISMATCH_REL)
    return CashRelease(
        account=account,
        withdrawable_delta=delta,
        purchasing_power_delta=after.purchasing_power - before.purchasing_power,
        expected=expected,
        mismatch=abs(delta - expected) > tolerance,
    )
