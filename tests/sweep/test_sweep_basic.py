"""Sweeps: the happy path and the safety rails, proven at the simulator's side.

Every sweep is the real pipeline through the real ``ssi_sdk`` over HTTP to the simulator; every
assertion is on what the exchange holds (status, cancelQty, accepted cancels) and what the
journal says.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from kit import ACCT, BATCH, FRESH, OTHER, SINGLE, STALE
from kit.sweep import (
    Guard,
    assert_no_double_cancel,
    assert_one_outcome_per_intent,
    outcomes,
    rules_text,
)

from guard.simulator.control import Simulator


def deleted_ids(sim: Simulator) -> list[str]:
    """Every order id in every cancel request the simulator received (batch or single)."""
    ids = [item["orderId"] for r in sim.requests_to("DELETE", BATCH) for item in r.body["orders"]]
    ids += [r.body["orderId"] for r in sim.requests_to("DELETE", SINGLE)]
    return ids


def test_stale_cancelled_fresh_untouched_partial_and_cash(sim: Simulator, tmp_path: Path) -> None:
    stale = sim.seed_order(ACCT, "SSI", "B", 27_000, 1_000, age=STALE)
    partial = sim.seed_order(ACCT, "FPT", "B", 95_000, 300, age=STALE)
    sim.fill(partial, 100)
    fresh = sim.seed_order(ACCT, "SSI", "B", 27_000, 100, age=FRESH)
    sell = sim.seed_order(OTHER, "VNM", "S", 62_000, 100, age=timedelta(minutes=30))
    other_buy = sim.seed_order(OTHER, "HPG", "B", 26_400, 500, age=STALE)
    done = sim.seed_order(ACCT, "SSI", "B", 27_000, 100, age=STALE)
    sim.fill(done)  # FF before the sweep: final, never decided

    guard = Guard(sim, tmp_path / "state", rules_text())
    report = guard.sweep()

    assert report.result == "ok" and report.complete
    assert sim.order(stale).status == "CL" and sim.order(stale).cancel_qty == 1_000
    assert sim.order(partial).status == "FFPC"
    assert (sim.order(partial).filled, sim.order(partial).cancel_qty) == (100, 200)
    assert sim.order(sell).status == "CL" and sim.order(other_buy).status == "CL"
    assert sim.order(fresh).status == "QU" and sim.order(fresh).cancel_qty == 0
    assert sim.order(done).status == "FF"
    assert sorted(sim.accepted_cancels()) == sorted([stale, partial, sell, other_buy])
    assert fresh not in deleted_ids(sim) and done not in deleted_ids(sim)
    assert_no_double_cancel(sim)

    journal = outcomes(guard.journal_path)
    assert journal == {
        stale: [("cancelled", 1_000, "CL", "cancelled 1000")],
        partial: [("partially_cancelled", 200, "FFPC", "filled 100, cancelled 200")],
        sell: [("cancelled", 100, "CL", "cancelled 100")],
        other_buy: [("cancelled", 500, "CL", "cancelled 500")],
    }
    assert_one_outcome_per_intent(guard.journal_path)

    # Cash: the buy LOs released exactly price x cancelled quantity; a sell releases none.
    cash = {c.account: c for c in report.cash}
    expected = Decimal(27_000 * 1_000 + 95_000 * 200)
    assert cash[ACCT].expected == expected
    assert cash[ACCT].withdrawable_delta == expected
    assert cash[ACCT].purchasing_power_delta == expected and not cash[ACCT].mismatch
    assert cash[OTHER].expected == cash[OTHER].withdrawable_delta == Decimal(26_400 * 500)

    with guard.journal() as j:
        [(result, summary)] = j.query("SELECT result, summary FROM sweep_results")
        decided = dict(j.query("SELECT order_id, action FROM decisions"))
    assert result == "ok" and '"cancelled": 3' in summary and '"partially_cancelled": 1' in summary
    assert decided == {stale: "cancel", partial: "cancel", sell: "cancel", other_buy: "cancel",
                       fresh: "none"}


def test_more_than_twenty_orders_go_in_batches_of_twenty(sim: Simulator, tmp_path: Path) -> None:
    ids = [sim.seed_order(ACCT, "SHS", "B", 14_200, 100, age=STALE) for _ in range(23)]
    report = Guard(sim, tmp_path / "state", rules_text()).sweep()

    assert report.result == "ok"
    sizes = sorted(len(r.body["orders"]) for r in sim.requests_to("DELETE", BATCH))
    assert sizes == [3, 20]
    assert all(sim.order(i).status == "CL" for i in ids)
    assert sorted(sim.accepted_cancels()) == sorted(ids)


def test_dry_run_sends_no_delete_but_decides_and_journals(sim: Simulator, tmp_path: Path) -> None:
    a = sim.seed_order(ACCT, "SSI", age=STALE)
    b = sim.seed_order(ACCT, "VNM", "B", 62_000, age=STALE)
    guard = Guard(sim, tmp_path / "state", rules_text(dry_run=True))
    report = guard.sweep()

    assert report.result == "dry_run" and report.complete
    assert {t.order.order_id for t in report.plan.targets} == {a, b}
    assert [r for r in sim.requests if r.method == "DELETE"] == []
    assert sim.order(a).status == sim.order(b).status == "QU"
    with guard.journal() as j:
        assert j.query("SELECT COUNT(*) FROM intents") == [(0,)]
        assert sorted(j.query("SELECT order_id, action FROM decisions")) == [
            (a, "blocked: dry run"), (b, "blocked: dry run")]


def test_circuit_breaker_sends_nothing_and_blocks(sim: Simulator, tmp_path: Path) -> None:
    ids = [sim.seed_order(ACCT, "SSI", age=STALE) for _ in range(4)]
    guard = Guard(sim, tmp_path / "state", rules_text(max_cancels=3))
    report = guard.sweep()

    assert report.result == "blocked" and report.plan.tripped and not report.complete
    assert [r for r in sim.requests if r.method == "DELETE"] == []
    assert all(sim.order(i).status == "QU" for i in ids)
    with guard.journal() as j:
        assert j.query("SELECT result FROM sweep_results") == [("blocked",)]
        assert j.query("SELECT COUNT(*) FROM intents") == [(0,)]

    # At the limit exactly, the breaker does not trip.
    report = Guard(sim, tmp_path / "state", rules_text(max_cancels=4)).sweep()
    assert report.result == "ok"
    assert sorted(sim.accepted_cancels()) == sorted(ids)


def test_pause_file_stops_cancels_while_deciding_and_logging_go_on(
    sim: Simulator, tmp_path: Path
) -> None:
    a = sim.seed_order(ACCT, "SSI", age=STALE)
    guard = Guard(sim, tmp_path / "state", rules_text())
    guard.state_dir.mkdir(mode=0o700)
    (guard.state_dir / "paused").touch()
    report = guard.sweep()

    assert report.result == "blocked" and report.plan.blocked == "paused by the pause file"
    assert [t.order.order_id for t in report.plan.targets] == [a]
    assert [r for r in sim.requests if r.method == "DELETE"] == []
    assert sim.order(a).status == "QU"
    with guard.journal() as j:
        assert j.query("SELECT order_id, action FROM decisions") == [
            (a, "blocked: paused by the pause file")]

    (guard.state_dir / "paused").unlink()
    assert guard.sweep().result == "ok"
    assert sim.order(a).status == "CL" and sim.accepted_cancels() == [a]


def test_protected_prefix_is_never_touched(sim: Simulator, tmp_path: Path) -> None:
    kept = sim.seed_order(ACCT, "SSI", age=timedelta(hours=2), client_request_id="keep-hedge-1")
    kept2 = sim.seed_order(ACCT, "SSI", age=STALE, client_request_id="manual-7")
    normal = sim.seed_order(ACCT, "SSI", age=STALE, client_request_id="algo-1")
    report = Guard(sim, tmp_path / "state",
                   rules_text(protect=("keep-", "manual-"))).sweep()

    assert report.result == "ok"
    held = {d.order.order_id: d.held for d in report.decisions}
    assert held[kept] == "protected prefix keep-" and held[kept2] == "protected prefix manual-"
    assert sim.order(kept).status == sim.order(kept2).status == "QU"
    assert sim.accepted_cancels() == [normal]
    assert kept not in deleted_ids(sim) and kept2 not in deleted_ids(sim)


def test_order_already_pending_cancel_is_never_sent_again(sim: Simulator, tmp_path: Path) -> None:
    wc = sim.seed_order(ACCT, "SSI", age=STALE)
    other = sim.seed_order(ACCT, "VNM", "B", 62_000, age=STALE)
    sim.set_status(wc, "WC")  # a cancel from elsewhere (the app, a person), still pending
    report = Guard(sim, tmp_path / "state", rules_text()).sweep()

    held = {d.order.order_id: d.held for d in report.decisions}
    assert held[wc] == "status WC already cancelling"
    assert report.result == "ok" and [t.order.order_id for t in report.plan.targets] == [other]
    assert wc not in deleted_ids(sim) and sim.order(wc).status == "WC"
    assert sim.accepted_cancels() == [other]


def test_unknown_status_is_held_and_the_rest_of_the_book_is_swept(
    sim: Simulator, tmp_path: Path
) -> None:
    odd = sim.seed_order(ACCT, "SSI", age=STALE)
    normal = sim.seed_order(ACCT, "VNM", "B", 62_000, age=STALE)
    sim.set_unknown_status(odd, "ZZ")
    report = Guard(sim, tmp_path / "state", rules_text()).sweep()

    held = {d.order.order_id: d.held for d in report.decisions}
    assert held[odd] == "status ZZ not cancellable"
    assert report.result == "ok" and sim.accepted_cancels() == [normal]
    assert odd not in deleted_ids(sim)


def test_a_second_sweep_finds_nothing_to_do(sim: Simulator, tmp_path: Path) -> None:
    a = sim.seed_order(ACCT, "SSI", age=STALE)
    b = sim.seed_order(ACCT, "SSI", age=STALE)
    guard = Guard(sim, tmp_path / "state", rules_text())
    assert guard.sweep().result == "ok"
    second = guard.sweep()
    assert second.result == "nothing_to_do" and second.complete
    assert sorted(sim.accepted_cancels()) == sorted([a, b])
    assert len(sim.requests_to("DELETE", BATCH)) == 1
