"""Account facts: whether an SSI account trades equities or derivatives, and the figures a
derivatives account's cash is measured on.

The broker says which an account is (``get_account_info()``'s ``accountType``: ``Cash``,
``Margin`` or ``Derivative``). The number's last digit (8 for derivatives at SSI) is only a
hint, used when the broker does not say (docs/market.md, "Accounts"). Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Literal

__all__ = ["AccountKind", "AccountTyping", "DerivativeCash", "kind_of_type", "suffix_hint"]

DERIVATIVE_SUFFIX = "8"  # at SSI a derivatives account number ends in 8, an equity one in 1


class AccountKind(StrEnum):
    """What the guard needs to know of an account: which balance its cash is read from."""

    EQUITY = "equity"  # accountType Cash or Margin: get_equity_balance / get_equity_ppmmr
    DERIVATIVE = "derivative"  # accountType Derivative: get_derivative_balance


_TYPES: dict[str, AccountKind] = {
    "cash": AccountKind.EQUITY,
    "margin": AccountKind.EQUITY,
    "derivative": AccountKind.DERIVATIVE,
}


def kind_of_type(account_type: str | None) -> AccountKind | None:
    """``Cash``/``Margin`` -> equity, ``Derivative`` -> derivative; None for anything else
    (absent, empty, a code this guard does not know): the caller then falls back to the hint."""
    if not isinstance(account_type, str):
        return None
    return _TYPES.get(account_type.strip().casefold())


def suffix_hint(account: str) -> AccountKind:
    """The account number's hint: a number ending in 8 is a derivatives account at SSI."""
    return (AccountKind.DERIVATIVE if account.strip().endswith(DERIVATIVE_SUFFIX)
            else AccountKind.EQUITY)


@dataclass(frozen=True, slots=True)
class AccountTyping:
    """An account's kind and where it came from: the broker's ``accountType`` (``source``
    ``broker``), or the number's hint when the broker did not say (``suffix``, with why)."""

    account: str
    kind: AccountKind
    source: Literal["broker", "suffix"]
    account_type: str = ""  # the broker's word, as it came (for the log)
    reason: str = ""  # why the hint was used


@dataclass(frozen=True, slots=True)
class DerivativeCash:
    """A derivatives account's cash (``get_derivative_balance``): ``withdrawable`` is what
    the margin held for open orders and positions leaves free, so a cancelled futures order
    shows as a rise in it; ``account_balance`` is the cash in the account."""

    withdrawable: Decimal
    account_balance: Decimal
