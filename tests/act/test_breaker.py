"""``BreakerGate``: pure. The breaker of a sweep that starts accounts as their books arrive.

The promises, tried against every order of arrival, every estimate and every growth:
- the accounts that start never hold more than ``limit`` matches between them;
- with no estimates, nothing starts before every account is read or dropped (exact);
- estimates that were never below the truth make a trip clean: nothing started;
- a sweep under the limit starts every account it read.
"""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from guard.act.breaker import BreakerGate

ACCOUNTS = tuple(f"A{i:02d}" for i in range(8))


@st.composite
def sweeps(draw: st.DrawFn) -> tuple[BreakerGate, list[tuple[str, int | None]]]:
    """A gate and the events it sees: (account, fresh count) for a read, (account, None) for a
    drop, in any order."""
    n = draw(st.integers(1, len(ACCOUNTS)))
    accounts = ACCOUNTS[:n]
    limit = draw(st.integers(0, 60))
    estimates = {a: draw(st.integers(0, 30)) for a in accounts if draw(st.booleans())}
    events: list[tuple[str, int | None]] = [
        (a, draw(st.one_of(st.none(), st.integers(0, 30)))) for a in accounts]
    order = draw(st.permutations(events))
    return BreakerGate(limit, accounts, estimates), list(order)


def run(gate: BreakerGate, events: list[tuple[str, int | None]]) -> list[list[str]]:
    """Feed the events; what became ready after each."""
    steps = []
    for account, count in events:
        if count is None:
            gate.drop(account)
        else:
            gate.read(account, count)
        steps.append(gate.ready())
    return steps


@given(sweeps())
def test_the_accounts_started_never_hold_more_than_the_limit(
        case: tuple[BreakerGate, list[tuple[str, int | None]]]) -> None:
    gate, events = case
    for account, count in events:
        if count is None:
            gate.drop(account)
        else:
            gate.read(account, count)
        gate.ready()
        assert sum(gate.fresh[a] for a in gate.started) <= gate.limit
    assert gate.settled
    assert len(gate.started) == len(set(gate.started))


@given(sweeps())
def test_without_estimates_nothing_starts_before_the_count_is_final(
        case: tuple[BreakerGate, list[tuple[str, int | None]]]) -> None:
    gate, events = case
    gate = BreakerGate(gate.limit, gate.accounts)  # no estimates: the exact breaker
    steps = run(gate, events)
    assert all(not s for s in steps[:-1])
    read = [a for a in gate.accounts if a in gate.fresh]
    assert steps[-1] == ([] if gate.tripped else read)


@given(sweeps())
def test_estimates_never_below_the_truth_make_a_trip_clean(
        case: tuple[BreakerGate, list[tuple[str, int | None]]]) -> None:
    gate, events = case
    # An estimate for every account, at least its fresh count (the book only shrank).
    truth = {a: (c or 0) for a, c in events}
    gate = BreakerGate(gate.limit, gate.accounts, {a: truth[a] + (len(a) % 3) for a in truth})
    run(gate, events)
    if gate.tripped:
        assert gate.started == []
        assert gate.sent_before_trip() == 0


@given(sweeps())
def test_a_sweep_under_the_limit_starts_every_account_it_read(
        case: tuple[BreakerGate, list[tuple[str, int | None]]]) -> None:
    gate, events = case
    run(gate, events)
    if not gate.tripped:
        assert sorted(gate.started) == sorted(gate.fresh)
    else:
        assert set(gate.started) < set(gate.fresh) or not gate.fresh


def test_a_good_estimate_starts_the_first_account_read_at_once() -> None:
    gate = BreakerGate(10, ("A", "B", "C"), {"A": 3, "B": 3, "C": 3})
    gate.read("B", 3)
    assert gate.ready() == ["B"]
    gate.read("A", 2)
    assert gate.ready() == ["A"]
    assert gate.ready() == []  # each account starts once


def test_an_account_without_an_estimate_holds_every_other_back_until_it_is_read() -> None:
    gate = BreakerGate(10, ("A", "B"), {"A": 1})
    gate.read("A", 1)
    assert gate.bound() == math.inf
    assert gate.ready() == []
    gate.read("B", 2)
    assert gate.ready() == ["A", "B"]


def test_growth_after_the_pre_read_trips_late_and_stops_the_rest() -> None:
    # A and B read first, under their estimates; C grew by 8 after the pre-read.
    gate = BreakerGate(10, ("A", "B", "C", "D"), {"A": 3, "B": 3, "C": 1, "D": 1})
    gate.read("A", 3)
    assert gate.ready() == ["A"]  # bound 3 + 3 + 1 + 1 = 8
    gate.read("C", 9)
    assert gate.ready() == []  # bound 3 + 3 + 9 + 1 = 16
    gate.read("B", 3)
    gate.read("D", 0)
    assert gate.ready() == []
    assert gate.settled and gate.tripped and gate.total == 15
    assert gate.started == ["A"] and gate.sent_before_trip() == 3


def test_a_dropped_account_counts_nothing() -> None:
    gate = BreakerGate(5, ("A", "B"), {"A": 2, "B": 9})
    gate.read("A", 2)
    assert gate.ready() == []
    gate.drop("B")  # its book failed: it sends nothing
    assert gate.ready() == ["A"]
    assert not gate.tripped
