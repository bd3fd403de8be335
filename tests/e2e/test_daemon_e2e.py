"""``ssi-guard run`` as a real subprocess, with its real APScheduler, against
the simulator over real HTTP through the real ``ssi_sdk``.

The daemon runs as a rehearsal (``run --at ISO``): its market clock starts at ISO and runs in
real time, and APScheduler's triggers are shifted by the same offset, so jobs fire in real time
exactly when the daemon's market clock reaches them.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from kit import ACCT, BATCH, BOOK, OTHER, SINGLE
from kit.clocks import RunningClock
from kit.daemon import (
    GuardProcess,
    NotifySocket,
    cli,
    guard_env,
    read_env_file,
    rules_yaml,
    sdk_book,
    start_guard,
    status_json,
    wait_for,
)

from guard.clock import EXCHANGE_TZ, FakeClock
from guard.simulator.control import Simulator

STALE = timedelta(minutes=40)


@pytest.mark.slow
def test_daemon_cancels_stale_orders_on_a_simulator_subprocess(tmp_path: Path) -> None:
    """Both sides are subprocesses: READY and watchdog pings reach the notify socket, stale
    orders are cancelled and fresh, protected and final ones are not (read back with the real
    SDK), a second guard on the same state directory is refused, SIGTERM exits 0."""
    env_file = tmp_path / "sim.env"
    simulator = GuardProcess(["simulator", "--port", "0", "--scenario", "demo", "--env-file",
                              str(env_file), "--at", "2026-11-23T10:00:00"],
                             guard_env({}, tmp_path / "unused"))
    notify = NotifySocket(tmp_path)
    daemon: GuardProcess | None = None
    try:
        assert wait_for(lambda: any("mode 0600" in x for x in simulator.lines), 20), (
            simulator.stderr)
        client = read_env_file(env_file)
        rules = tmp_path / "rules.yaml"
        rules.write_text(rules_yaml(poll="1s"))
        state = tmp_path / "state"
        env = guard_env(client, state, NOTIFY_SOCKET=notify.address, WATCHDOG_USEC="1000000")
        daemon = start_guard(rules, env, at="2026-11-23T10:00:00")

        assert notify.wait("READY=1", 20), daemon.stderr
        confirmed = daemon.wait_event("cancel.confirmed", 20, times=5)
        assert sorted(e["symbol"] for e in confirmed) == ["BSR", "FPT", "HPG", "SHS", "SSI"]
        assert notify.wait("WATCHDOG=1", 5, times=2)  # every WATCHDOG_USEC / 2
        ready_at = notify.lines().index("READY=1")
        assert any(x.startswith("STATUS=healthy") for x in notify.lines()[ready_at:])

        # A second guard on the same state directory: refused at once, one clear line.
        second = cli(["run", "--rules", str(rules), "--log-format", "json"], env)
        assert second.returncode == 5
        assert second.stdout == ""
        [line] = second.stderr.strip().splitlines()
        assert line.startswith("ssi-guard: another ssi-guard holds") and str(state) in line
        assert daemon.popen.poll() is None  # the first one is unaffected

        assert daemon.stop() == 0
        assert notify.wait("STOPPING=1", 5)
        assert daemon.events("daemon.stopped")

        book = sdk_book(client, "2026/11/23")  # the daemon is gone: this login ends nothing
        by_symbol = {k.split("/")[0]: v for acct in (ACCT, OTHER) for k, v in book[acct].items()}
        assert by_symbol == {
            "SSI": "CL", "FPT": "CL", "SHS": "CL", "BSR": "CL",  # stale: cancelled
            "HPG": "FFPC",  # stale, partly filled: the rest cancelled
            "VNM": "QU", "PVS": "QU",  # fresh (2 and 4 minutes old)
            "VCB": "QU",  # stale but protected (keep-)
            "MWG": "FF", "ACV": "RJ",  # already final
        }
    finally:
        if daemon is not None:
            daemon.close()
        simulator.close()
        notify.close()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("at", "next_poll"),
    [("2026-11-23T12:00:00", "2026-11-23T13:00:00+07:00"),  # lunch break
     ("2026-11-28T10:00:00", "2026-11-30T09:00:00+07:00")],  # a Saturday
    ids=["lunch", "saturday"],
)
def test_nothing_is_sent_outside_a_session(tmp_path: Path, at: str, next_poll: str) -> None:
    clock = FakeClock(datetime.fromisoformat(at).replace(tzinfo=EXCHANGE_TZ))
    with Simulator(clock=clock, key_bits=1024, cancel_delay=0.05,
                   accounts=(ACCT, OTHER)) as sim:
        ids = [sim.seed_order(ACCT, "SSI", age=STALE),
               sim.seed_order(OTHER, "SHS", "B", 14_000, age=STALE)]
        rules = tmp_path / "rules.yaml"
        rules.write_text(rules_yaml(poll="1s"))
        state = tmp_path / "state"
        daemon = start_guard(rules, guard_env(sim.env(), state), at=at)
        try:
            [ready] = daemon.wait_event("daemon.ready", 20)
            assert ready["state"] == "healthy"
            assert sim.requests_to("GET", BOOK)  # it is connected and read the book
            assert wait_for(lambda: status_json(state).get("next_sweeps", {}).get("poll"),
                            5) == next_poll
            # Two and a half poll intervals: a poll that fired would show here.
            time.sleep(2.5)
            assert daemon.events("sweep.started") == []
            assert sim.requests_to("DELETE", BATCH) == sim.requests_to("DELETE", SINGLE) == []
            assert [sim.order(i).status for i in ids] == ["QU", "QU"]
            assert daemon.stop() == 0
        finally:
            daemon.close()


@pytest.mark.slow
def test_the_poll_starts_when_the_daemons_market_clock_reaches_13_00(tmp_path: Path) -> None:
    """A daemon started in the lunch break at 12:59:55 (its market clock) sends nothing until
    its clock reaches 13:00:00, then sweeps: APScheduler waits in real time for the shifted
    trigger, and the sweep evaluates the rules at that market time."""
    start = datetime(2026, 11, 23, 12, 59, 55, tzinfo=EXCHANGE_TZ)
    one_pm = start.replace(hour=13, minute=0, second=0)
    rules = tmp_path / "rules.yaml"
    rules.write_text(rules_yaml(poll="1s"))
    clock = RunningClock(start)
    with Simulator(clock=clock, key_bits=1024, cancel_delay=0.05,
                   accounts=(ACCT, OTHER)) as sim:
        ids = [sim.seed_order(ACCT, "SSI", age=STALE),
               sim.seed_order(OTHER, "SHS", "B", 14_000, age=STALE)]
        # Started after the simulator's clock: the daemon's market clock is a little behind.
        daemon = start_guard(rules, guard_env(sim.env(), tmp_path / "state"),
                             at=start.isoformat())
        try:
            [ready] = daemon.wait_event("daemon.ready", 20)
            assert ready["state"] == "healthy"
            first = daemon.wait_event("sweep.started", 15)[0]
            assert first["market_time"] == "2026-11-23T13:00:00+07:00"
            daemon.wait_event("cancel.confirmed", 10, times=2)
            assert [sim.order(i).status for i in ids] == ["CL", "CL"]
            reads = sim.requests_to("GET", BOOK)
            deletes = sim.requests_to("DELETE", BATCH) + sim.requests_to("DELETE", SINGLE)
            assert clock.at(reads[0].at) < one_pm  # connected during the lunch break...
            assert deletes and min(clock.at(r.at) for r in deletes) >= one_pm  # ...sent after
            assert daemon.stop() == 0
        finally:
            daemon.close()
