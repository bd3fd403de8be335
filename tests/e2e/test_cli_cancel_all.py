"""``ssi-guard cancel-all`` as a real subprocess against the simulator, with no daemon: the
confirmation (a terminal, ``--yes``, neither), the filters, the holds and the exit codes."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kit import ACCT, AT, BOOK, FRESH, OTHER, STALE
from kit.sweep import rules_text

from guard.simulator.control import Simulator


@pytest.fixture
def env(sim: Simulator, tmp_path: Path) -> dict[str, str]:
    (tmp_path / "rules.yaml").write_text(rules_text(dry_run=True))
    return {**os.environ, **sim.env(), "SSI_GUARD_STATE_DIR": str(tmp_path / "state")}


def cancel_all(tmp_path: Path, env: dict[str, str], *args: str,
               stdin: int | None = subprocess.DEVNULL) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "guard", "cancel-all", "--rules", str(tmp_path / "rules.yaml"),
         *args], env=env, stdin=stdin, capture_output=True, text=True, timeout=60, check=False)


def test_without_a_terminal_and_without_yes_it_refuses_before_any_request(
        sim: Simulator, tmp_path: Path, env: dict[str, str]) -> None:
    o = sim.seed_order(ACCT, "SSI", age=STALE)
    done = cancel_all(tmp_path, env, "--at", AT)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "cancel-all: no terminal to confirm on: pass --yes to cancel without asking "
        "(nothing was done)"]
    assert sim.requests == [] and sim.order(o).status == "QU"


def test_yes_cancels_every_matching_order_even_in_a_dry_rules_file(
        sim: Simulator, tmp_path: Path, env: dict[str, str]) -> None:
    a = sim.seed_order(ACCT, "SSI", age=FRESH, client_request_id="sa-1")
    b = sim.seed_order(OTHER, "VNM", age=FRESH, client_request_id="sa-2")
    other = sim.seed_order(ACCT, "SSI", age=FRESH, client_request_id="sb-1")

    done = cancel_all(tmp_path, env, "--yes", "--at", AT, "--client-request-id", "sa-*")

    assert done.returncode == 0, done.stderr
    assert sim.order(a).status == sim.order(b).status == "CL"
    assert sim.order(other).status == "QU"
    assert "cancel-all as of 2026-11-23T10:00:00+07:00" in done.stdout
    assert "2 cancel" in done.stdout and "cancelled" in done.stdout


def test_an_order_held_in_atc_is_named_and_the_exit_is_6(
        sim: Simulator, tmp_path: Path, env: dict[str, str]) -> None:
    o = sim.seed_order(ACCT, "SSI", age=STALE)
    done = cancel_all(tmp_path, env, "--yes", "--at", "2026-11-23T14:35:00")
    assert done.returncode == 6, done.stderr
    assert "held" in done.stdout and "ATC" in done.stdout
    assert sim.order(o).status == "QU" and sim.accepted_cancels() == []


def test_a_bad_filter_is_exit_1_naming_the_flag_and_nothing_is_asked(
        sim: Simulator, tmp_path: Path, env: dict[str, str]) -> None:
    done = cancel_all(tmp_path, env, "--yes", "--account", "0009999")
    assert done.returncode == 1
    assert done.stderr.strip() == ("cancel-all: --account '0009999': is not an account "
                                   "rules.yaml guards")
    assert sim.requests == []


def _on_a_terminal(tmp_path: Path, env: dict[str, str], answer: bytes,
                   *args: str, think_s: float = 0.0) -> tuple[int, str]:
    """Run cancel-all with a pseudo-terminal as stdin/stdout; answer each of its questions,
    after reading the table for ``think_s``."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "guard", "cancel-all", "--rules", str(tmp_path / "rules.yaml"),
         *args], env=env, stdin=follower, stdout=follower, stderr=follower,
        start_new_session=True)
    os.close(follower)
    seen = b""
    answered = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
            if seen.count(b"Type yes to confirm") > answered:
                time.sleep(think_s)
                os.write(leader, answer)
                answered += 1
        elif proc.poll() is not None:
            break
    code = proc.wait(timeout=10)
    os.close(leader)
    return code, seen.decode(errors="replace")


def test_on_a_terminal_it_shows_the_table_and_cancels_only_after_yes(
        sim: Simulator, tmp_path: Path, env: dict[str, str]) -> None:
    o = sim.seed_order(ACCT, "SSI", age=FRESH)
    code, screen = _on_a_terminal(tmp_path, env, b"yes\n", "--at", AT)
    assert code == 0, screen
    assert "would cancel" in screen and o in screen
    assert "Cancel these 1 order(s) now?" in screen
    assert sim.order(o).status == "CL"


def test_on_a_terminal_anything_but_yes_cancels_nothing(
        sim: Simulator, tmp_path: Path, env: dict[str, str]) -> None:
    o = sim.seed_order(ACCT, "SSI", age=FRESH)
    code, screen = _on_a_terminal(tmp_path, env, b"y\n", "--at", AT)
    assert code == 1, screen
    assert "not confirmed; nothing was cancelled" in screen
    assert sim.order(o).status == "QU" and sim.accepted_cancels() == []


