"""Every error a user can cause is one line on stderr and its documented exit status, never a
traceback: a full or read-only state directory, a damaged journal, a busy or impossible port,
a usage mistake; and ``check`` never prints a broker's text unmasked.

Real subprocesses (``python -m guard``), a real simulator, a real tmpfs for the full disk
(CI runs as root, like this machine; every mount is undone in a ``finally``).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kit import ACCT, AT, BOOK, REPO, STALE
from kit.disk import fill, small_disk
from kit.sweep import rules_text

from guard import cli
from guard.record.redact import secrets_registry
from guard.simulator.control import Simulator

SHIPPED_RULES = REPO / "rules.yaml"

Run = Callable[..., subprocess.CompletedProcess[str]]


def guard(*args: str, env: dict[str, str] | None = None,
          timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "guard", *args],
                          env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout, check=False)


def one_line(done: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    """Exit ``code``, exactly one line on stderr holding ``words``, no traceback anywhere."""
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    assert done.returncode == code, (done.returncode, done.stderr)
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def run(sim: Simulator, tmp_path: Path) -> Run:
    """``run(*args, state=DIR)``: the CLI with the simulator's env, a rules file and a state
    directory (``tmp_path/state`` unless given)."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(rules_text())

    def go(*args: str, state: Path | None = None) -> subprocess.CompletedProcess[str]:
        argv = list(args)
        if args[0] in ("run", "check"):
            argv[1:1] = ["--rules", str(rules)]
        env = {**sim.env(), "SSI_GUARD_STATE_DIR": str(state or tmp_path / "state")}
        return guard(*argv, env=env)

    return go


# ---- the state directory: exit 5 --------------------------------------------------------


def test_a_full_disk_at_start_is_one_line_exit_5(run: Run, tmp_path: Path) -> None:
    with small_disk(tmp_path / "fs", "64k") as fs:
        state = fs / "state"
        state.mkdir(mode=0o700)
        fill(fs)
        for args in (("run", "--once", "--at", AT), ("check", "--at", AT)):
            line = one_line(run(*args, state=state), 5, str(state / "lock"))
            assert "No space left on device (ENOSPC)" in line


def test_a_disk_that_fills_after_a_first_run_is_one_line_exit_5(
    sim: Simulator, run: Run, tmp_path: Path
) -> None:
    with small_disk(tmp_path / "fs", "1m") as fs:
        state = fs / "state"
        assert run("run", "--once", "--at", AT, state=state).returncode == 0
        fill(fs)
        order = sim.seed_order(ACCT, "SSI", age=STALE)
        one_line(run("run", "--once", "--at", AT, state=state), 5, "journal")
        assert sim.order(order).status == "QU"  # not journalled: not sent


def test_a_read_only_state_directory_is_one_line_exit_5(run: Run, tmp_path: Path) -> None:
    with small_disk(tmp_path / "fs", "1m") as fs:
        state = fs / "state"
        assert run("run", "--once", "--at", AT, state=state).returncode == 0
        subprocess.run(["mount", "-o", "remount,ro", str(fs)], check=True, capture_output=True)
        for args in (("run", "--once", "--at", AT), ("check", "--at", AT)):
            done = run(*args, state=state)
            assert "EROFS" in one_line(done, 5, str(state))


def test_a_lock_path_that_is_a_directory_is_one_line_exit_5(run: Run, tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "lock").mkdir(parents=True)
    one_line(run("run", "--once", "--at", AT), 5, str(state / "lock"), "EISDIR")


def test_a_state_directory_that_is_a_file_is_one_line_exit_5(run: Run, tmp_path: Path) -> None:
    (tmp_path / "state").write_text("not a directory")
    for args in (("run", "--once", "--at", AT), ("check", "--at", AT), ("history",)):
        one_line(run(*args), 5, str(tmp_path / "state"))


@pytest.mark.parametrize("damage", ["directory", "garbage"])
def test_a_damaged_journal_is_one_line_exit_5_in_every_command(
    run: Run, tmp_path: Path, damage: str
) -> None:
    journal = tmp_path / "state" / "journal.sqlite3"
    journal.parent.mkdir(mode=0o700)
    if damage == "directory":
        journal.mkdir()
    else:
        journal.write_bytes(b"SQLite format 3\0" + os.urandom(8000))
    for args in (("run", "--once", "--at", AT), ("check", "--at", AT), ("history",)):
        one_line(run(*args), 5, str(journal))


