"""A session revoked under a running daemon: one loud error (not one per poll), health
degraded, sweeps skipped without hammering the broker; then ``ssi-guard login`` brings it back
by itself within about a second, with no restart."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from kit import ACCT, AT, BOOK, OTHER, STALE
from kit.daemon import cli, guard_env, rules_yaml, start_guard, status_json, wait_for
from kit.log import Recorder

from guard.broker.client import Broker
from guard.broker.tokens import TokenCache
from guard.clock import EXCHANGE_TZ
from guard.service.daemon import Daemon
from guard.service.notify import Notifier
from guard.service.runtime import open_guard
from guard.settings import load_credentials
from guard.simulator.control import Simulator
from guard.simulator.faults import Fault


@pytest.mark.slow
def test_revoked_session_degrades_then_ssi_guard_login_recovers_it(
    sim: Simulator, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    with_otp = guard_env(sim.env(), state)
    no_otp = guard_env(sim.env(), state, otp=False)  # the daemon never holds SSI_OTP
    login = cli(["login"], with_otp)
    assert login.returncode == 0, login.stderr
    assert "logged in; token cached" in login.stdout
    rules = tmp_path / "rules.yaml"
    rules.write_text(rules_yaml(poll="1s"))
    daemon = start_guard(rules, no_otp, at=AT)
    try:
        [ready] = daemon.wait_event("daemon.ready", 20)
        assert ready["state"] == "healthy"
        daemon.wait_event("sweep.finished", 10)
        assert cli(["status"], no_otp).returncode == 0

        sim.revoke_session()
        [error] = daemon.wait_event("auth.reauth_required", 10)
        assert error["level"] == "error" and "ssi-guard login" in error["action"]
        assert wait_for(lambda: status_json(state).get("state") == "degraded", 5)
        assert status_json(state)["reason"].startswith("re-authentication required")
        status = cli(["status"], no_otp)
        assert status.returncode == 1
        assert "DEGRADED" in status.stdout and "re-authentication required" in status.stdout
        assert "run `ssi-guard login`" in status.stdout

        # Three poll intervals while degraded: no sweep, no request, no second error.
        reads, sweeps = len(sim.requests_to("GET", BOOK)), len(daemon.events("sweep.started"))
        time.sleep(3)
        assert len(daemon.events("auth.reauth_required")) == 1
        assert len(daemon.events("sweep.started")) == sweeps
        assert len(sim.requests_to("GET", BOOK)) == reads

        fresh_stale = sim.seed_order(OTHER, "SHS", "B", 14_000, age=STALE)
        assert cli(["login"], with_otp).returncode == 0
        t_login = time.monotonic()
        [recovered] = daemon.wait_event("auth.recovered", 5)
        took = time.monotonic() - t_login
        assert took < 2.0, took
        assert wait_for(lambda: status_json(state).get("state") == "healthy", 3)
        healthy = cli(["status"], no_otp)
        assert healthy.returncode == 0 and "healthy" in healthy.stdout, healthy.stdout
        daemon.wait_event("cancel.confirmed", 10, where=lambda e: e["order_id"] == fresh_stale)
        assert sim.order(fresh_stale).status == "CL"
        assert sim.sessions.logins == 2  # the two `ssi-guard login`s; the daemon never did
        assert daemon.popen.poll() is None and daemon.stop() == 0
        until = datetime.fromisoformat(recovered["session_valid_until"])
        assert until > datetime.now(EXCHANGE_TZ) + timedelta(minutes=30)
    finally:
        daemon.close()


def test_the_reauth_error_repeats_on_its_interval_and_login_is_seen_at_once(
    sim: Simulator, tmp_path: Path
) -> None:
    """In-process, on a fake monotonic clock: the error repeats every ``reauth_repeat_s``
    (300 s by default), not at every probe; a new token in the cache is probed at the next
    tick, long before the next scheduled probe."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(rules_yaml(poll="30s"))
    env = guard_env(sim.env(), tmp_path / "state")
    now = [0.0]
    log = Recorder()

    async def scenario() -> None:
        async with open_guard(rules, env=env, clock=sim.clock, log=log) as ctx:
            daemon = Daemon(ctx, rules, notifier=Notifier({}), log=log,
                            monotonic=lambda: now[0], recovery_probe_s=5.0,
                            recovery_tick_s=0.01, reauth_repeat_s=300.0)
            probes: list[float] = []
            real_probe = daemon._probe

            async def counted() -> None:
                probes.append(now[0])
                await real_probe()

            daemon._probe = counted  # type: ignore[method-assign]
            await daemon.start()
            assert daemon.health.state == "healthy"
            [poll] = [j for j in daemon.jobs if j.job_id == "poll"]

            sim.revoke_session()
            assert await daemon.fire(poll) is None
            assert daemon.health.state == "degraded" and daemon.needs_login
            assert len(log.named("auth.reauth_required")) == 1
            requests = len(sim.requests)
            assert await daemon.fire(poll) is None  # skipped: no sweep, no request
            assert len(sim.requests) == requests

            loop = asyncio.create_task(daemon.recovery_loop())

            async def advance(to: float, probe: bool = True) -> None:
                count = len(probes)
                now[0] = to
                for _ in range(200 if probe else 10):
                    if len(probes) > count:
                        return
                    await asyncio.sleep(0.01)

            await advance(4.0, probe=False)  # not due: recovery_probe_s is 5 s
            for t in (100.0, 200.0, 299.0):  # due, and the broker still says no: no new log
                await advance(t)
            assert probes == [0.0, 100.0, 200.0, 299.0]  # start(), then the due ones
            assert len(log.named("auth.reauth_required")) == 1
            await advance(304.0)  # due again, and 300 s after the first: said again, once
            assert len(log.named("auth.reauth_required")) == 2
            assert len(sim.requests) == requests  # the probes asked nothing of the broker

            # `ssi-guard login` (what it does): a new token in the cache, no time passing.
            creds = load_credentials(env)
            async with Broker(creds, TokenCache(ctx.state_dir)) as other:
                await other.login(otp=sim.credentials.otp)
            for _ in range(200):
                if log.named("auth.recovered"):
                    break
                await asyncio.sleep(0.01)
            # Probed at once, although the next probe was not due for 5 s.
            assert log.named("auth.recovered") and probes[1:] == [100.0, 200.0, 299.0, 304.0, 304.0]
            assert daemon.health.state == "healthy" and not daemon.needs_login

            stale = sim.seed_order(ACCT, "SSI", age=STALE)
            report = await daemon.fire(poll)
            assert report is not None and report.result == "ok"
            assert sim.order(stale).status == "CL"
            daemon.request_stop()
            await asyncio.wait_for(loop, 2)

    asyncio.run(scenario())


