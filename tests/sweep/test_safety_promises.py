"""The sweep under an adversary: a disk that fills mid-batch, an account that cannot be read,
a cancel whose answer is lost while the book cannot be read. Each test reproduces a finding
of the hardening review through the real SDK and the simulator, and failed before its fix.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from kit import ACCT, BATCH, BOOK, OTHER, SINGLE, STALE, wait_until
from kit.disk import fill, small_disk
from kit.log import OnEvent, Recorder
from kit.sweep import (
    Guard,
    answered,
    assert_no_double_cancel,
    assert_one_outcome_per_intent,
    outcomes,
    rules_text,
)

from guard.errors import JournalError
from guard.service.daemon import Daemon
from guard.service.notify import Notifier
from guard.simulator.control import Simulator
from guard.simulator.faults import Fault


def kinds(guard: Guard) -> dict[str, list[str]]:
    return {k: [row[0] for row in v] for k, v in outcomes(guard.journal_path).items()}


def deletes(sim: Simulator) -> int:
    return len(sim.requests_to("DELETE", BATCH)) + len(sim.requests_to("DELETE", SINGLE))


# ---- record before you act; speak when you cannot record ------------------------------------


def test_disk_full_after_the_delete_left(sim: Simulator, tmp_path: Path) -> None:
    """The state directory fills while the batch is on the wire. The cancels land; the log
    says so (``cancel.sent`` before the journal failure, then every confirmation); the sweep
    ends with a JournalError; the next start reconciles the intents, sending nothing."""
    ids = [sim.seed_order(ACCT, "SSI", "B", 27_000, 100 * (i + 1), age=STALE) for i in range(3)]
    with small_disk(tmp_path / "state") as state:
        guard = Guard(sim, state, rules_text())
        fillers: list[Path] = []
        sim.on_request("DELETE", BATCH, lambda: fillers.append(fill(state)))
        log = Recorder()
        with pytest.raises(JournalError, match=r"cannot write the journal .*full"):
            guard.sweep(log=log)

        events = [name for _, name, _ in log.records]
        assert events.count("cancel.sent") == 3
        assert events.index("cancel.sent") < events.index("journal.write_failed")
        assert events.count("cancel.confirmed") == 3  # confirmation went on, in the log
        [finished] = log.named("sweep.finished")
        assert finished["result"] == "failed" and "full" in finished["journal_error"]
        assert all(sim.order(i).status == "CL" for i in ids)
        assert deletes(sim) == 1

        fillers[0].unlink()  # the operator frees the disk; the guard starts again
        again = guard.sweep(log=Recorder())
        assert deletes(sim) == 1  # reconciled from the book: nothing sent again
        assert again.result == "nothing_to_do"
        assert kinds(guard) == {i: ["cancelled"] for i in ids}
        assert_one_outcome_per_intent(guard.journal_path)
        assert_no_double_cancel(sim)


def test_disk_full_before_the_intents_sends_nothing(sim: Simulator, tmp_path: Path) -> None:
    """No DELETE leaves unless its intent is committed."""
    sim.seed_order(ACCT, "SSI", age=STALE)
    with small_disk(tmp_path / "state") as state:
        guard = Guard(sim, state, rules_text())
        guard.sweep(log=Recorder())  # the journal exists, the token is cached
        sim.seed_order(ACCT, "VNM", "B", 62_000, 100, age=STALE)
        fillers: list[Path] = []
        log = OnEvent("order.matched", lambda: fillers.append(fill(state)))
        before = deletes(sim)
        with pytest.raises(JournalError):
            guard.sweep(log=log)
        assert deletes(sim) == before
        assert log.named("cancel.sent") == []
        assert log.named("journal.write_failed")
        fillers[0].unlink()


def test_run_once_on_a_full_disk_is_one_line_and_exit_5(sim: Simulator, tmp_path: Path) -> None:
    for _ in range(3):
        sim.seed_order(ACCT, "SSI", age=STALE)
    rules = tmp_path / "rules.yaml"
    rules.write_text(rules_text())
    with small_disk(tmp_path / "state") as state:
        env = {**os.environ, **sim.env(), "SSI_GUARD_STATE_DIR": str(state)}
        argv = [sys.executable, "-m", "guard", "run", "--once", "--rules",
                str(rules), "--at", "2026-11-23T10:00:00"]
        sim.on_request("DELETE", BATCH, lambda: fill(state))
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60,
                              check=False)
    assert done.returncode == 5, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("ssi-guard: cannot write the journal ") and line.endswith("full")
    assert done.stdout.count('"cancel.sent"') == 3  # the log is the record of what went out


# ---- accounts are isolated ---------------------------------------------------------------


def test_an_unreadable_account_with_an_open_intent_does_not_stop_another(
    sim: Simulator, tmp_path: Path
) -> None:
    """Account A has an open intent left by a crash and its book cannot be read: A is
    reported unread by name, its intent stays open, and B's stale orders are cancelled."""
    a = sim.seed_order(ACCT, "SSI", age=STALE)
    b = sim.seed_order(OTHER, "VNM", "B", 62_000, 100, age=STALE)
    guard = Guard(sim, tmp_path / "state", rules_text())
    guard.state_dir.mkdir(mode=0o700)
    with guard.journal() as j:
        sweep = j.start_sweep(sim.clock() - timedelta(hours=1), "crashed", sim.clock(), False)
        j.intents(sweep, sim.clock() - timedelta(hours=1), "deadbeef",
                  [(ACCT, a, "stale", "27000", "B", "LO", 100, 0)])
    broken = sim.inject(Fault("error", "GET", BOOK, status=503, times=None, account=ACCT))

    report = guard.sweep(log=Recorder())

    assert sim.order(b).status == "CL" and sim.accepted_cancels() == [b]
    assert sim.order(a).status == "QU"
    assert [acct for acct, _ in report.unread_accounts] == [ACCT]
    assert report.result == "incomplete" and not report.complete
    with guard.journal() as j:
        assert [i.order_id for i in j.open_intents()] == [a]

    sim.faults.clear()
    assert broken.times is None
    later = guard.sweep(log=Recorder())  # A readable again: reconciled, then cancelled once
    assert later.result == "ok" and sim.order(a).status == "CL"
    assert kinds(guard)[a] == ["failed", "cancelled"]  # the dead run's cancel never landed
    assert_one_outcome_per_intent(guard.journal_path)
    assert_no_double_cancel(sim)


