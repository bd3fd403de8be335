"""Sweeps that die half-way: an intent without an outcome is reconciled from the book.

Whatever the moment of the crash, on the next start: no order gets a second accepted cancel,
every intent has exactly one outcome, and the journal passes ``PRAGMA integrity_check``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kit import ACCT, BATCH, STALE
from kit.sweep import (
    Guard,
    answered,
    assert_no_double_cancel,
    assert_one_outcome_per_intent,
    outcomes,
    rules_text,
)

from guard.broker.client import Broker
from guard.broker.tokens import TokenCache
from guard.clock import EXCHANGE_TZ
from guard.errors import ReauthRequired
from guard.service.lock import StateLock
from guard.service.runtime import open_guard
from guard.settings import load_credentials, resolve_state_dir
from guard.simulator.control import Simulator
from guard.simulator.faults import Fault
from guard.sweep import run_sweep

# The wall clock of the crashed run: the next calendar day, as after a crash just before
# midnight or in any rehearsal (--at). The book to read is the sweep's market day regardless.
WALL = datetime(2026, 11, 24, 0, 5, tzinfo=EXCHANGE_TZ)


def write_intents(guard: Guard, sim: Simulator, ids: list[str]) -> list[int]:
    """What a run that died right after committing its intents leaves in the journal."""
    guard.state_dir.mkdir(mode=0o700, exist_ok=True)
    with guard.journal() as j:
        sweep = j.start_sweep(WALL, "crashed", sim.clock(), False)
        rows = []
        for order_id in ids:
            o = sim.order(order_id)
            rows.append((o.account, order_id, "stale", str(o.price), o.side, o.order_type,
                         o.remaining, o.cancel_qty))
        return j.intents(sweep, WALL, "deadbeef", rows)


def test_intent_never_sent_is_failed_then_cancelled_once(sim: Simulator, tmp_path: Path) -> None:
    a = sim.seed_order(ACCT, "SSI", age=STALE)
    b = sim.seed_order(ACCT, "VNM", "B", 62_000, 300, age=STALE)
    guard = Guard(sim, tmp_path / "state", rules_text())
    old = write_intents(guard, sim, [a, b])

    report = guard.sweep()

    assert report.result == "ok"
    assert sim.order(a).status == sim.order(b).status == "CL"
    assert sorted(sim.accepted_cancels()) == sorted([a, b])  # the new sweep's, once each
    with guard.journal() as j:
        rows = j.query("SELECT intent_id, outcome, detail FROM outcomes ORDER BY id")
    by_intent = {i: (kind, detail) for i, kind, detail in rows}
    for intent in old:
        kind, detail = by_intent[intent]
        assert kind == "failed" and detail.startswith("reconciled: the cancel never landed")
    assert [k for i, (k, _) in by_intent.items() if i not in old] == ["cancelled", "cancelled"]
    assert_one_outcome_per_intent(guard.journal_path)


def test_intent_whose_cancel_landed_is_proven_and_not_resent(
    sim: Simulator, tmp_path: Path
) -> None:
    landed = sim.seed_order(ACCT, "SSI", "B", 27_000, 400, age=STALE)
    settled = sim.seed_order(ACCT, "SSI", "B", 27_000, 100, age=STALE)
    filled = sim.seed_order(ACCT, "FPT", "B", 95_500, 100, age=STALE)
    guard = Guard(sim, tmp_path / "state", rules_text())
    write_intents(guard, sim, [landed, settled, filled])
    # The crashed run's batch did reach the exchange for two of them; the third then filled.
    sim.exchange.request_cancel(ACCT, settled)  # settles at once
    sim.exchange.cancel_delay = 0.6
    sim.exchange.request_cancel(ACCT, landed)  # still WC when the guard starts again
    sim.exchange.cancel_delay = 0.05
    sim.fill(filled)
    report = guard.sweep()

    assert report.result == "nothing_to_do"
    got = outcomes(guard.journal_path)
    assert got[landed][0][:3] == ("cancelled", 400, "CL")
    assert got[settled][0][:3] == ("cancelled", 100, "CL")
    assert got[filled][0][0] in ("filled_first", "already_done")
    assert all(rows[0][3].startswith("reconciled: ") for rows in got.values())
    assert sorted(sim.accepted_cancels()) == sorted([landed, settled])
    assert [r for r in sim.requests if r.method == "DELETE"] == []
    assert_one_outcome_per_intent(guard.journal_path)


def test_check_never_reconciles_a_live_guards_intents(sim: Simulator, tmp_path: Path) -> None:
    """``check`` runs without the state lock, beside a live guard whose intents may be on the
    wire: it must neither write their outcomes nor send anything."""
    a = sim.seed_order(ACCT, "SSI", age=STALE)
    guard = Guard(sim, tmp_path / "state", rules_text())
    [intent] = write_intents(guard, sim, [a])
    rules = tmp_path / "rules.yaml"
    rules.write_text(guard.rules)

    async def check() -> None:
        # The live guard's login: check only ever borrows the cached token.
        env = guard.env()
        async with Broker(load_credentials(env), TokenCache(resolve_state_dir(env))) as broker:
            await broker.login(otp=sim.credentials.otp)
        async with open_guard(rules, force_dry_run=True, clock=sim.clock, env=env,
                              lock=False) as ctx:
            report = await run_sweep(ctx, "check")
            assert report.result == "dry_run"

    asyncio.run(check())
    with guard.journal() as j:
        assert j.query("SELECT COUNT(*) FROM outcomes") == [(0,)]
        assert [i.intent_id for i in j.open_intents()] == [intent]
    assert [r for r in sim.requests if r.method == "DELETE"] == []


def _intent_count(path: Path) -> int:
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.2)
        try:
            return int(db.execute("SELECT COUNT(*) FROM intents").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def test_sigkill_after_intents_are_committed_then_restart(sim: Simulator, tmp_path: Path) -> None:
    ids = [sim.seed_order(ACCT, "SSI", "B", 27_000, 100 * (i + 1), age=STALE) for i in range(3)]
    # The batch is slow to answer, so the process is surely alive when its intents appear.
    sim.inject(Fault("latency", "DELETE", BATCH, seconds=1.0))
    guard = Guard(sim, tmp_path / "state", rules_text())
    rules = tmp_path / "rules.yaml"
    rules.write_text(guard.rules)
    cmd = [sys.executable, "-m", "guard", "run", "--once", "--rules", str(rules),
           "--at", "2026-11-23T10:00:00", "--log-format", "json"]
    env = {**os.environ, **guard.env()}

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while _intent_count(guard.journal_path) < 3:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "no intents were committed"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=10)
        if proc.stderr:
            proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL

    with guard.journal() as j:
        assert len(j.open_intents()) == 3  # died before any outcome
        assert j.integrity_ok()

    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=False)
    if again.returncode == 6:
        # The killed run's batch may still have been on the wire: its intents wait out the
        # broker timeout (10 s + 5 s margin) before being called "never landed".
        assert '"deferred": 3' in again.stdout or "deferred" in again.stdout, again.stdout[-2000:]
        time.sleep(16)
        again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60,
                               check=False)
    assert again.returncode == 0, again.stderr

    assert all(sim.order(i).status == "CL" for i in ids)
    assert_no_double_cancel(sim)
    assert sorted(sim.accepted_cancels()) == sorted(ids)
    assert_one_outcome_per_intent(guard.journal_path)
    with guard.journal() as j:
        first_run = j.query(
            "SELECT o.outcome, o.detail FROM outcomes o JOIN intents i ON i.id = o.intent_id "
            "WHERE i.sweep_id = 1")
        assert j.open_intents() == []
    assert len(first_run) == 3
    # Either the batch landed after the kill (proven from the book) or it never did (failed,
    # and the second run cancelled the order itself, once).
    assert all(kind in ("cancelled", "failed") and detail.startswith("reconciled: ")
               for kind, detail in first_run)
    answered(sim)


def test_check_never_refreshes_or_logs_in(sim: Simulator, tmp_path: Path) -> None:
    """A refresh rotates the refresh token and a login ends the other session: either, from
    ``check`` beside a running daemon, would cost the daemon its session. With no usable
    cached token, ``check`` says so and sends no auth request."""
    guard = Guard(sim, tmp_path / "state", rules_text())
    rules = tmp_path / "rules.yaml"
    rules.write_text(guard.rules)
    running_guard = StateLock(resolve_state_dir(guard.env()))
    running_guard.acquire()  # a daemon holds the state directory

    async def check() -> None:
        async with open_guard(rules, force_dry_run=True, clock=sim.clock, env=guard.env(),
                              lock=False) as ctx:
            await run_sweep(ctx, "check")

    try:
        with pytest.raises(ReauthRequired, match="never refreshes or logs in"):
            asyncio.run(check())
    finally:
        running_guard.release()
    assert [r.path for r in sim.requests if r.path.startswith("/api/v3/auth")] == []


def test_a_dead_runs_cancel_still_on_the_wire_is_not_called_never_landed(
        sim: Simulator, tmp_path: Path) -> None:
    """A process killed with a cancel in flight: that request may still be applied for as long
    as the broker timeout. Until then the intent stays open and the order is left alone (not
    "failed", not cancelled again); afterwards an order still open is "never landed" and is
    decided afresh."""
    a = sim.seed_order(ACCT, "SSI", age=STALE)
    guard = Guard(sim, tmp_path / "state", rules_text())
    guard.state_dir.mkdir(mode=0o700, exist_ok=True)
    just_now = datetime.now(EXCHANGE_TZ)
    with guard.journal() as j:
        sweep = j.start_sweep(just_now, "crashed", sim.clock(), False)
        o = sim.order(a)
        [intent] = j.intents(sweep, just_now, "inflight", [
            (o.account, a, "stale", str(o.price), o.side, o.order_type, o.remaining,
             o.cancel_qty)])

    async def sweep_at(wall_offset: timedelta) -> Any:
        async with guard.context() as ctx:
            ctx.wall = lambda: datetime.now(EXCHANGE_TZ) + wall_offset
            return await run_sweep(ctx, "restart")

    first = asyncio.run(sweep_at(timedelta(0)))
    assert first.result == "incomplete" and not first.complete
    assert sim.order(a).status == "QU"
    assert sim.accepted_cancels() == []  # not sent again while the old request may land
    with guard.journal() as j:
        assert [i.intent_id for i in j.open_intents()] == [intent]

    later = asyncio.run(sweep_at(timedelta(seconds=20)))  # past the broker timeout + margin
    assert later.result == "ok"
    assert sim.order(a).status == "CL"
    assert sim.accepted_cancels() == [a]
    with guard.journal() as j:
        kinds = dict(j.query("SELECT intent_id, outcome FROM outcomes"))
        assert kinds[intent] == "failed"
        assert j.open_intents() == []
