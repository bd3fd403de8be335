"""A token cache that cannot be written (a full disk, here a directory where its temporary
file goes) never breaks the call that refreshed the session: the session is kept in memory and
the save retried; `run --once` then ends with exit 5 and says why (the next run would present
an old refresh token and lose the session), and a daemon is degraded until the save succeeds."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from kit import ACCT, AT, OTHER, SINGLE, STALE
from kit.log import Recorder
from kit.sweep import Guard, answered, rules_text

from guard.simulator.control import Simulator
from guard.simulator.faults import Fault


def test_run_once_with_an_unwritable_token_cache_is_exit_5_with_one_line(
    sim: Simulator, tmp_path: Path
) -> None:
    a = sim.seed_order(ACCT, "SSI", age=STALE)
    rules = tmp_path / "rules.yaml"
    rules.write_text(rules_text())
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "token.tmp").mkdir()
    env = {**os.environ, **sim.env(), "SSI_GUARD_STATE_DIR": str(state)}
    done = subprocess.run([sys.executable, "-m", "guard", "run", "--once", "--rules",
                           str(rules), "--at", AT], env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 5, done.stderr
    [line] = [ln for ln in done.stderr.splitlines() if ln.startswith("ssi-guard:")]
    assert "could not be saved" in line and "token.json" in line
    assert "Traceback" not in done.stderr + done.stdout
    assert sim.order(a).status == "CL"  # the sweep itself did its job
    assert '"token.save_failed"' in done.stdout


def test_a_refresh_whose_token_cannot_be_saved_mid_send_still_confirms(
    sim: Simulator, tmp_path: Path
) -> None:
    guard = Guard(sim, tmp_path / "state", rules_text())
    guard.sweep(log=Recorder())  # the token is cached
    a = sim.seed_order(ACCT, "SSI", age=STALE)
    b = sim.seed_order(OTHER, "VNM", "B", 62_000, 100, age=STALE)
    (guard.state_dir / "token.tmp").mkdir()
    sim.on_request("DELETE", SINGLE, sim.expire_tokens, account=ACCT)
    sim.inject(Fault("latency", "DELETE", SINGLE, seconds=0.3, account=OTHER))
    log = Recorder()
    report = guard.sweep(log=log)
    answered(sim)
    assert sorted(f["order_id"] for f in log.named("cancel.confirmed")) == sorted([a, b])
    assert report.result == "ok"