def test_health_names_an_unreadable_account_wherever_it_is_listed(
    sim: Simulator, tmp_path: Path
) -> None:
    """The start-up probe reads every account: one listed second that cannot be read makes
    the daemon degraded, naming it; the other account is still guarded; health comes back
    only when a sweep reads both."""
    b = sim.seed_order(ACCT, "SSI", age=STALE)
    sim.inject(Fault("error", "GET", BOOK, status=503, times=None, account=OTHER))
    guard = Guard(sim, tmp_path / "state", rules_text())
    log = Recorder()

    async def scenario() -> None:
        async with guard.context(log=log) as ctx:
            daemon = Daemon(ctx, tmp_path / "rules.yaml", notifier=Notifier({}), log=log)
            await daemon.start()
            assert daemon.health.state == "degraded"
            assert daemon.health.reason.startswith(f"accounts not read: {OTHER} (")
            [poll] = [j for j in daemon.jobs if j.job_id == "poll"]
            report = await daemon.fire(poll)
            assert report is not None and report.result == "incomplete"
            assert sim.order(b).status == "CL"
            assert daemon.health.state == "degraded" and OTHER in daemon.health.reason
            sim.faults.clear()
            report = await daemon.fire(poll)
            assert report is not None and report.result == "nothing_to_do"
            assert daemon.health.state == "healthy" and daemon.health.reason == ""
            daemon.request_stop()

    asyncio.run(scenario())


def test_a_journal_that_cannot_be_written_degrades_health_at_once(
    sim: Simulator, tmp_path: Path
) -> None:
    sim.seed_order(ACCT, "SSI", age=STALE)
    log = Recorder()
    with small_disk(tmp_path / "state") as state:
        guard = Guard(sim, state, rules_text())

        async def scenario() -> None:
            async with guard.context(log=log) as ctx:
                daemon = Daemon(ctx, tmp_path / "rules.yaml", notifier=Notifier({}), log=log)
                await daemon.start()
                assert daemon.health.state == "healthy"
                filler = fill(state)
                [poll] = [j for j in daemon.jobs if j.job_id == "poll"]
                assert await daemon.fire(poll) is None
                assert daemon.health.state == "degraded"
                assert daemon.health.reason.startswith("journal unwritable: cannot write")
                assert deletes(sim) == 0
                filler.unlink()
                report = await daemon.fire(poll)
                assert report is not None and report.result == "ok"
                assert daemon.health.state == "healthy"
                daemon.request_stop()

        asyncio.run(scenario())
    assert log.named("journal.write_failed") and log.named("sweep.failed")