def test_two_presses_at_once_both_act_one_after_the_other(
        sim: Simulator, tmp_path: Path, env: dict[str, str]) -> None:
    """Two strategies die together, each unit pressing the button: the second waits for the
    first to let go of the state directory, then acts; neither press is lost."""
    a = sim.seed_order(ACCT, "SSI", age=FRESH, client_request_id="sa-1")
    b = sim.seed_order(ACCT, "VNM", age=FRESH, client_request_id="sb-1")
    argv = [sys.executable, "-m", "guard", "cancel-all", "--rules", str(tmp_path / "rules.yaml"),
            "--yes", "--at", AT]
    procs = [subprocess.Popen([*argv, "--client-request-id", crid], env=env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
             for crid in ("sa-*", "sb-*")]
    results = [p.communicate(timeout=90) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    assert sim.order(a).status == sim.order(b).status == "CL"


def test_it_waits_for_a_guard_that_holds_the_lock_without_a_socket(
        sim: Simulator, tmp_path: Path, env: dict[str, str]) -> None:
    """A `run --once` (or a daemon still starting) holds the state directory and serves no
    socket: cancel-all waits, then acts once it is free."""
    o = sim.seed_order(ACCT, "SSI", age=FRESH)
    holder = _hold_lock(tmp_path, env, seconds=1.5)
    try:
        done = cancel_all(tmp_path, env, "--yes", "--at", AT)
    finally:
        holder.wait(timeout=10)
    assert done.returncode == 0, done.stderr
    assert "waiting up to 60s" in done.stderr
    assert sim.order(o).status == "CL"


def test_it_gives_up_after_wait_with_one_line_and_exit_5(
        sim: Simulator, tmp_path: Path, env: dict[str, str]) -> None:
    o = sim.seed_order(ACCT, "SSI", age=FRESH)
    holder = _hold_lock(tmp_path, env, seconds=6)
    try:
        done = cancel_all(tmp_path, env, "--yes", "--at", AT, "--wait", "1")
    finally:
        holder.kill()
        holder.wait(timeout=10)
    assert done.returncode == 5
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("ssi-guard: cancel-all: another ssi-guard holds")
    assert "gave up after --wait 1s (nothing was cancelled by this command)" in lines[-1]
    assert sim.order(o).status == "QU" and sim.accepted_cancels() == []


def _hold_lock(tmp_path: Path, env: dict[str, str], seconds: float) -> subprocess.Popen[str]:
    """A process that holds the state lock for ``seconds`` and serves no control socket."""
    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from guard.service.lock import StateLock\n"
        "state = Path(sys.argv[1]); state.mkdir(mode=0o700, exist_ok=True)\n"
        "lock = StateLock(state); assert lock.try_acquire()\n"
        "print('held', flush=True); time.sleep(float(sys.argv[2])); lock.release()\n")
    proc = subprocess.Popen([sys.executable, "-c", code, env["SSI_GUARD_STATE_DIR"],
                             str(seconds)], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


# A stand-in for a daemon at the two awkward moments of its life: answering "try again"
# (it is stopping) after a preview, and dying after it read the request. The standalone
# retry then runs on the real clock (no --at beside a daemon), whose exchange day is not the
# simulator's: what matters is that it runs (exit 0 or 6, its own sweep printed), never that
# the press is dropped (exit 5).
FAKE_DAEMON = r"""
import asyncio, os, sys
from pathlib import Path
from guard.service.control import ControlServer, TryAgain
from guard.service.lock import StateLock
from guard.service.panic import PanicResult

state, mode = Path(sys.argv[1]), sys.argv[2]
state.mkdir(mode=0o700, exist_ok=True)
lock = StateLock(state)
assert lock.try_acquire()
calls = []

async def handler(request, preview):
    calls.append(preview)
    if mode == "die":
        os._exit(9)  # killed (watchdog, OOM) before it sent anything
    if preview:
        return PanicResult(True, "2026-11-23T10:00:00+07:00", 1, "dry_run",
                           (("0001234", "X1", "SSI", "B", "QU", "100", "would cancel",
                             "operator cancel-all", "-"),), (), (), False)
    raise TryAgain("the daemon is stopping")

async def main():
    server = ControlServer(state, handler)
    await server.start()
    print("held", flush=True)
    for _ in range(600):
        if calls and calls[-1] is False:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)
    await server.stop()
    lock.release()

asyncio.run(main())
"""


def _fake_daemon(env: dict[str, str], mode: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", FAKE_DAEMON, env["SSI_GUARD_STATE_DIR"], mode],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    assert proc.stdout is not None
    while proc.stdout.readline().strip() != "held":  # (its log lines come first)
        assert proc.poll() is None
    return proc


def test_a_daemon_dying_after_reading_the_press_does_not_lose_it(
        sim: Simulator, tmp_path: Path, env: dict[str, str]) -> None:
    o = sim.seed_order(ACCT, "SSI", age=FRESH)
    fake = _fake_daemon(env, "die")
    try:
        done = cancel_all(tmp_path, env, "--yes")
    finally:
        fake.kill()
        fake.wait(timeout=10)
    assert done.returncode in (0, 6), done.stderr
    assert "closed the connection without answering" in done.stderr
    assert "cancel-all as of" in done.stdout  # acted on, standalone, once the fake was gone
    assert sim.requests_to("GET", BOOK)  # it read the book itself: it logged in and swept
    assert sim.order(o).status in ("QU", "CL")


def test_time_at_the_prompt_does_not_use_up_wait(
        sim: Simulator, tmp_path: Path, env: dict[str, str]) -> None:
    """The operator reads the daemon's table for 3 s and types yes (--wait 2); the daemon
    is stopping: the wait starts after the answer, and the press is acted on once the state
    directory is free."""
    o = sim.seed_order(ACCT, "SSI", age=FRESH)
    fake = _fake_daemon(env, "stopping")
    try:
        code, screen = _on_a_terminal(tmp_path, env, b"yes\n", "--wait", "2",
                                      think_s=3)  # longer than --wait
    finally:
        fake.kill()
        fake.wait(timeout=10)
    assert code in (0, 6), screen
    assert "gave up" not in screen
    assert screen.count("cancel-all as of") >= 2  # the fake daemon's preview, then its own
    assert "X1" in screen and sim.requests_to("GET", BOOK)
    assert sim.order(o).status in ("QU", "CL")
