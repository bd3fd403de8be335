"""``ssi-guard cancel-all`` beside a running ``ssi-guard run`` (both real subprocesses, the
simulator in process, the real ``ssi_sdk`` over loopback): the command never logs in, the
daemon does the work within a second and prints the same result, and its session survives."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from kit import ACCT, OTHER
from kit.clocks import RunningClock
from kit.daemon import cli, guard_env, start_guard, wait_for

from guard.clock import EXCHANGE_TZ
from guard.simulator.control import Simulator

START = datetime(2026, 11, 23, 10, 0, tzinfo=EXCHANGE_TZ)
LOGIN = "/api/v3/auth/token"
REFRESH = "/api/v3/auth/refresh"


RULES = f"""
version: 1
accounts: ["{ACCT}", "{OTHER}"]
poll_every: 1s
dry_run: true
limits: {{max_cancels_per_sweep: 1, confirm_timeout: 5s}}
rules:
  - name: stale
    max_age: 15m
"""


@pytest.mark.slow
def test_cancel_all_goes_through_the_running_daemon(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    with Simulator(clock=RunningClock(START), key_bits=1024, cancel_delay=0.05,
                   accounts=(ACCT, OTHER)) as sim:
        sa = [sim.seed_order(ACCT, "SSI", age=timedelta(minutes=1), client_request_id=f"sa-{i}")
              for i in range(3)]
        sb = sim.seed_order(OTHER, "FPT", "B", 95_000, age=timedelta(minutes=1),
                            client_request_id="sb-1")
        keep = sim.seed_order(ACCT, "VNM", age=timedelta(minutes=1),
                              client_request_id="keep-sa-9")
        env = guard_env(sim.env(), tmp_path / "state")
        daemon = start_guard(rules, env, at=START.replace(tzinfo=None).isoformat())
        try:
            daemon.wait_event("daemon.ready", 20)
            daemon.wait_event("control.listening", 5)
            logins = len(sim.requests_to("POST", LOGIN))

            done = cli(["cancel-all", "--rules", str(rules), "--yes",
                        "--client-request-id", "sa-*", "--client-request-id", "keep-*"], env,
                       timeout=60)

            assert done.returncode == 0, done.stdout + done.stderr
            assert "done by the running daemon that holds" in done.stderr
            assert all(sim.order(o).status == "CL" for o in sa)
            assert sim.order(sb).status == "QU" and sim.order(keep).status == "QU"
            # the same table as standalone: one row per selected order, protected shown
            assert done.stdout.count(" cancelled") >= 3 and "protected" in done.stdout
            assert "3 cancel" in done.stdout and "1 protected" in done.stdout
            # dry_run: true and max_cancels_per_sweep: 1 in rules.yaml did not stop it
            [received] = daemon.events("control.received")
            assert received["client_request_ids"] == ["sa-*", "keep-*"]
            started = [e for e in daemon.events("sweep.started")
                       if e.get("trigger") == "cancel-all"]
            assert started
            # the daemon acted within a second of being asked: from its control.received to
            # the first DELETE the simulator saw (monotonic, mapped onto wall time)
            deletes = [r for r in sim.requests if r.method == "DELETE"]
            to_wall = time.time() - time.monotonic()
            received_at = datetime.fromisoformat(received["timestamp"]).timestamp()
            assert deletes and 0 <= deletes[0].at + to_wall - received_at <= 1.0
            # no second login: the daemon's session is the only one, and it lives on
            assert len(sim.requests_to("POST", LOGIN)) == logins
            before = len(daemon.events("sweep.finished"))
            assert wait_for(lambda: len(daemon.events("sweep.finished")) > before + 1, 10)
            assert not daemon.events("auth.reauth_required")
            assert daemon.popen.poll() is None
        finally:
            assert daemon.stop() == 0, daemon.stderr
            daemon.close()
