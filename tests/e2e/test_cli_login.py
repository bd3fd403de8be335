"""``ssi-guard login`` as a real subprocess on the simulator: it caches a token the daemon can
pick up (0600, bound to the URL and API key), and every failure is one line, never a
traceback or a secret."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from kit.daemon import cli, guard_env

from guard.broker.tokens import TokenCache
from guard.simulator.control import Simulator


@pytest.mark.slow
def test_login_with_ssi_otp_caches_a_private_token(sim: Simulator, tmp_path: Path) -> None:
    state = tmp_path / "state"
    done = cli(["login"], guard_env(sim.env(), state))
    assert done.returncode == 0, done.stderr
    [line] = done.stdout.splitlines()
    assert line.startswith(f"logged in; token cached in {state / 'token.json'} (mode 0600)")
    assert "access token valid until 2" in line
    assert done.stderr == ""

    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / "token.json").stat().st_mode) == 0o600
    cached = TokenCache(state).load(sim.url, sim.credentials.api_key)
    assert cached is not None and cached.expires_at > 0
    access = cached.token["accessToken"]
    sim.sessions.check(f"Bearer {access}")  # a live session on the simulator
    assert TokenCache(state).load("https://api.ssi.com.vn", sim.credentials.api_key) is None
    assert sim.sessions.logins == 1
    for secret in (access, sim.credentials.otp, sim.credentials.api_secret):
        assert secret not in done.stdout + done.stderr
    assert json.loads((state / "token.json").read_text())["api_url"] == sim.url


@pytest.mark.slow
def test_a_wrong_otp_is_one_line_and_exit_3(sim: Simulator, tmp_path: Path) -> None:
    env = guard_env(sim.env(), tmp_path / "state", SSI_OTP="000000")
    if sim.credentials.otp == "000000":
        env["SSI_OTP"] = "111111"
    done = cli(["login"], env)
    assert done.returncode == 3
    assert done.stderr.strip() == "ssi-guard: login refused by the broker (code 401105)"
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert not (tmp_path / "state" / "token.json").exists()


@pytest.mark.slow
def test_no_otp_and_no_terminal_says_what_to_do(sim: Simulator, tmp_path: Path) -> None:
    """With no SSI_OTP, no controlling terminal and nothing on stdin there is no one to type
    an OTP: exit 2 with one line, not an EOFError traceback."""
    done = cli(["login"], guard_env(sim.env(), tmp_path / "state", otp=False))
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "ssi-guard: no OTP given: run `ssi-guard login` in a terminal, set SSI_OTP, "
        "or pass --smart-otp")
    assert "Traceback" not in done.stderr
    assert sim.sessions.logins == 0 and sim.requests == []


def test_missing_credentials_are_named_not_shown(tmp_path: Path) -> None:
    done = cli(["login"], guard_env({"SSI_API_KEY": "k", "SSI_API_SECRET": "hunter2-secret"},
                                    tmp_path / "state"))
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert "missing credentials: SSI_CLIENT_ID, SSI_PRIVATE_KEY" in line
    assert "hunter2" not in line
