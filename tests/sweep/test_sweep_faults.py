"""Sweeps under failure: 429, 5xx, timeouts that were and were not applied, refusals,
fills racing the cancel, ATC, confirm timeouts and unreadable books.

The rule proven everywhere: every order ends where the rules and the exchange put it, and the
exchange accepts at most one cancel per order (``accepted_cancels`` has no duplicates).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from kit import ACCT, BATCH, BOOK, OTHER, SINGLE, STALE
from kit.sweep import (
    Guard,
    answered,
    assert_one_outcome_per_intent,
    at,
    outcomes,
    rules_text,
    run_when,
)

from guard.broker.client import Broker
from guard.broker.tokens import TokenCache
from guard.clock import FakeClock
from guard.errors import ReauthRequired
from guard.settings import load_credentials
from guard.simulator.control import Simulator
from guard.simulator.faults import Fault


def batch_ids(sim: Simulator) -> list[list[str]]:
    return [[i["orderId"] for i in r.body["orders"]] for r in sim.requests_to("DELETE", BATCH)]


def kinds(guard: Guard) -> dict[str, list[str]]:
    return {k: [row[0] for row in v] for k, v in outcomes(guard.journal_path).items()}


def stale_orders(sim: Simulator, n: int = 3) -> list[str]:
    """``n`` stale buy LOs of SSI in ACCT, quantities 100, 200, 300..."""
    return [sim.seed_order(ACCT, "SSI", "B", 27_000, 100 * (i + 1), age=STALE) for i in range(n)]


def test_429_on_batch_waits_and_resends_only_what_is_still_open(
    sim: Simulator, tmp_path: Path
) -> None:
    a, b, c = stale_orders(sim)
    sim.inject(Fault("error", "DELETE", BATCH, status=429, retry_after=0.2))
    # While the guard waits out Retry-After, b fills on its own: it must not be sent again.
    filler = run_when(lambda: any(r.status == 429 for r in sim.requests_to("DELETE", BATCH)),
                      lambda: sim.fill(b))
    guard = Guard(sim, tmp_path / "state", rules_text())
    report = guard.sweep()
    filler.join()

    first, second = sim.requests_to("DELETE", BATCH)
    assert first.status == 429 and second.status == 200
    assert second.at - first.at >= 0.2  # Retry-After was obeyed
    assert batch_ids(sim) == [[a, b, c], [a, c]]
    assert sim.order(a).status == sim.order(c).status == "CL" and sim.order(b).status == "FF"
    assert sorted(sim.accepted_cancels()) == sorted([a, c])
    got = kinds(guard)
    assert got[a] == got[c] == ["cancelled"] and got[b][0] in ("filled_first", "already_done")
    assert report.result == "ok"
    assert_one_outcome_per_intent(guard.journal_path)


def test_5xx_on_batch_rereads_and_resends(sim: Simulator, tmp_path: Path) -> None:
    ids = stale_orders(sim)
    sim.inject(Fault("error", "DELETE", BATCH, status=503))
    guard = Guard(sim, tmp_path / "state", rules_text())
    report = guard.sweep()

    assert [r.status for r in sim.requests_to("DELETE", BATCH)] == [503, 200]
    assert report.result == "ok"
    assert all(sim.order(i).status == "CL" for i in ids)
    assert sorted(sim.accepted_cancels()) == sorted(ids)
    assert all(v == ["cancelled"] for v in kinds(guard).values()) and len(kinds(guard)) == 3
    assert_one_outcome_per_intent(guard.journal_path)


def test_timeout_on_a_batch_that_was_applied_is_not_sent_again(
    sim: Simulator, tmp_path: Path
) -> None:
    ids = stale_orders(sim)
    sim.inject(Fault("hang", "DELETE", BATCH, apply_first=True, seconds=1.0))
    guard = Guard(sim, tmp_path / "state", rules_text(), timeout_ms=300)
    report = guard.sweep()

    assert len(sim.requests_to("DELETE", BATCH)) == 1  # the book proved it landed
    assert sim.requests_to("DELETE", SINGLE) == []
    assert report.result == "ok"
    assert all(sim.order(i).status == "CL" for i in ids)
    assert sorted(sim.accepted_cancels()) == sorted(ids)
    assert all(v == ["cancelled"] for v in kinds(guard).values()) and len(kinds(guard)) == 3
    assert_one_outcome_per_intent(guard.journal_path)
    answered(sim)


def test_timeout_on_a_batch_that_was_not_applied_is_sent_again(
    sim: Simulator, tmp_path: Path
) -> None:
    ids = stale_orders(sim)
    sim.inject(Fault("hang", "DELETE", BATCH, apply_first=False, seconds=1.0))
    guard = Guard(sim, tmp_path / "state", rules_text(), timeout_ms=300)
    report = guard.sweep()

    assert batch_ids(sim) == [ids, ids]
    assert report.result == "ok"
    assert all(sim.order(i).status == "CL" for i in ids)
    assert sorted(sim.accepted_cancels()) == sorted(ids)
    assert_one_outcome_per_intent(guard.journal_path)
    answered(sim)


def test_unreadable_reply_to_an_applied_batch_is_ambiguous_not_a_refusal(
    sim: Simulator, tmp_path: Path
) -> None:
    """A 200 whose body is not JSON: the server ran the batch. Falling back to single cancels
    (as for a refusal) would send every order a second cancel."""
    ids = stale_orders(sim)
    sim.inject(Fault("malformed", "DELETE", BATCH))
    guard = Guard(sim, tmp_path / "state", rules_text())
    report = guard.sweep()

    assert len(sim.requests_to("DELETE", BATCH)) == 1
    assert sim.requests_to("DELETE", SINGLE) == []
    assert report.result == "ok"
    assert sorted(sim.accepted_cancels()) == sorted(ids)
    assert all(v == ["cancelled"] for v in kinds(guard).values()) and len(kinds(guard)) == 3


def test_refused_batch_falls_back_to_single_cancels(sim: Simulator, tmp_path: Path) -> None:
    """HTTP 400 on the whole batch: validated and rejected, nothing applied, so each order is
    sent alone. (The simulator's ``error`` fault carries code 500100 even with status 400;
    the guard classifies on the HTTP status, which is what a validation refusal has.)"""
    ids = stale_orders(sim)
    sim.inject(Fault("error", "DELETE", BATCH, status=400))
    guard = Guard(sim, tmp_path / "state", rules_text())
    report = guard.sweep()

    assert [r.status for r in sim.requests_to("DELETE", BATCH)] == [400]
    assert sorted(r.body["orderId"] for r in sim.requests_to("DELETE", SINGLE)) == sorted(ids)
    assert report.result == "ok"
    assert all(sim.order(i).status == "CL" for i in ids)
    assert sorted(sim.accepted_cancels()) == sorted(ids)
    with guard.journal() as j:
        kinds_sent = [k for (k,) in j.query("SELECT kind FROM requests ORDER BY id")]
    assert kinds_sent == ["error", "resending", "single", "single", "single"]


def test_fill_racing_the_cancel_is_not_an_error(sim: Simulator, tmp_path: Path) -> None:
    """Fills land after the snapshot, before the batch is applied: one order fills in full
    (the exchange refuses its cancel), one in part (the rest is cancelled)."""
    full, part, calm = stale_orders(sim)  # quantities 100, 200, 300
    sim.inject(Fault("latency", "DELETE", BATCH, seconds=0.3))

    def fill() -> None:
        sim.fill(full)
        sim.fill(part, 50)

    filler = run_when(lambda: bool(sim.requests_to("DELETE", BATCH)), fill)
    guard = Guard(sim, tmp_path / "state", rules_text())
    report = guard.sweep()
    filler.join()

    assert sim.order(full).status == "FF"
    assert (sim.order(part).status, sim.order(part).filled, sim.order(part).cancel_qty) == (
        "FFPC", 50, 150)
    assert sim.order(calm).status == "CL"
    assert sorted(sim.accepted_cancels()) == sorted([part, calm])
    got = outcomes(guard.journal_path)
    assert got[full][0][0] in ("filled_first", "already_done")
    assert got[part] == [("partially_cancelled", 150, "FFPC", "filled 50, cancelled 150")]
    assert got[calm][0][:2] == ("cancelled", 300)
    assert report.result == "ok" and report.complete
    assert len(sim.requests_to("DELETE", BATCH)) == 1 and sim.requests_to("DELETE", SINGLE) == []
    # Cash: only what was really cancelled of the buy LOs.
    [cash] = [c for c in report.cash if c.account == ACCT]
    assert cash.expected == 27_000 * (150 + 300)


def test_fill_while_pending_cancel_is_filled_first(sim: Simulator, tmp_path: Path) -> None:
    """The cancels are accepted (WC), then the orders fill in full before the exchange
    applies them: ``filled_first``, not an error, and nothing is sent again."""
    a, b = stale_orders(sim, 2)
    guard = Guard(sim, tmp_path / "state", rules_text())

    def fill() -> None:
        sim.fill(a)
        sim.fill(b)

    with sim.paused_cancels():
        filler = run_when(lambda: sim.order(a).status == sim.order(b).status == "WC", fill)
        report = guard.sweep()
        filler.join()

    assert sim.order(a).status == sim.order(b).status == "FF"
    assert report.result == "ok" and report.complete
    got = outcomes(guard.journal_path)
    assert got[a] == got[b] == [("filled_first", 0, "FF", "filled before the cancel took effect")]
    assert sorted(sim.accepted_cancels()) == sorted([a, b])
    assert len(sim.requests_to("DELETE", BATCH)) == 1 and sim.requests_to("DELETE", SINGLE) == []
    assert [c.expected for c in report.cash] == [0]


def test_atc_began_between_decision_and_send(sim: Simulator, tmp_path: Path) -> None:
    """The guard decides at 14:29:59 (allowed); the exchange's clock is 14:30:00 (ATC): the
    cancels are refused. Outcome ``failed``, the orders stay open, the sweep is incomplete."""
    batch = [sim.seed_order(ACCT, "SSI", age=STALE) for _ in range(2)]
    single = sim.seed_order(OTHER, "VNM", "B", 62_000, age=STALE)
    decide_at = FakeClock(at(sim, 14, 29, 59))
    sim.set_clock(at(sim, 14, 30, 0))
    guard = Guard(sim, tmp_path / "state", rules_text())
    report = guard.sweep(clock=decide_at)

    assert report.result == "incomplete" and not report.complete
    assert sim.accepted_cancels() == []
    assert all(sim.order(i).status == "QU" for i in [*batch, single])
    got = outcomes(guard.journal_path)
    assert set(got) == {*batch, single}
    for rows in got.values():
        [(kind, qty, status, detail)] = rows
        assert (kind, qty, status) == ("failed", 0, "QU")
        assert "ATC" in detail or "400203" in detail
    assert_one_outcome_per_intent(guard.journal_path)


def test_confirm_timeout_with_the_order_still_wc_is_unconfirmed(
    sim: Simulator, tmp_path: Path
) -> None:
    a, b = stale_orders(sim, 2)
    guard = Guard(sim, tmp_path / "state", rules_text(confirm_timeout="1s"))
    with sim.paused_cancels():
        report = guard.sweep()
        assert sim.order(a).status == sim.order(b).status == "WC"

    assert report.result == "incomplete" and not report.complete
    got = outcomes(guard.journal_path)
    assert got[a][0][0] == got[b][0][0] == "unconfirmed"
    assert sorted(sim.accepted_cancels()) == sorted([a, b])
    assert sim.order(a).status == "CL"  # released after the block: it did land, once
    again = guard.sweep()
    assert again.result == "nothing_to_do"
    assert sorted(sim.accepted_cancels()) == sorted([a, b])


def test_malformed_book_leaves_that_account_unread_and_undecided(
    sim: Simulator, tmp_path: Path
) -> None:
    mine = [sim.seed_order(ACCT, "SSI", age=STALE) for _ in range(2)]
    theirs = [sim.seed_order(OTHER, "VNM", "B", 62_000, age=STALE) for _ in range(2)]
    sim.inject(Fault("malformed", "GET", BOOK))
    guard = Guard(sim, tmp_path / "state", rules_text())
    report = guard.sweep()

    [(unread, why)] = report.unread_accounts
    read = OTHER if unread == ACCT else ACCT
    unread_ids, read_ids = (mine, theirs) if unread == ACCT else (theirs, mine)
    assert why  # the reason is kept
    assert not report.complete and report.result == "incomplete"
    assert {d.order.account for d in report.decisions} == {read}
    assert all(sim.order(i).status == "QU" for i in unread_ids)
    assert all(sim.order(i).status == "CL" for i in read_ids)
    assert sorted(sim.accepted_cancels()) == sorted(read_ids)
    with guard.journal() as j:
        accounts = {a for (a,) in j.query("SELECT DISTINCT account FROM decisions")}
        [(result, summary)] = j.query("SELECT result, summary FROM sweep_results")
    assert accounts == {read}
    assert result == "incomplete" and unread in summary


def test_account_the_key_does_not_own_is_unread_not_a_dead_session(
    sim: Simulator, tmp_path: Path
) -> None:
    """A 403 on one account's book is that account's problem: the others are still swept and
    the session is not declared dead."""
    a = sim.seed_order(ACCT, "SSI", age=STALE)
    text = rules_text().replace(f'accounts: ["{ACCT}", "{OTHER}"]',
                                f'accounts: ["{ACCT}", "0009999"]')
    report = Guard(sim, tmp_path / "state", text).sweep()

    assert [acct for acct, _ in report.unread_accounts] == ["0009999"]
    assert report.result == "incomplete"
    assert sim.accepted_cancels() == [a]


def test_batch_applied_after_the_client_gave_up_is_still_cancelled_once(
    sim: Simulator, tmp_path: Path
) -> None:
    """A slow server: the batch lands after the client's timeout and after the re-read that
    found the orders still open. The resend is accepted; the late original is refused by the
    exchange (already WC), so no order has two accepted cancels."""
    ids = stale_orders(sim)
    sim.inject(Fault("latency", "DELETE", BATCH, seconds=1.0))
    guard = Guard(sim, tmp_path / "state", rules_text(), timeout_ms=300)
    report = guard.sweep()

    assert len(sim.requests_to("DELETE", BATCH)) == 2
    assert report.result == "ok"
    assert all(sim.order(i).status == "CL" for i in ids)
    assert sorted(sim.accepted_cancels()) == sorted(ids)
    assert_one_outcome_per_intent(guard.journal_path)
    answered(sim)


def test_dropped_connection_on_batch_is_reread_and_resent(sim: Simulator, tmp_path: Path) -> None:
    ids = stale_orders(sim)
    sim.inject(Fault("drop", "DELETE", BATCH))
    guard = Guard(sim, tmp_path / "state", rules_text())
    report = guard.sweep()

    assert [r.status for r in sim.requests_to("DELETE", BATCH)] == [-1, 200]
    assert report.result == "ok"
    assert sorted(sim.accepted_cancels()) == sorted(ids)


def test_expired_token_on_the_cancel_is_refreshed_and_the_cancel_resent(
    sim: Simulator, tmp_path: Path
) -> None:
    """The gateway refuses the batch with 401 before any handler runs: after a refresh it is
    safe (and necessary) to send it again."""
    ids = stale_orders(sim)
    sim.inject(Fault("latency", "DELETE", BATCH, seconds=0.2))
    expirer = run_when(lambda: bool(sim.requests_to("DELETE", BATCH)), sim.expire_tokens)
    guard = Guard(sim, tmp_path / "state", rules_text())
    report = guard.sweep()
    expirer.join()

    assert [r.status for r in sim.requests_to("DELETE", BATCH)] == [401, 200]
    assert len(sim.requests_to("POST", "/api/v3/auth/refresh")) == 1
    assert report.result == "ok"
    assert sorted(sim.accepted_cancels()) == sorted(ids)


def test_session_revoked_mid_cancel_stops_then_reconciles_after_login(
    sim: Simulator, tmp_path: Path
) -> None:
    """Another login kills the session while the batch is on the wire: the sweep stops with
    ReauthRequired, its intents open. After ``ssi-guard login`` the next sweep reconciles
    them (the cancel never landed) and cancels each order once."""
    ids = stale_orders(sim)
    sim.inject(Fault("latency", "DELETE", BATCH, seconds=0.2))
    revoker = run_when(lambda: bool(sim.requests_to("DELETE", BATCH)), sim.revoke_session)
    guard = Guard(sim, tmp_path / "state", rules_text())
    with pytest.raises(ReauthRequired):
        guard.sweep()
    revoker.join()
    assert sim.accepted_cancels() == []
    with guard.journal() as j:
        assert len(j.open_intents()) == 3

    async def login() -> None:  # what `ssi-guard login` does
        creds = load_credentials(sim.env())
        async with Broker(creds, TokenCache(guard.state_dir)) as broker:
            await broker.login(otp=sim.credentials.otp)

    asyncio.run(login())
    report = guard.sweep()

    assert report.result == "ok"
    assert sorted(sim.accepted_cancels()) == sorted(ids)
    got = outcomes(guard.journal_path)
    assert all([r[0] for r in rows] == ["failed", "cancelled"] for rows in got.values())
    assert_one_outcome_per_intent(guard.journal_path)


def test_429_that_never_clears_gives_up_and_reports_failed(sim: Simulator, tmp_path: Path) -> None:
    """Cancels that could not be sent are never silently lost: outcome ``failed``, the sweep
    incomplete."""
    a, b = stale_orders(sim, 2)
    sim.inject(Fault("error", "DELETE", BATCH, status=429, retry_after=0.05, times=None))
    guard = Guard(sim, tmp_path / "state", rules_text())
    report = guard.sweep()

    assert len(sim.requests_to("DELETE", BATCH)) == 5  # max_attempts
    assert report.result == "incomplete"
    assert sim.accepted_cancels() == [] and sim.order(a).status == sim.order(b).status == "QU"
    got = outcomes(guard.journal_path)
    for rows in (got[a], got[b]):
        [(kind, _, status, detail)] = rows
        assert (kind, status) == ("failed", "QU") and "429" in detail
