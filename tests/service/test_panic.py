"""The panic button's pipeline (``guard.service.panic``), in process through the real SDK and
the simulator: what it selects, what it holds, and what it overrides."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from kit import ACCT, FRESH, OTHER, STALE
from kit.sweep import Guard, at, intents, rules_text

from guard.clock import FakeClock
from guard.config.loader import load_rules_text
from guard.errors import ConfigError
from guard.service.panic import CancelAll, PanicResult, operator_rules, press
from guard.simulator.control import Simulator


def guard(sim: Simulator, tmp_path: Path, **kw: object) -> Guard:
    return Guard(sim, tmp_path / "state", rules_text(**kw))  # type: ignore[arg-type]


def pressed(g: Guard, request: CancelAll, *, preview: bool = False,
            clock: FakeClock | None = None) -> PanicResult:
    async def go() -> PanicResult:
        async with g.context(clock=clock) as ctx:
            return await press(ctx, request, preview=preview)
    return asyncio.run(go())


def by_order(result: PanicResult) -> dict[str, tuple[str, ...]]:
    return {r[1]: r for r in result.rows}


def test_cancels_every_open_order_whatever_its_age_and_ignores_dry_run(
        sim: Simulator, tmp_path: Path) -> None:
    """rules.yaml is dry and would only take stale orders; the operator takes them all."""
    young = sim.seed_order(ACCT, "SSI", age=FRESH)
    old = sim.seed_order(OTHER, "VNM", age=STALE)
    g = guard(sim, tmp_path, dry_run=True)

    result = pressed(g, CancelAll())

    assert sim.order(young).status == sim.order(old).status == "CL"
    rows = by_order(result)
    assert rows[young][6:] == ("cancel", "operator cancel-all", "cancelled")
    assert rows[old][8] == "cancelled"
    assert result.complete and result.result == "ok"


def test_only_orders_passing_every_filter_are_touched(sim: Simulator, tmp_path: Path) -> None:
    ours = sim.seed_order(ACCT, "SSI", age=FRESH, client_request_id="sa-1")
    other_crid = sim.seed_order(ACCT, "SSI", age=FRESH, client_request_id="sb-1")
    other_symbol = sim.seed_order(ACCT, "VNM", age=FRESH, client_request_id="sa-2")
    other_account = sim.seed_order(OTHER, "SSI", age=FRESH, client_request_id="sa-3")
    g = guard(sim, tmp_path)

    result = pressed(g, CancelAll(accounts=(ACCT,), symbols=("S*",),
                                  client_request_ids=("sa-*",)))

    assert sim.order(ours).status == "CL"
    for untouched in (other_crid, other_symbol, other_account):
        assert sim.order(untouched).status == "QU"
    assert set(by_order(result)) == {ours}
    assert sorted(sim.accepted_cancels()) == [ours]


def test_protected_orders_are_listed_and_left_alone(sim: Simulator, tmp_path: Path) -> None:
    keep = sim.seed_order(ACCT, "SSI", age=STALE, client_request_id="keep-1")
    take = sim.seed_order(ACCT, "SSI", age=STALE, client_request_id="x-1")
    result = pressed(guard(sim, tmp_path), CancelAll())
    rows = by_order(result)
    assert rows[keep][6] == "protected" and sim.order(keep).status == "QU"
    assert rows[take][8] == "cancelled"
    assert result.complete  # a protected order is not one the operator asked to cancel


def test_the_breaker_and_the_pause_file_do_not_stop_the_operator(
        sim: Simulator, tmp_path: Path) -> None:
    ids = [sim.seed_order(ACCT, "SSI", age=FRESH) for _ in range(5)]
    g = guard(sim, tmp_path, max_cancels=2)
    g.state_dir.mkdir(mode=0o700)
    (g.state_dir / "paused").touch()

    result = pressed(g, CancelAll())

    assert all(sim.order(i).status == "CL" for i in ids)
    assert result.paused_overridden and result.complete
    # and the pause file still stops the automatic guard's own sweep
    sim.seed_order(ACCT, "SSI", age=STALE)
    assert g.sweep().plan.blocked == "paused by the pause file"


def test_in_a_banned_window_orders_are_held_with_why_and_nothing_is_sent(
        sim: Simulator, tmp_path: Path) -> None:
    o = sim.seed_order(ACCT, "SSI", age=STALE)
    in_atc = FakeClock(at(sim, 14, 35))
    sim.set_clock(at(sim, 14, 35))

    result = pressed(guard(sim, tmp_path), CancelAll(), clock=in_atc)

    row = by_order(result)[o]
    assert row[6] == "held" and "ATC" in row[7]
    assert sim.order(o).status == "QU" and not sim.requests_to("DELETE", "/api/v3/trading/order")
    assert not result.complete  # exit 6: the order did not reach a final outcome


def test_a_preview_sends_nothing_and_says_what_it_would_do(
        sim: Simulator, tmp_path: Path) -> None:
    o = sim.seed_order(ACCT, "SSI", age=FRESH)
    g = guard(sim, tmp_path)
    result = pressed(g, CancelAll(), preview=True)
    assert by_order(result)[o][6] == "would cancel"
    assert sim.order(o).status == "QU" and sim.accepted_cancels() == []
    assert intents(g.journal_path) == []


def test_the_journal_records_the_operator_sweep_and_its_intents(
        sim: Simulator, tmp_path: Path) -> None:
    o = sim.seed_order(ACCT, "SSI", age=FRESH)
    g = guard(sim, tmp_path)
    pressed(g, CancelAll())
    with g.journal() as j:
        triggers = [r[0] for r in j.query("SELECT trigger FROM sweeps")]
    assert triggers == ["cancel-all"]
    assert [i for i in intents(g.journal_path) if o in i]


@pytest.mark.parametrize(("request_", "message"), [
    (CancelAll(accounts=("0009999",)),
     "cancel-all: --account '0009999': is not an account rules.yaml guards"),
    (CancelAll(symbols=("ssi lower",)), "cancel-all: --symbol 'ssi lower': "),
    (CancelAll(client_request_ids=("a b",)), "cancel-all: --client-request-id 'a b': "),
])
def test_a_bad_filter_is_one_line_naming_its_flag(request_: CancelAll, message: str) -> None:
    rules = load_rules_text(rules_text(), "rules.yaml")
    with pytest.raises(ConfigError) as caught:
        operator_rules(rules, request_)
    assert len(caught.value.messages) == 1
    assert caught.value.messages[0].startswith(message)


def test_operator_rules_keep_everything_but_the_rules(tmp_path: Path) -> None:
    rules = load_rules_text(rules_text(dry_run=True, max_cancels=3, protect=("mm-",)),
                            "rules.yaml")
    op = operator_rules(rules, CancelAll(symbols=("VN30F*",)))
    assert not op.dry_run and op.limits.max_cancels_per_sweep == 100_000
    assert op.protect == rules.protect and op.accounts == rules.accounts
    assert op.cancellable == rules.cancellable
    assert op.limits.confirm_timeout == rules.limits.confirm_timeout
    [rule] = op.rules
    assert rule.heartbeat is not None and rule.match.symbols == ("VN30F*",)
    assert timedelta(0) < rule.heartbeat.stale_after
