"""Cash released by a sweep: observed (balance after minus before) against expected. Pure.

An equity account's release is its withdrawable cash, expected to be price x cancelled
quantity of each cancelled buy LO. A derivatives account's is its derivative balance's
withdrawable, which rises by the margin the cancelled futures orders held. That margin is not
price x quantity: it is the contract value times a margin rate the clearing house and the
broker set (and change), net of the positions the account holds. No figure the guard reads
gives it, so the expected release of a derivatives account is unknown (None): the observed
delta is logged and never flagged as a mismatch (docs/market.md, "Accounts").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from guard.market.accounts import DerivativeCash
from guard.model import CashFigures, Outcome

__all__ = ["CashRelease", "cash_release", "expected_release"]

MISMATCH_ABS = Decimal(1_000)  # VND: rounding and fees below this are noise
MISMATCH_REL = Decimal("0.02")


@dataclass(frozen=True, slots=True)
class CashRelease:
    """What one account got back. ``mismatch`` flags an observed delta far from expected;
    ``expected`` (and ``purchasing_power_delta``) is None where no honest figure exists:
    a derivatives account (``basis`` ``derivative``), whose delta is margin released."""

    account: str
    withdrawable_delta: Decimal
    purchasing_power_delta: Decimal | None
    expected: Decimal | None
    mismatch: bool
    basis: Literal["equity", "derivative"] = "equity"


def expected_release(outcomes: Iterable[Outcome]) -> Decimal:
    """Sum of price x cancelled quantity over cancelled buy LO orders (equity accounts)."""
    total = Decimal(0)
    for outcome in outcomes:
        order = outcome.sent.target.order
        if (outcome.kind in ("cancelled", "partially_cancelled") and order.side == "B"
                and order.order_type == "LO" and order.price is not None):
            total += order.price * outcome.cancelled_qty
    return total


def cash_release(account: str, before: CashFigures | DerivativeCash,
                 after: CashFigures | DerivativeCash,
                 outcomes: Iterable[Outcome]) -> CashRelease:
    delta = after.withdrawable - before.withdrawable
    if not (isinstance(before, CashFigures) and isinstance(after, CashFigures)):
        # A derivatives account: the delta is margin released, with no expected figure.
        return CashRelease(account=account, withdrawable_delta=delta,
                           purchasing_power_delta=None, expected=None, mismatch=False,
                           basis="derivative")
    expected = expected_release(o for o in outcomes if o.sent.target.order.account == account)
    tolerance = max(MISMATCH_ABS, abs(expected) * MISMATCH_REL)
    return CashRelease(
        account=account,
        withdrawable_delta=delta,
        purchasing_power_delta=after.purchasing_power - before.purchasing_power,
        expected=expected,
        mismatch=abs(delta - expected) > tolerance,
    )
