"""``ssi-guard status``: status.json as a person reads it, and the exit code a script checks
(0 only when a live daemon says it is healthy)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from guard.cli import main
from guard.clock import EXCHANGE_TZ
from guard.service.health import Health, pid_alive, read_status, write_status

NOW = datetime(2026, 11, 23, 10, 0, 5, tzinfo=EXCHANGE_TZ)


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "state"
    path.mkdir(mode=0o700)
    monkeypatch.setenv("SSI_GUARD_STATE_DIR", str(path))
    return path


def healthy(**changes: object) -> Health:
    return Health(
        state="healthy", last_sweep_at="2026-11-23T10:00:04+07:00", last_sweep_result="ok",
        last_ok_sweep_at="2026-11-23T10:00:04+07:00", token_expires_at=int(time.time()) + 3540,
        next_sweeps={"poll": "2026-11-23T10:00:34+07:00",
                     "pre-close:pre-close-sweep": "2026-11-23T14:25:00+07:00"},
        pid=os.getpid(),
    ).with_(**changes)


def status(capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["status"])
    return code, capsys.readouterr().out


def test_healthy_daemon_exits_0_and_shows_every_field(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_status(state, healthy(), NOW)
    assert stat.S_IMODE((state / "status.json").stat().st_mode) == 0o600
    code, out = status(capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"ssi-guard is healthy (pid {os.getpid()})"
    assert "  state          healthy" in lines
    assert "  last sweep     2026-11-23T10:00:04+07:00 (ok)" in lines
    assert "  last ok sweep  2026-11-23T10:00:04+07:00" in lines
    [token] = [x for x in lines if x.startswith("  token expires")]
    assert token.endswith("(in 58m)") or token.endswith("(in 59m)"), token
    i = lines.index("  next sweeps    2026-11-23T10:00:34+07:00  poll")
    assert lines[i + 1].strip() == "2026-11-23T14:25:00+07:00  pre-close:pre-close-sweep"
    assert "  written at     2026-11-23T10:00:05+07:00" in lines
    assert "REHEARSAL" not in out


def test_degraded_daemon_exits_1_with_the_reason_and_what_to_do(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_status(state, healthy(state="degraded", reason="re-authentication required: the SSI "
                                "session was revoked", token_expires_at=0), NOW)
    code, out = status(capsys)
    assert code == 1
    assert out.splitlines()[0] == (f"ssi-guard is DEGRADED (pid {os.getpid()}): "
                                   "re-authentication required: the SSI session was revoked")
    assert "  token expires  no token" in out.splitlines()
    assert "run `ssi-guard login`" in out


def test_no_status_file_exits_1(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = status(capsys)
    assert code == 1 and "no daemon status at" in out and str(state) in out
    assert not (state / "status.json").exists()


def test_a_dead_daemon_is_not_running_even_if_its_last_word_was_healthy(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    dead = int(child.stdout)
    assert not pid_alive(dead)
    write_status(state, healthy(pid=dead), NOW)
    code, out = status(capsys)
    assert code == 1
    assert out.splitlines()[0] == f"ssi-guard is NOT RUNNING (pid {dead} is gone; its last " \
                                  "state: healthy)"


def test_a_stopped_daemon_and_a_rehearsal_clock(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_status(state, healthy(state="stopped", next_sweeps={}, market_offset_s=-39963.2), NOW)
    code, out = status(capsys)
    assert code == 1 and "STOPPED" in out.splitlines()[0]
    assert "  next sweeps    none scheduled" in out.splitlines()
    assert "  clock          REHEARSAL: market time is real time - 11h06m" in out.splitlines()


def test_an_unreadable_status_file_is_no_status(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (state / "status.json").write_text("{not json")
    assert read_status(state) is None
    code, out = status(capsys)
    assert code == 1 and "no daemon status" in out


def test_pid_alive() -> None:
    assert pid_alive(os.getpid())
    assert pid_alive(1)  # another user's process is alive too (EPERM or not)
    for bad in (0, -5, None, "123", True):
        assert not pid_alive(bad)


def test_stale_heartbeats_are_listed_while_the_daemon_is_healthy(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A stale heartbeat is not a fault of the guard (it is pulling the orders, as asked), so
    the exit stays 0; but a person reading status sees which strategy is down, and why."""
    write_status(state, healthy(stale_heartbeats={
        "strategy-b-alive": "heartbeat /run/b/hb not touched for 12s",
        "strategy-a-alive": "heartbeat file /run/a/hb is missing"}), NOW)
    code, out = status(capsys)
    assert code == 0
    lines = out.splitlines()
    i = lines.index("  HEARTBEAT      STALE strategy-a-alive: heartbeat file /run/a/hb is "
                    "missing")
    assert lines[i + 1].strip() == ("STALE strategy-b-alive: heartbeat /run/b/hb not touched "
                                    "for 12s")
    write_status(state, healthy(), NOW)
    assert "HEARTBEAT" not in status(capsys)[1]
