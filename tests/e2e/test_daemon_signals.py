"""Signals to a running ``ssi-guard run`` subprocess: SIGHUP reloads rules.yaml (a broken file
keeps the old rules), SIGTERM during a sweep lets it finish and record every outcome first."""

from __future__ import annotations

import contextlib
import itertools
import signal
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from kit import ACCT, BATCH, OTHER, SINGLE, STALE
from kit.daemon import NotifySocket, guard_env, rules_yaml, start_guard, status_json, wait_for
from kit.sweep import assert_no_double_cancel, assert_one_outcome_per_intent

from guard.simulator.control import Simulator
from guard.simulator.faults import Fault

AT = "2026-11-23T10:00:00"  # the `sim` fixture's market clock is frozen here
def _wall(event: dict[str, object]) -> datetime:
    return datetime.fromisoformat(str(event["timestamp"]))


@pytest.mark.slow
def test_sighup_applies_a_good_file_and_keeps_the_old_rules_on_a_broken_one(
    sim: Simulator, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(rules_yaml(dry_run=True, poll="1s"))
    first = sim.seed_order(ACCT, "SSI", age=STALE)
    daemon = start_guard(rules, guard_env(sim.env(), tmp_path / "state"), at=AT)
    try:
        daemon.wait_event("sweep.finished", 20, where=lambda e: e["result"] == "dry_run",
                          times=2)
        assert sim.requests_to("DELETE", BATCH) == sim.requests_to("DELETE", SINGLE) == []
        assert sim.order(first).status == "QU"

        # A good file: live, polling every 2 s.
        rules.write_text(rules_yaml(dry_run=False, poll="2s"))
        daemon.signal(signal.SIGHUP)
        [reloaded] = daemon.wait_event("rules.reloaded", 5)
        assert reloaded["dry_run"] is False and reloaded["poll_every_s"] == 2.0
        daemon.wait_event("cancel.confirmed", 10, where=lambda e: e["order_id"] == first)
        assert sim.order(first).status == "CL"
        added = daemon.events("schedule.added")
        assert added[-1]["job"] == "poll" and added[-1]["trigger"].startswith("every 0:00:02")

        # A broken file: one error event with every problem; the live 2 s rules go on.
        rules.write_text(rules_yaml(poll="0s").replace('accounts: ["0001234", "0001238"]',
                                                       "accounts: []"))
        daemon.signal(signal.SIGHUP)
        [failed] = daemon.wait_event("rules.reload_failed", 5)
        assert failed["level"] == "error" and failed["kept"] == "previous rules"
        problems = " | ".join(failed["problems"])
        assert "poll_every" in problems and "accounts" in problems, problems
        second = sim.seed_order(OTHER, "SHS", "B", 14_000, age=STALE)
        daemon.wait_event("cancel.confirmed", 10, where=lambda e: e["order_id"] == second)
        assert sim.order(second).status == "CL"
        assert len(daemon.events("rules.reloaded")) == 1

        # Sweeps ran every second before the reload, and every two seconds after it.
        t_reload = _wall(reloaded)
        daemon.wait_event("sweep.started", 10, where=lambda e: _wall(e) > t_reload, times=3)
        starts = [_wall(e) for e in daemon.events("sweep.started")]
        before = [b - a for a, b in itertools.pairwise(starts) if b < t_reload]
        after = [b - a for a, b in itertools.pairwise(starts) if a > t_reload]
        assert before and min(before) < timedelta(seconds=1.5)
        assert len(after) >= 2 and min(after) > timedelta(seconds=1.8)
        assert daemon.stop() == 0
    finally:
        daemon.close()


@pytest.mark.slow
def test_sigterm_during_a_sweep_lets_it_finish_then_exits_zero(
    sim: Simulator, tmp_path: Path
) -> None:
    """The cancels are on the wire (2 s of injected latency on every DELETE) when SIGTERM
    arrives: the daemon says STOPPING=1, starts nothing new, waits for the sweep to confirm
    and record each outcome, and exits 0 with a consistent journal."""
    ids = [sim.seed_order(ACCT, "SSI", age=STALE),
           sim.seed_order(ACCT, "VNM", "B", 62_000, 200, age=STALE),
           sim.seed_order(OTHER, "SHS", "B", 14_000, age=STALE)]
    sim.inject(Fault("latency", method="DELETE", path=SINGLE, seconds=2.0, times=None))
    rules = tmp_path / "rules.yaml"
    rules.write_text(rules_yaml(poll="1s"))
    state = tmp_path / "state"
    notify = NotifySocket(tmp_path, abstract=True)  # the `@name` form, end to end
    daemon = start_guard(rules, guard_env(sim.env(), state, NOTIFY_SOCKET=notify.address), at=AT)
    try:
        assert notify.wait("READY=1", 20), daemon.stderr
        assert wait_for(lambda: len(sim.requests_to("DELETE", BATCH))
                        + len(sim.requests_to("DELETE", SINGLE)) >= 2, 15)
        daemon.signal(signal.SIGTERM)
        assert daemon.popen.wait(timeout=30) == 0
        daemon.close()

        assert notify.wait("STOPPING=1", 2) and notify.count("STOPPING=1") == 1
        assert notify.lines().index("READY=1") < notify.lines().index("STOPPING=1")
        [stopping] = daemon.events("daemon.stopping")
        assert stopping["running_sweep"] is True
        names = [e["event"] for e in daemon.events()]
        assert (names.index("daemon.stopping") < names.index("sweep.finished")
                < names.index("daemon.stopped")), names
        assert [e["result"] for e in daemon.events("sweep.finished")] == ["ok"]
        assert names.count("sweep.started") == 1  # nothing new after the signal
        assert [sim.order(i).status for i in ids] == ["CL", "CL", "CL"]
        assert_no_double_cancel(sim)
        journal = state / "journal.sqlite3"
        assert_one_outcome_per_intent(journal)  # also PRAGMA integrity_check
        with contextlib.closing(sqlite3.connect(journal)) as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            assert db.execute("SELECT COUNT(*) FROM intents").fetchone() == (3,)
        assert status_json(state)["state"] == "stopped"
    finally:
        daemon.close()
        notify.close()