def test_a_login_while_no_book_can_be_read_clears_reauth_and_says_broker(
    sim: Simulator, tmp_path: Path
) -> None:
    """After `ssi-guard login` the session is back even if every book read fails: health stops
    asking for a login (it says the broker is unavailable), and sweeps are no longer skipped."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(rules_yaml(poll="30s"))
    env = guard_env(sim.env(), tmp_path / "state")
    log = Recorder()

    async def scenario() -> None:
        async with open_guard(rules, env=env, clock=sim.clock, log=log) as ctx:
            daemon = Daemon(ctx, rules, notifier=Notifier({}), log=log, recovery_probe_s=0.05,
                            recovery_tick_s=0.01)
            await daemon.start()
            sim.revoke_session()
            [poll] = [j for j in daemon.jobs if j.job_id == "poll"]
            assert await daemon.fire(poll) is None and daemon.needs_login
            sim.inject(Fault("error", "GET", BOOK, status=503, times=None))
            loop = asyncio.create_task(daemon.recovery_loop())
            async with Broker(load_credentials(env), TokenCache(ctx.state_dir)) as other:
                await other.login(otp=sim.credentials.otp)
            for _ in range(300):  # the probe: session back, then every book read fails
                if not daemon.needs_login and log.named("auth.probe_failed"):
                    break
                await asyncio.sleep(0.01)
            assert not daemon.needs_login and log.named("auth.recovered")
            assert daemon.health.state == "degraded"
            assert daemon.health.reason.startswith("broker unavailable: ")
            assert "re-auth" not in daemon.health.reason
            report = await daemon.fire(poll)  # not skipped: it runs, and names the account
            assert report is not None and report.unread_accounts
            assert {a for a, _ in report.unread_accounts} == set(ctx.rules.accounts)
            daemon.request_stop()
            await asyncio.wait_for(loop, 2)

    asyncio.run(scenario())
