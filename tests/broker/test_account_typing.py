"""An account's kind comes from the broker (``get_account_info()``'s ``accountType``), read
once a day through the real SDK; the number's suffix (8: derivatives) is only the hint used
when the broker does not say, and that is logged. A derivatives account's cash is its
derivative balance."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kit import ACCT, OTHER
from structlog.testing import capture_logs

from guard.broker.client import Broker
from guard.broker.replies import account_types, derivative_cash
from guard.broker.tokens import TokenCache
from guard.errors import BrokerReplyError
from guard.market.accounts import AccountKind, DerivativeCash, kind_of_type, suffix_hint
from guard.model import CashFigures
from guard.settings import load_credentials
from guard.simulator.control import Simulator
from guard.simulator.faults import Fault

INFO = "/api/v3/account/info"
BALANCE = "/api/v3/trading/accountBalance"
PPMMR = "/api/v3/trading/ppmmrAccount"
T = TypeVar("T")


def with_broker(sim: Simulator, tmp_path: Path,
                body: Callable[[Broker], Awaitable[T]]) -> tuple[T, list[dict[str, Any]]]:
    """Run ``body`` on a fresh broker logged in to ``sim``; what it returned, and the log."""
    async def run() -> T:
        state = tmp_path / "state"
        state.mkdir(mode=0o700, exist_ok=True)
        async with Broker(load_credentials(sim.env()), TokenCache(state),
                          retry_delay_ms=10) as broker:
            await broker.ensure_session()
            return await body(broker)

    with capture_logs() as logs:
        result = asyncio.run(run())
    return result, logs


def typed(logs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {str(e["account"]): e for e in logs if e["event"] == "account.typed"}


def test_the_hint_is_the_suffix() -> None:
    assert suffix_hint("0001238") is AccountKind.DERIVATIVE
    assert suffix_hint("0001234") is AccountKind.EQUITY
    assert kind_of_type("Derivative") is AccountKind.DERIVATIVE
    assert kind_of_type(" margin ") is kind_of_type("Cash") is AccountKind.EQUITY
    assert kind_of_type("2") is None and kind_of_type(None) is None


def test_account_type_overrides_the_suffix_both_ways(sim: Simulator, tmp_path: Path) -> None:
    """0001238 ends in 8 but the broker says Cash: its equity balance is read. 0001234 ends
    in 4 but the broker says Derivative: its derivative balance is read."""
    sim.set_account_type(ACCT, "Derivative")
    sim.seed_order(ACCT, "VN30F2612", "B", 1_350, 2)

    async def body(broker: Broker) -> tuple[Any, Any]:
        return await broker.cash(ACCT), await broker.cash(OTHER)

    (derivative, equity), logs = with_broker(sim, tmp_path, body)
    held = 1_350 * 100_000 * 17 // 100 * 2
    assert derivative == DerivativeCash(Decimal(5_000_000_000 - held), Decimal(5_000_000_000))
    assert isinstance(equity, CashFigures)
    assert equity.withdrawable == Decimal(5_000_000_000)
    assert len(sim.requests_to("GET", INFO)) == 1  # one listing types every account
    assert len(sim.requests_to("GET", PPMMR)) == 1  # only the equity account's
    seen = typed(logs)
    assert seen[ACCT]["kind"] == "derivative" and seen[ACCT]["source"] == "broker"
    assert seen[OTHER]["kind"] == "equity" and seen[OTHER]["account_type"] == "Cash"
    assert all(e["log_level"] == "info" for e in seen.values())


def test_the_type_is_read_once_a_day(sim: Simulator, tmp_path: Path) -> None:
    sim.set_account_type(OTHER, "Derivative")

    async def body(broker: Broker) -> list[Any]:
        return [await broker.cash(a) for a in (ACCT, OTHER, ACCT, OTHER)]

    cash, _ = with_broker(sim, tmp_path, body)
    assert [type(c) for c in cash] == [CashFigures, DerivativeCash] * 2
    assert len(sim.requests_to("GET", INFO)) == 1


def test_a_type_the_guard_does_not_know_falls_back_to_the_hint_logged(
    sim: Simulator, tmp_path: Path
) -> None:
    sim.add_account("0005678", 1_000_000_000, account_type="Futures")  # not a type we know
    sim.set_account_type(ACCT, "")

    async def body(broker: Broker) -> list[Any]:
        return [await broker.account_typing(a) for a in ("0005678", ACCT, "0005678")]

    typings, logs = with_broker(sim, tmp_path, body)
    assert [(t.kind, t.source) for t in typings] == [
        (AccountKind.DERIVATIVE, "suffix"), (AccountKind.EQUITY, "suffix"),
        (AccountKind.DERIVATIVE, "suffix")]
    falls = [e for e in logs if e["event"] == "account.typed" and e["source"] == "suffix"]
    assert [(e["account"], e["kind"], e["log_level"]) for e in falls] == [
        ("0005678", "derivative", "warning"), (ACCT, "equity", "warning")]  # once a day
    assert "unknown accountType 'Futures'" in falls[0]["reason"]
    assert typed(logs)[OTHER]["source"] == "broker"  # the one the broker did type
    assert len(sim.requests_to("GET", INFO)) == 1  # the broker answered: kept for the day


def test_an_account_the_listing_leaves_out_falls_back_to_the_hint(
    sim: Simulator, tmp_path: Path
) -> None:
    sim.override_reply("GET", INFO, [{"accountNo": ACCT, "accountType": "Cash"}])

    async def body(broker: Broker) -> Any:
        return await broker.account_typing(OTHER)

    typing, _logs = with_broker(sim, tmp_path, body)
    assert (typing.kind, typing.source) == (AccountKind.DERIVATIVE, "suffix")
    assert "does not list the account" in typing.reason


def test_a_listing_that_cannot_be_read_falls_back_and_is_asked_again(
    sim: Simulator, tmp_path: Path
) -> None:
    """The listing fails (503: the broker is unavailable): the hint decides, logged with why,
    and the next need asks the broker again, which says 0001238 is Cash."""
    sim.inject(Fault("error", "GET", INFO, times=1, status=503))

    async def body(broker: Broker) -> list[Any]:
        return [await broker.account_typing(OTHER), await broker.account_typing(OTHER)]

    typings, logs = with_broker(sim, tmp_path, body)
    assert [(t.kind, t.source) for t in typings] == [(AccountKind.DERIVATIVE, "suffix"),
                                                     (AccountKind.EQUITY, "broker")]
    assert "get_account_info failed" in typings[0].reason
    [warned] = [e for e in logs if e["event"] == "account.typed" and e["source"] == "suffix"]
    assert warned["account"] == OTHER and warned["log_level"] == "warning"


def test_a_refused_listing_is_not_asked_again_that_day_and_the_hint_is_checked_by_the_reply(
    sim: Simulator, tmp_path: Path
) -> None:
    """A refusal (400) will not change within the day: the hint holds until tomorrow. On
    the hint 0001238 is read as derivatives; the broker's reply has no derivative member
    (it is a Cash account), so its cash is refused, never reported from the wrong side."""
    sim.override_reply("GET", INFO, {"code": 400100, "msg": "nope"}, status=400, times=None)

    async def body(broker: Broker) -> Any:
        first = await broker.account_typing(OTHER)
        assert (await broker.account_typing(ACCT)).source == "suffix"
        try:
            await broker.cash(OTHER)
        except BrokerReplyError as exc:
            return first, str(exc)
        return first, ""

    (first, refused), _ = with_broker(sim, tmp_path, body)
    assert (first.kind, first.source) == (AccountKind.DERIVATIVE, "suffix")
    assert "no derivative balance" in refused
    assert len(sim.requests_to("GET", INFO)) == 1  # one refusal serves the day


def test_replies_are_read_strictly() -> None:
    with pytest.raises(BrokerReplyError, match="not a list"):
        account_types({"accountNo": "1"})
    with pytest.raises(BrokerReplyError, match="no derivative balance"):
        derivative_cash(None, ACCT)

    class Row:
        def __init__(self, number: str, kind: str) -> None:
            self.account_no, self.account_type = number, kind

    # An account listed twice with two types is left out: the caller uses the hint.
    assert account_types([Row("1", "Cash"), Row("1", "Derivative"), Row("2", "Cash")]) == {
        "2": "Cash"}

    class Balance:
        withdrawable = float("inf")
        account_balance = 1.0

    with pytest.raises(BrokerReplyError, match="finite"):
        derivative_cash(Balance(), ACCT)