def test_demo_with_an_unusable_state_dir_is_one_line_exit_5(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    done = guard("demo", "--rules", str(SHIPPED_RULES), "--state-dir", str(blocker / "state"))
    one_line(done, 5, "--state-dir")


# ---- ports and usage: exit 1 --------------------------------------------------------------


@contextlib.contextmanager
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_a_busy_metrics_port_is_one_line_exit_1(run: Run) -> None:
    with busy_port() as port:
        done = run("run", "--metrics-port", str(port), "--log-format", "json")
    one_line(done, 1, f"--metrics-port {port}", "in use")


@pytest.mark.parametrize("port", ["99999", "-1", "http"])
def test_an_impossible_metrics_port_is_refused_before_anything_starts(port: str) -> None:
    done = guard("run", "--metrics-port", port)
    one_line(done, 1, "--metrics-port", repr(port), "0-65535")


@pytest.mark.parametrize("port", ["99999", "x"])
def test_an_impossible_simulator_port_is_one_line_exit_1(port: str) -> None:
    one_line(guard("simulator", "--port", port), 1, "--port", "0-65535")


def test_a_busy_simulator_port_is_one_line_exit_1() -> None:
    with busy_port() as port:
        done = guard("simulator", "--port", str(port), timeout=20)
    one_line(done, 1, f"127.0.0.1:{port}", "in use")


@pytest.mark.parametrize("argv", [[], ["frobnicate"], ["run", "--bogus"], ["check", "--at", "noon"],
                                  ["simulator", "--rate-limit", "0"]])
def test_a_usage_mistake_is_one_line_exit_1_not_2(argv: list[str]) -> None:
    """argparse exits 2 with two lines; 2 is the documented status for credentials."""
    one_line(guard(*argv), 1, "--help")


def test_an_unexpected_error_is_one_line_exit_70_with_secrets_masked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bug (not a user's mistake) in any command: one line naming it, no traceback, and
    whatever its message quotes goes through the redactor."""
    secret = "s3cr3t-api-secret-value-0123456789"
    secrets_registry.add(secret)

    def broken(args: object) -> int:
        raise RuntimeError(f"boom near {secret}\nsecond line")

    monkeypatch.setattr(cli, "cmd_history", broken)
    try:
        code = cli.main(["history"])
    finally:
        secrets_registry.clear()
    out, err = capsys.readouterr()
    assert code == cli.EXIT_INTERNAL == 70
    assert err.splitlines() == ["ssi-guard: internal error (RuntimeError: boom near ***?second "
                                "line); please report it with the log"]
    assert secret not in out + err and "Traceback" not in out + err


# ---- check prints broker text masked, printable and bounded ---------------------------


@pytest.mark.parametrize("where", ["orderId", "quantity"])
def test_check_masks_secrets_in_what_the_broker_said(
    sim: Simulator, tmp_path: Path, where: str
) -> None:
    """A book reply that quotes a token-shaped string (as an order id, shown in the table) or
    the API secret (as a bad quantity, quoted in the NOT READ line): check shows neither."""
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJl"
    secret = sim.credentials.api_secret
    order = sim.seed_order(ACCT, "SSI", age=STALE)
    row = sim.exchange.order_wire(sim.order(order))
    row[where] = jwt if where == "orderId" else secret
    sim.override_reply("GET", BOOK, {"accountNo": ACCT, "totalRecord": 1, "orderList": [row]})
    rules = tmp_path / "rules.yaml"
    rules.write_text(rules_text().replace('accounts: ["0001234", "0001238"]',
                                          f'accounts: ["{ACCT}"]'))
    env = {**sim.env(), "SSI_GUARD_STATE_DIR": str(tmp_path / "state")}

    done = guard("check", "--rules", str(rules), "--at", AT, "--log-format", "json", env=env)

    shown = done.stdout + done.stderr
    assert "Traceback" not in shown
    assert jwt not in shown and secret not in shown
    printed = [line for line in done.stdout.splitlines() if not line.startswith("{")]
    if where == "orderId":
        assert done.returncode == 0, done.stderr
        [table_row] = [line for line in printed if line.startswith(ACCT)]
        assert table_row.split()[1] == "***" and "CANCEL" in table_row
    else:
        assert done.returncode == 6
        [unread] = [line for line in printed if "NOT READ" in line]
        assert "field quantity is '***'" in unread


def test_table_cells_are_printable_and_bounded() -> None:
    cell = cli._safe("Mua bán \u202eevil\x07" + "x" * 500)
    assert cell.isprintable() and len(cell) == cli.CELL_MAX and cell.endswith("...")
    assert cell.startswith("Mua bán ?evil?")  # Vietnamese text stays as it is
