"""The dead-man switch in ``ssi-guard run`` as a real subprocess (APScheduler, signal
handlers, JSON logs), against the simulator over real HTTP through the real ``ssi_sdk``.

The daemon is a rehearsal (``--at``: its market clock starts at 10:00 on a Monday), but
heartbeats are judged on the host's wall clock: the file's real mtime decides. The first
DELETE is measured on the simulator's own request records.
"""

from __future__ import annotations

import signal
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from kit import ACCT, BATCH, OTHER, SINGLE
from kit.clocks import RunningClock, touch
from kit.daemon import guard_env, start_guard, wait_for

from guard.clock import EXCHANGE_TZ
from guard.simulator.control import Simulator

START = datetime(2026, 11, 23, 10, 0, tzinfo=EXCHANGE_TZ)


def rules_yaml(hb: Path, stale_after: str, *, heartbeat: bool = True) -> str:
    text = f"""
version: 1
accounts: ["{ACCT}", "{OTHER}"]
poll_every: 30s
dry_run: false
limits:
  max_cancels_per_sweep: 50
  confirm_timeout: 5s
protect:
  client_request_id_prefixes: ["keep-"]
rules:
  - name: stale
    max_age: 15m
"""
    if heartbeat:
        text += f"""  - name: strategy-a-alive
    heartbeat: {{file: {hb}, stale_after: {stale_after}}}
    match: {{client_request_ids: ["sa-*"]}}
"""
    return text


@pytest.mark.slow
def test_run_cancels_a_dead_strategys_orders_within_a_second(tmp_path: Path) -> None:
    hb = tmp_path / "hb"
    rules = tmp_path / "rules.yaml"
    rules.write_text(rules_yaml(hb, "2s", heartbeat=False))
    wall0, mono0 = time.time(), time.monotonic()
    with Simulator(clock=RunningClock(START), key_bits=1024, cancel_delay=0.05,
                   accounts=(ACCT, OTHER)) as sim:
        sa = sim.seed_order(ACCT, "SSI", age=timedelta(minutes=1), client_request_id="sa-1")
        other = sim.seed_order(ACCT, "FPT", "B", 95_000, age=timedelta(minutes=1),
                               client_request_id="sb-1")
        daemon = start_guard(rules, guard_env(sim.env(), tmp_path / "state"),
                             at=START.replace(tzinfo=None).isoformat())
        try:
            daemon.wait_event("daemon.ready", 20)
            # SIGHUP brings the heartbeat rule in; its grace starts at the reload.
            rules.write_text(rules_yaml(hb, "2s"))
            daemon.signal(signal.SIGHUP)
            daemon.wait_event("rules.reloaded", 5)
            end = time.time() + 3.5  # the strategy is alive past the grace
            while time.time() < end:
                touch(hb, time.time())
                time.sleep(0.2)
            assert not daemon.events("heartbeat.lost")
            mtime = touch(hb, time.time())  # ...and dies
            daemon.wait_event("heartbeat.lost", 5)
            daemon.wait_event("cancel.confirmed", 10)
            deletes = sim.requests_to("DELETE", BATCH) + sim.requests_to("DELETE", SINGLE)
            first = min(r.at for r in deletes)
            latency = first - (mono0 + (mtime + 2.0 - wall0))
            print(f"subprocess: first DELETE {latency:+.3f}s after mtime+stale_after")
            assert 0.0 <= latency <= 1.0, latency
            assert sim.order(sa).status == "CL" and sim.order(other).status == "QU"
            [lost] = daemon.events("heartbeat.lost")
            assert lost["level"] == "warning" and lost["rule"] == "strategy-a-alive"
            touch(hb, time.time())
            [resumed] = daemon.wait_event("heartbeat.resumed", 3)
            assert resumed["rule"] == "strategy-a-alive" and resumed["lost_for_s"] > 0
            assert wait_for(lambda: daemon.popen.poll() is None, 0.1)
            assert daemon.stop() == 0
        finally:
            daemon.close()
