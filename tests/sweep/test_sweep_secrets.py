"""Sweeps and secrets: a full run (login, a refresh, faults, cancels) never writes the
API secret, the private key, an access/refresh token or the OTP to the log or the journal, and
every file of the state directory is private."""

from __future__ import annotations

import asyncio
import io
import json
import re
import stat
from pathlib import Path

from kit import ACCT, BATCH, OTHER, STALE
from kit.sweep import answered, rules_text

from guard.service.runtime import open_guard
from guard.simulator.control import Simulator
from guard.simulator.faults import Fault
from guard.sweep import run_sweep


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_full_run_leaks_no_secret_and_keeps_state_private(
    sim: Simulator, tmp_path: Path, captured: io.StringIO
) -> None:
    ids = [sim.seed_order(ACCT, "SSI", age=STALE) for _ in range(3)]
    ids.append(sim.seed_order(OTHER, "VNM", "B", 62_000, age=STALE))
    state = tmp_path / "state"
    rules = tmp_path / "rules.yaml"
    rules.write_text(rules_text())
    env = {**sim.env(), "SSI_GUARD_STATE_DIR": str(state)}
    tokens: list[str] = []

    async def sweep() -> str:
        async with open_guard(rules, clock=sim.clock, env=env) as ctx:
            result = (await run_sweep(ctx, "test")).result
        cached = json.loads((state / "token.json").read_text())["token"]
        tokens.extend([cached["accessToken"], cached["refreshToken"]])
        return result

    sim.inject(Fault("error", "DELETE", BATCH, status=503))
    assert asyncio.run(sweep()) == "ok"  # logs in with SSI_OTP; a 5xx on the batch
    later = sim.seed_order(ACCT, "FPT", "B", 95_500, age=STALE)
    ids.append(sim.seed_order(ACCT, "FPT", "B", 95_500, age=STALE))
    sim.buckets.rate = 0  # two guards back to back: not what this test is about
    sim.expire_tokens()  # the next call is refused 401: the guard refreshes and goes on
    sim.inject(Fault("hang", "DELETE", BATCH, apply_first=True, seconds=0.3))
    assert asyncio.run(sweep()) == "ok"
    assert sim.order(later).status == "CL"
    assert len(set(tokens)) == 4, "the second sweep should have refreshed the session"

    c = sim.credentials
    secrets = {"api secret": c.api_secret, "private key": c.private_key,
               **{f"token {i}": t for i, t in enumerate(tokens)}}
    log = captured.getvalue()
    assert '"event": "sweep.finished"' in log and "cancel.retrying" in log  # it did log
    journal_bytes = b"".join(p.read_bytes() for p in state.glob("journal.sqlite3*"))
    assert b"cancel" in journal_bytes
    for name, value in secrets.items():
        assert value not in log, f"{name} in the log"
        assert value.encode() not in journal_bytes, f"{name} in the journal"
    # The OTP is six digits: look for it as a number of its own, not inside a timestamp.
    otp = re.compile(rf"(?<!\d){c.otp}(?!\d)")
    assert not otp.search(log) and not otp.search(journal_bytes.decode("latin-1"))

    assert mode(state) == 0o700
    for path in state.iterdir():
        assert mode(path) == 0o600, f"{path.name} is {oct(mode(path))}"
    assert {p.name for p in state.iterdir()} >= {"journal.sqlite3", "token.json", "lock"}
    answered(sim)