def test_crashing_sweeps_degrade_health(sim: Simulator, tmp_path: Path) -> None:
    """Not only errors the guard knows: three crashes in a row are degraded too."""
    guard = Guard(sim, tmp_path / "state", rules_text())
    log = Recorder()

    class Broken(Exception):
        pass

    async def scenario() -> None:
        async with guard.context(log=log) as ctx:
            daemon = Daemon(ctx, tmp_path / "rules.yaml", notifier=Notifier({}), log=log)
            await daemon.start()
            real = ctx.journal.start_sweep

            def crash(*_: Any) -> int:
                raise Broken

            ctx.journal.start_sweep = crash  # type: ignore[method-assign]
            [poll] = [j for j in daemon.jobs if j.job_id == "poll"]
            for _ in range(3):
                assert await daemon.fire(poll) is None
            assert daemon.health.state == "degraded"
            assert daemon.health.reason == "3 sweeps failed: crashed (Broken)"
            ctx.journal.start_sweep = real  # type: ignore[method-assign]
            assert await daemon.fire(poll) is not None
            assert daemon.health.state == "healthy"
            daemon.request_stop()

    asyncio.run(scenario())
    assert len(log.named("sweep.crashed")) == 3


def test_a_failed_reload_degrades_until_a_good_one(sim: Simulator, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(rules_text())
    guard = Guard(sim, tmp_path / "state", rules_text())
    log = Recorder()

    async def scenario() -> None:
        async with guard.context(log=log) as ctx:
            daemon = Daemon(ctx, rules, notifier=Notifier({}), log=log)
            await daemon.start()
            rules.write_text(rules_text() + "  - name: broken\n    max_age: 5x\n")
            assert daemon.reload() is False
            assert daemon.health.state == "degraded"
            assert daemon.health.reason.startswith(
                "rules reload failed, running on the previous rules: ")
            [poll] = [j for j in daemon.jobs if j.job_id == "poll"]
            await daemon.fire(poll)  # a good sweep does not hide it
            assert daemon.health.state == "degraded"
            rules.write_text(rules_text())
            assert daemon.reload() is True
            assert daemon.health.state == "healthy"
            daemon.request_stop()

    asyncio.run(scenario())


# ---- resend only on proof ----------------------------------------------------------------


def test_a_lost_answer_is_not_resent_while_the_book_cannot_be_read(
    sim: Simulator, tmp_path: Path
) -> None:
    """The batch is applied, its answer times out, and the next book reads get 503. The
    guard waits and re-reads instead of sending the batch again; once a read shows WC/CL,
    the outcomes are the guard's own cancels, not ``already_done``."""
    ids = [sim.seed_order(ACCT, "SSI", "B", 27_000, 100 * (i + 1), age=STALE) for i in range(3)]
    sim.inject(Fault("hang", "DELETE", BATCH, apply_first=True, seconds=1.0))
    guard = Guard(sim, tmp_path / "state", rules_text(confirm_timeout="10s"), timeout_ms=300)
    # The sweep's own snapshot read passes; the three after the failed DELETE do not.
    sim.on_request("GET", BOOK, lambda: sim.inject(
        Fault("error", "GET", BOOK, status=503, times=3, account=ACCT)), account=ACCT)
    report = guard.sweep(log=Recorder())

    assert deletes(sim) == 1
    assert report.result == "ok"
    assert kinds(guard) == {i: ["cancelled"] for i in ids}
    assert_one_outcome_per_intent(guard.journal_path)
    assert_no_double_cancel(sim)
    answered(sim)


def test_no_proof_before_the_deadline_is_unconfirmed_never_resent(
    sim: Simulator, tmp_path: Path
) -> None:
    ids = [sim.seed_order(ACCT, "SSI", age=STALE) for _ in range(2)]
    sim.inject(Fault("hang", "DELETE", BATCH, apply_first=False, seconds=1.0))
    guard = Guard(sim, tmp_path / "state", rules_text(confirm_timeout="1s"), timeout_ms=300)
    sim.on_request("GET", BOOK, lambda: sim.inject(
        Fault("error", "GET", BOOK, status=503, times=None, account=ACCT)), account=ACCT)
    log = Recorder()
    report = guard.sweep(log=log)

    assert deletes(sim) == 1  # never sent blind
    assert log.named("cancel.not_resent")
    assert kinds(guard) == {i: ["unconfirmed"] for i in ids}
    assert report.result == "incomplete"
    assert all(sim.order(i).status == "QU" for i in ids)
    answered(sim)


# ---- resends: the policy README states --------------------------------------------------


def test_a_cancel_accepted_but_never_applied_is_resent_by_later_sweeps_at_most_three_times(
    sim: Simulator, tmp_path: Path
) -> None:
    """The broker answers WC and never applies the cancel. Each later sweep re-decides the
    order from a fresh read that shows it open and not WC, and sends it again as a new,
    journaled intent; after three unconfirmed cancels in a day it is given up on (an error,
    the sweep incomplete), so a broker that swallows cancels is not asked forever."""
    a = sim.seed_order(ACCT, "SSI", age=STALE)
    sim.override_reply("DELETE", SINGLE, {"clientCancelId": "x", "orderId": a,
                                           "clientRequestId": "", "orderStatus": "WC"},
                       times=None)
    guard = Guard(sim, tmp_path / "state", rules_text(confirm_timeout="1s"))
    results = [guard.sweep(log=Recorder()).result for _ in range(3)]
    assert results == ["incomplete"] * 3
    assert len(sim.requests_to("DELETE", SINGLE)) == 3
    assert kinds(guard) == {a: ["unconfirmed"] * 3}

    log = Recorder()
    fourth = guard.sweep(log=log)
    assert len(sim.requests_to("DELETE", SINGLE)) == 3  # given up: not sent a fourth time
    [given_up] = log.named("cancel.given_up")
    assert given_up["order_id"] == a and given_up["unconfirmed"] == 3
    assert fourth.result == "incomplete" and sim.order(a).status == "QU"
    assert_one_outcome_per_intent(guard.journal_path)


def test_reconcile_waits_for_a_resend_that_was_still_on_the_wire(
    sim: Simulator, tmp_path: Path
) -> None:
    """A resend leaves after a long wait for proof; the process dies while it is on the wire.
    The resend was journaled before it left, so the restart waits for it instead of calling
    the cancel "never landed" and sending another DELETE."""
    from guard.sweep import run_sweep

    [sim.seed_order(ACCT, "SSI", age=STALE) for _ in range(2)]
    guard = Guard(sim, tmp_path / "state", rules_text(confirm_timeout="30s"), timeout_ms=1000)
    sim.inject(Fault("error", "DELETE", BATCH, status=503, times=1))
    sim.inject(Fault("error", "GET", BOOK, status=503, times=None, skip=2))

    async def until_deletes(n: int) -> None:
        await asyncio.to_thread(wait_until, lambda: len(sim.requests_to("DELETE", BATCH)) >= n,
                                30.0)

    async def scenario() -> tuple[int, int]:
        async with guard.context(log=Recorder()) as ctx:
            task = asyncio.create_task(run_sweep(ctx, "dies"))
            await until_deletes(1)
            await asyncio.sleep(7.0)  # longer than the broker timeout (1 s) + 5 s
            sim.faults.clear()
            sim.inject(Fault("latency", "DELETE", BATCH, seconds=3.0))  # a slow resend
            await until_deletes(2)
            await asyncio.sleep(0.3)
            task.cancel()  # the process dies mid-resend
            await asyncio.gather(task, return_exceptions=True)
        before = deletes(sim)
        await guard.asweep(log=Recorder())  # the restart
        return before, deletes(sim)

    before, after = asyncio.run(scenario())
    assert after == before
    answered(sim)
    assert_no_double_cancel(sim)
    assert "never landed" not in str(outcomes(guard.journal_path))


def test_a_bug_in_one_batch_still_confirms_what_the_others_sent(
    sim: Simulator, tmp_path: Path
) -> None:
    """Any failure of one batch but a lost session (a bug, a cache that cannot be written)
    stops the send, yet every cancel that already went out is confirmed and journaled before
    the error ends the sweep. The broker here is the real one behind a stand-in that fails
    OTHER's cancel (the ports make any object with the calls a broker)."""
    from guard.sweep import run_sweep

    a = sim.seed_order(ACCT, "SSI", age=STALE)
    sim.seed_order(OTHER, "VNM", "B", 62_000, 100, age=STALE)
    guard = Guard(sim, tmp_path / "state", rules_text())
    log = Recorder()

    class Buggy:
        def __init__(self, real: Any) -> None:
            self.real = real

        def __getattr__(self, name: str) -> Any:
            return getattr(self.real, name)

        async def cancel_one(self, account: str, order_id: str) -> Any:
            if account == OTHER:
                await asyncio.to_thread(wait_until, lambda: sim.order(a).status != "QU", 5.0)
                raise RuntimeError("a bug in the second batch")
            return await self.real.cancel_one(account, order_id)

    async def scenario() -> None:
        async with guard.context(log=log) as ctx:
            ctx.broker = Buggy(ctx.broker)
            with pytest.raises(RuntimeError, match="a bug in the second batch"):
                await run_sweep(ctx, "test")

    asyncio.run(scenario())
    assert [f["order_id"] for f in log.named("cancel.sent")] == [a]
    assert [f["order_id"] for f in log.named("cancel.confirmed")] == [a]
    assert kinds(guard) == {a: ["cancelled"]}
    answered(sim)
