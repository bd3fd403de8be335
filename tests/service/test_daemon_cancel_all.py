"""The daemon's side of cancel-all: it acts only between start-up and stopping, and says
"try again" outside that (the client then waits, or takes the state directory itself)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from kit import ACCT, FRESH
from kit.ops import write_rules
from kit.sweep import rules_text

from guard.service.control import TryAgain
from guard.service.daemon import Daemon
from guard.service.notify import Notifier
from guard.service.panic import CancelAll
from guard.service.runtime import open_guard
from guard.simulator.control import Simulator


def test_cancel_all_waits_for_start_up_and_refuses_once_stopping(
        sim: Simulator, tmp_path: Path) -> None:
    o = sim.seed_order(ACCT, "SSI", age=FRESH)

    async def scenario() -> None:
        path = write_rules(tmp_path, rules_text(dry_run=True))
        env = {**sim.env(), "SSI_GUARD_STATE_DIR": str(tmp_path / "state")}
        async with open_guard(path, env=env, clock=sim.clock) as ctx:
            daemon = Daemon(ctx, path, notifier=Notifier({}))
            with pytest.raises(TryAgain, match="starting"):
                await daemon.cancel_all(CancelAll(), False)
            await daemon.start()
            daemon.serving()
            result = await daemon.cancel_all(CancelAll(), False)
            assert result.complete and sim.order(o).status == "CL"
            daemon.request_stop()
            with pytest.raises(TryAgain, match="stopping"):
                await daemon.cancel_all(CancelAll(), False)
            await daemon.drain()

    asyncio.run(scenario())


def test_a_cancel_all_queued_behind_a_sweep_that_sigterm_drains_does_not_start(
        sim: Simulator, tmp_path: Path) -> None:
    sim.seed_order(ACCT, "SSI", age=FRESH)

    async def scenario() -> None:
        path = write_rules(tmp_path, rules_text(dry_run=True))
        env = {**sim.env(), "SSI_GUARD_STATE_DIR": str(tmp_path / "state")}
        async with open_guard(path, env=env, clock=sim.clock) as ctx:
            daemon = Daemon(ctx, path, notifier=Notifier({}))
            await daemon.start()
            daemon.serving()
            async with daemon._sweep_lock:  # a sweep is running
                queued = asyncio.ensure_future(daemon.cancel_all(CancelAll(), False))
                await asyncio.sleep(0.05)
                daemon.request_stop()
            with pytest.raises(TryAgain, match="stopping"):
                await queued
            assert sim.accepted_cancels() == []

    asyncio.run(scenario())
