"""Issue "Hardening", findings 3 and 11: a book is validated as a whole before anything is
decided from it, through the real SDK over HTTP to the simulator.

- 3: one ``orderId`` on two rows (a protected ``keep-`` row and an unprotected copy, or a FF
  row and a QU row) must not get the order cancelled: the account is unread, no DELETE.
- 11: a page that is cut (``totalRecord`` 5000, one row) is not the whole book: the account
  is unread, the sweep ``incomplete`` and ``run --once`` exits 6.
- rows of another account refuse the whole book, the well-formed rows included.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kit import ACCT, AT, BOOK, OTHER, STALE
from kit.log import Recorder
from kit.sweep import Guard, rules_text

from guard.broker.replies import money as _money
from guard.broker.replies import parse_order_book
from guard.errors import BrokerReplyError
from guard.simulator.control import Simulator

ONE_ACCOUNT = rules_text().replace(f'accounts: ["{ACCT}", "{OTHER}"]', f'accounts: ["{ACCT}"]')
def wire(sim: Simulator, order_id: str, **changes: Any) -> dict[str, Any]:
    """The order as the simulator puts it on the wire, with ``changes`` (``None`` deletes)."""
    row = {**sim.exchange.order_wire(sim.order(order_id)), **changes}
    return {k: v for k, v in row.items() if v is not None}


def book(*rows: dict[str, Any], **top: Any) -> dict[str, Any]:
    body = {"accountNo": ACCT, "totalRecord": len(rows), "orderList": list(rows), **top}
    return {k: v for k, v in body.items() if v is not _ABSENT}


_ABSENT = object()


def deletes(sim: Simulator) -> list[Any]:
    return [r for r in sim.requests if r.method == "DELETE"]


def assert_unread_nothing_decided(guard: Guard, sim: Simulator, says: str,
                                  log: Recorder) -> None:
    report = guard.sweep(log=log)
    [(account, why)] = report.unread_accounts
    assert account == ACCT and says in why, why
    assert len(why) < 300
    assert report.result == "incomplete" and not report.complete
    assert report.decisions == () and report.plan.targets == ()
    assert deletes(sim) == []
    [failed] = log.named("book.read_failed")
    assert failed["account"] == ACCT and failed["error"] == why
    with guard.journal() as j:
        assert j.query("SELECT COUNT(*) FROM decisions") == [(0,)]
        assert j.query("SELECT COUNT(*) FROM intents") == [(0,)]


# ---- one orderId on two rows ------------------------------------------------------


@pytest.mark.parametrize("keep_first", [True, False], ids=["keep-row-first", "keep-row-last"])
def test_a_protected_order_listed_twice_is_never_cancelled(
    keep_first: bool, sim: Simulator, tmp_path: Path
) -> None:
    """The keep- order, listed again with an empty clientRequestId: the copy is not
    protected, and cancelling it by orderId would cancel the protected order."""
    a = sim.seed_order(ACCT, "SSI", "B", 27_000, 100, age=STALE, client_request_id="keep-core")
    keep, bare = wire(sim, a), wire(sim, a, clientRequestId="")
    rows = (keep, bare) if keep_first else (bare, keep)
    sim.override_reply("GET", BOOK, book(*rows), times=1)
    guard = Guard(sim, tmp_path / "state", ONE_ACCOUNT)

    assert_unread_nothing_decided(guard, sim, f"order {a} is listed twice", Recorder())
    assert sim.order(a).status == "QU" and sim.accepted_cancels() == []

    again = guard.sweep()  # the real book: the order is protected, nothing to do
    assert again.result == "nothing_to_do" and deletes(sim) == []
    assert sim.order(a).status == "QU"


def test_a_filled_row_and_an_open_row_with_one_id_cancel_nothing(
    sim: Simulator, tmp_path: Path
) -> None:
    """FF and QU for one orderId: which is true is unknowable from this reply."""
    a = sim.seed_order(ACCT, "SSI", "B", 27_000, 100, age=STALE)
    b = sim.seed_order(ACCT, "VNM", "B", 62_000, 100, age=STALE)  # well-formed, not duplicated
    filled = wire(sim, a, orderStatus="FF", filledQty=100)
    sim.override_reply("GET", BOOK, book(filled, wire(sim, b), wire(sim, a)), times=1)
    guard = Guard(sim, tmp_path / "state", ONE_ACCOUNT)

    assert_unread_nothing_decided(guard, sim, f"order {a} is listed twice", Recorder())
    assert sim.order(a).status == sim.order(b).status == "QU"

    again = guard.sweep()  # the duplicate was a one-off: the account is guarded again
    assert again.result == "ok"
    assert sorted(sim.accepted_cancels()) == sorted([a, b])


# ---- a cut page ------------------------------------------------------------------


def test_a_cut_page_is_not_the_whole_book(sim: Simulator, tmp_path: Path) -> None:
    a = sim.seed_order(ACCT, "SSI", "B", 27_000, 100, age=STALE)
    sim.override_reply("GET", BOOK, book(wire(sim, a), totalRecord=5000), times=1)
    guard = Guard(sim, tmp_path / "state", ONE_ACCOUNT)

    assert_unread_nothing_decided(guard, sim, "totalRecord 5000 but 1 row", Recorder())
    assert sim.order(a).status == "QU"
    assert guard.sweep().result == "ok" and sim.accepted_cancels() == [a]


def test_run_once_exits_6_on_a_cut_page(sim: Simulator, tmp_path: Path) -> None:
    a = sim.seed_order(ACCT, "SSI", "B", 27_000, 100, age=STALE)
    sim.override_reply("GET", BOOK, book(wire(sim, a), totalRecord=5000), times=None)
    rules = tmp_path / "rules.yaml"
    rules.write_text(ONE_ACCOUNT)
    env = {**os.environ, **sim.env(), "SSI_GUARD_STATE_DIR": str(tmp_path / "state")}
    done = subprocess.run(
        [sys.executable, "-m", "guard", "run", "--rules", str(rules), "--once", "--at", AT,
         "--log-format", "json"],
        env=env, capture_output=True, text=True, timeout=60, check=False)

    assert done.returncode == 6, done.stderr
    assert "incomplete" in done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    [failed] = [e for e in events if e["event"] == "book.read_failed"]
    assert failed["account"] == ACCT and "totalRecord 5000 but 1 row" in failed["error"]
    assert deletes(sim) == [] and sim.order(a).status == "QU"


# What the book reply claims as its size; ``None`` in the body is JSON null.
BAD_TOTALS: dict[str, tuple[Any, str]] = {
    "more": (5000, "totalRecord 5000 but 1 row"),
    "more-as-text": ("5000", "totalRecord 5000 but 1 row"),
    "fewer": (0, "totalRecord 0 but 1 row"),
    "negative": (-1, "totalRecord -1 but 1 row"),
    "fraction": (1.5, "field totalRecord is 1.5, not a whole number"),
    "word": ("abc", "field totalRecord is 'abc', not a whole number"),
    "bool": (True, "field totalRecord is True, not a whole number"),
    "list": ([1], "field totalRecord is [1], not a whole number"),
}


@pytest.mark.parametrize("case", list(BAD_TOTALS))
def test_a_book_whose_total_is_not_its_rows_is_refused(
    case: str, sim: Simulator, tmp_path: Path
) -> None:
    a = sim.seed_order(ACCT, "SSI", "B", 27_000, 100, age=STALE)
    total, says = BAD_TOTALS[case]
    sim.override_reply("GET", BOOK, book(wire(sim, a), totalRecord=total), times=1)
    guard = Guard(sim, tmp_path / "state", ONE_ACCOUNT)
    assert_unread_nothing_decided(guard, sim, says, Recorder())


@pytest.mark.parametrize("total", [_ABSENT, None, 1, "1", 1.0, " 1 "],
                         ids=["absent", "null", "int", "text", "float", "padded-text"])
def test_a_total_that_agrees_or_is_not_given_is_read(total: Any, sim: Simulator,
                                                     tmp_path: Path) -> None:
    a = sim.seed_order(ACCT, "SSI", "B", 27_000, 100, age=STALE)
    sim.override_reply("GET", BOOK, book(wire(sim, a), totalRecord=total), times=1)
    guard = Guard(sim, tmp_path / "state", ONE_ACCOUNT)
    report = guard.sweep()
    assert report.result == "ok" and report.unread_accounts == ()
    assert sim.accepted_cancels() == [a]


@pytest.mark.parametrize("body", [
    {"accountNo": ACCT, "orderList": None, "totalRecord": 3},
    {"accountNo": ACCT, "orderList": [], "totalRecord": 3},
    {"code": 204, "msg": "No Content", "totalRecord": 3},
], ids=["null-list", "empty-list", "no-content-marker"])
def test_an_empty_page_of_a_non_empty_book_is_refused(body: dict[str, Any], sim: Simulator,
                                                      tmp_path: Path) -> None:
    sim.seed_order(ACCT, "SSI", "B", 27_000, 100, age=STALE)
    sim.override_reply("GET", BOOK, body, times=1)
    guard = Guard(sim, tmp_path / "state", ONE_ACCOUNT)
    assert_unread_nothing_decided(guard, sim, "totalRecord 3 but 0 rows", Recorder())


# Numbers past any plausible order, on the wire: before, the SDK's to_int turned a quantity of
# "1e999999999" into a billion-digit int (the sweep hung) and such a price raised an
# OverflowError (the sweep crashed).
HUGE: dict[str, tuple[str, Any, str]] = {
    "quantity-1e999999999": ("quantity", "1e999999999", "field quantity is out of range"),
    "filledQty-negative-huge": ("filledQty", "-1e999999999", "field filledQty is out of range"),
    # Shown masked: a run that long is token-shaped, and a value is masked before it is cut.
    "price-5000-digits": ("price", "9" * 5000, "field price is '***'"),
    "price-1e999999999": ("price", "1e999999999", "not a plausible price"),
}


@pytest.mark.parametrize("case", list(HUGE))
def test_a_number_past_any_order_is_refused_not_computed(case: str, sim: Simulator,
                                                         tmp_path: Path) -> None:
    a = sim.seed_order(ACCT, "SSI", "B", 27_000, 100, age=STALE)
    field, value, says = HUGE[case]
    sim.override_reply("GET", BOOK, book(wire(sim, a, **{field: value})), times=1)
    guard = Guard(sim, tmp_path / "state", ONE_ACCOUNT)
    assert_unread_nothing_decided(guard, sim, says, Recorder())


# ---- rows of another account -----------------------------------------------------------------


def test_one_row_of_another_account_refuses_the_whole_book(sim: Simulator,
                                                           tmp_path: Path) -> None:
    """The well-formed stale row beside it is not cancelled either: the book is one reply."""
    a = sim.seed_order(ACCT, "SSI", "B", 27_000, 100, age=STALE)
    b = sim.seed_order(OTHER, "VNM", "B", 62_000, 100, age=STALE)
    sim.override_reply("GET", BOOK, book(wire(sim, a), wire(sim, b)), times=1)
    guard = Guard(sim, tmp_path / "state", ONE_ACCOUNT)
    assert_unread_nothing_decided(guard, sim, f"order {b}: belongs to '{OTHER}'", Recorder())
    assert sim.order(a).status == sim.order(b).status == "QU"


# ---- the same rules, on parse_order_book itself ----------------------------------------------


def row(order_id: Any, **changes: Any) -> dict[str, Any]:
    return {"orderId": order_id, "clientRequestId": "", "accountNo": ACCT, "symbol": "SSI",
            "side": "B", "orderType": "LO", "price": "27000", "quantity": 100, "filledQty": 0,
            "cancelQty": 0, "orderStatus": "QU", "inputTime": "2026/11/23 09:20:00", **changes}


@pytest.mark.parametrize("first,second", [
    ("00000001", "00000001"),
    (1, "1"),
    ("00000001", " 00000001"),
    ("A17", "a17"),
    ("00000001", "1"),
], ids=["same", "int-and-text", "padded", "case", "leading-zeros"])
def test_ids_the_broker_could_read_as_one_order_are_duplicates(first: Any, second: Any) -> None:
    with pytest.raises(BrokerReplyError, match="listed twice"):
        parse_order_book({"accountNo": ACCT, "orderList": [row(first), row(second)]}, ACCT)


def test_a_no_content_marker_with_rows_is_refused() -> None:
    with pytest.raises(BrokerReplyError, match="says No Content"):
        parse_order_book({"code": 204, "msg": "No Content", "orderList": [row("1")]}, ACCT)


@pytest.mark.parametrize("total", ["9" * 5000, "1e999999999", 10**13, 1e300])
def test_a_huge_total_is_refused_in_a_line(total: Any) -> None:
    with pytest.raises(BrokerReplyError, match="totalRecord is out of range") as caught:
        parse_order_book({"accountNo": ACCT, "orderList": [row("1")], "totalRecord": total},
                         ACCT)
    assert len(str(caught.value)) < 300


def test_distinct_ids_are_read() -> None:
    orders = parse_order_book({"accountNo": ACCT, "totalRecord": "2",
                               "orderList": [row("00000001"), row("00000010")]}, ACCT)
    assert [o.order_id for o in orders] == ["00000001", "00000010"]


FAST = settings(max_examples=200, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])
statuses = st.sampled_from(["QU", "PF", "WC", "FF", "CL", "FFPC", "RJ", "EX"])
unique_books = st.lists(st.integers(1, 10**7), min_size=1, max_size=8, unique=True).flatmap(
    lambda ids: st.tuples(*(st.fixed_dictionaries({
        "orderId": st.just(f"{i:08d}"),
        "clientRequestId": st.sampled_from(["", "keep-1", "algo-7"]),
        "orderStatus": statuses,
    }) for i in ids)))


def full_rows(specs: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    out = []
    for spec in specs:
        filled = 100 if spec["orderStatus"] == "FF" else 0
        out.append(row(spec["orderId"], clientRequestId=spec["clientRequestId"],
                       orderStatus=spec["orderStatus"], filledQty=filled))
    return out


@FAST
@given(unique_books, st.data())
def test_any_book_with_a_repeated_id_is_refused_whole(specs: tuple[dict[str, Any], ...],
                                                      data: st.DataObject) -> None:
    rows = full_rows(specs)
    copy = dict(data.draw(st.sampled_from(rows)))
    copy["clientRequestId"] = data.draw(st.sampled_from(["", "keep-1", "x"]))
    copy["orderStatus"] = data.draw(statuses)
    copy["filledQty"] = 100 if copy["orderStatus"] == "FF" else 0
    rows.insert(data.draw(st.integers(0, len(rows))), copy)
    total = data.draw(st.sampled_from([len(rows), None, _ABSENT]))
    body = {"accountNo": ACCT, "orderList": rows, "totalRecord": total}
    if total is _ABSENT:
        del body["totalRecord"]
    with pytest.raises(BrokerReplyError, match=f"order {copy['orderId']} is listed twice"):
        parse_order_book(body, ACCT)


@FAST
@given(unique_books, st.data())
def test_any_book_whose_total_disagrees_is_refused_whole(specs: tuple[dict[str, Any], ...],
                                                         data: st.DataObject) -> None:
    rows = full_rows(specs)
    total = data.draw(st.integers(0, 10**6).filter(lambda n: n != len(rows)))
    shown = data.draw(st.sampled_from([total, str(total), float(total), f"{total:,}"]))
    with pytest.raises(BrokerReplyError, match=f"totalRecord {total} but {len(rows)} row"):
        parse_order_book({"accountNo": ACCT, "orderList": rows, "totalRecord": shown}, ACCT)


@FAST
@given(unique_books, st.data())
def test_any_book_with_unique_ids_and_its_own_total_is_read_whole(
    specs: tuple[dict[str, Any], ...], data: st.DataObject
) -> None:
    """The other side: strictness must not refuse a good book."""
    rows = full_rows(specs)
    total = data.draw(st.sampled_from([len(rows), str(len(rows)), None, _ABSENT]))
    body = {"accountNo": ACCT, "orderList": rows, "totalRecord": total}
    if total is _ABSENT:
        del body["totalRecord"]
    orders = parse_order_book(body, ACCT)
    assert [o.order_id for o in orders] == [r["orderId"] for r in rows]


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_a_cash_figure_the_sdk_read_as_infinite_is_refused(value: float) -> None:
    """The SDK's ``to_float`` reads "1e999999999" as infinity (and the cash released would be
    infinite)."""
    with pytest.raises(BrokerReplyError, match="withdrawable is not a finite number"):
        _money(value, "withdrawable")
