"""``ssi-guard run --once``, ``check`` and ``history`` as real subprocesses against the simulator.

Exit codes: 0 when every decided cancel is final (or nothing was to be done), non-zero
otherwise. ``check`` is always dry: one row per open order, never a DELETE.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kit import ACCT, AT, BATCH, OTHER, SINGLE, STALE
from kit.sweep import at, rules_text

from guard.simulator.control import Simulator


@pytest.fixture
def cli(sim: Simulator, tmp_path: Path):  # type: ignore[no-untyped-def]
    """``cli(*args, rules=text)``: run ``python -m guard ARGS`` with the simulator's env."""
    state = tmp_path / "state"

    def run(*args: str, rules: str | None = None) -> subprocess.CompletedProcess[str]:
        path = tmp_path / "rules.yaml"
        path.write_text(rules if rules is not None else rules_text())
        argv = list(args)
        if args[0] in ("run", "check"):
            argv[1:1] = ["--rules", str(path)]
        env = {**os.environ, **sim.env(), "SSI_GUARD_STATE_DIR": str(state)}
        return subprocess.run([sys.executable, "-m", "guard", *argv], env=env,
                              capture_output=True, text=True, timeout=60, check=False)

    return run


def deletes(sim: Simulator) -> int:
    return len(sim.requests_to("DELETE", BATCH)) + len(sim.requests_to("DELETE", SINGLE))


def test_run_once_cancels_and_exits_zero(sim: Simulator, cli) -> None:  # type: ignore[no-untyped-def]
    a = sim.seed_order(ACCT, "SSI", age=STALE)
    b = sim.seed_order(ACCT, "VNM", "B", 62_000, age=STALE)
    fresh = sim.seed_order(OTHER, "HPG", "B", 26_400, age=timedelta(minutes=1))

    done = cli("run", "--once", "--at", AT, "--log-format", "json")

    assert done.returncode == 0, done.stderr
    assert sim.order(a).status == sim.order(b).status == "CL"
    assert sim.order(fresh).status == "QU"
    assert sorted(sim.accepted_cancels()) == sorted([a, b])
    assert "sweep 1: ok" in done.stderr and "cancelled=2" in done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    finished = [e for e in events if e["event"] == "sweep.finished"]
    assert len(finished) == 1 and finished[0]["result"] == "ok"
    confirmed = sorted(e["order_id"] for e in events if e["event"] == "cancel.confirmed")
    assert confirmed == sorted([a, b])


def test_run_once_exits_nonzero_when_a_cancel_is_refused(sim: Simulator, cli) -> None:  # type: ignore[no-untyped-def]
    """Decided at 14:29:59, refused by an exchange already in ATC at 14:30:00."""
    a = sim.seed_order(ACCT, "SSI", age=STALE)
    sim.set_clock(at(sim, 14, 30, 0))

    done = cli("run", "--once", "--at", "2026-11-23T14:29:59", "--log-format", "json")

    assert done.returncode != 0
    assert "incomplete" in done.stderr and "failed=1" in done.stderr
    assert sim.order(a).status == "QU" and sim.accepted_cancels() == []
    assert deletes(sim) == 1


def test_run_once_dry_run_flag_sends_nothing(sim: Simulator, cli) -> None:  # type: ignore[no-untyped-def]
    a = sim.seed_order(ACCT, "SSI", age=STALE)
    done = cli("run", "--once", "--dry-run", "--at", AT, "--log-format", "json")
    assert done.returncode == 0, done.stderr
    assert "dry_run" in done.stderr
    assert deletes(sim) == 0 and sim.order(a).status == "QU"


def test_check_prints_every_open_order_with_verdict_and_reason(
    sim: Simulator, cli  # type: ignore[no-untyped-def]
) -> None:
    stale = sim.seed_order(ACCT, "SSI", age=STALE)
    fresh = sim.seed_order(ACCT, "VNM", "B", 62_000, age=timedelta(minutes=3))
    kept = sim.seed_order(OTHER, "HPG", "B", 26_400, age=STALE, client_request_id="keep-1")
    pending = sim.seed_order(OTHER, "FPT", "B", 95_500, age=STALE)
    sim.set_status(pending, "WC")
    final = sim.seed_order(ACCT, "SSI", age=STALE)
    sim.fill(final)

    done = cli("check", "--at", AT, rules=rules_text(dry_run=False))

    assert done.returncode == 0, done.stderr
    assert deletes(sim) == 0  # even with dry_run: false in rules.yaml
    rows = {line.split()[1]: line for line in done.stdout.splitlines()
            if line.startswith((ACCT, OTHER))}
    assert set(rows) == {stale, fresh, kept, pending}  # final orders are not open
    assert "CANCEL" in rows[stale] and "age 20m >= 15m" in rows[stale]
    assert "no rule matched" in rows[fresh] and " - " in rows[fresh]
    assert "hold" in rows[kept] and "protected prefix keep-" in rows[kept]
    assert "hold" in rows[pending] and "status WC already cancelling" in rows[pending]
    assert "nothing is sent" in done.stdout


def test_check_reports_an_unread_account_and_exits_nonzero(sim: Simulator, cli) -> None:  # type: ignore[no-untyped-def]
    sim.seed_order(ACCT, "SSI", age=STALE)
    text = rules_text().replace(f'"{OTHER}"', '"0009999"')
    done = cli("check", "--at", AT, rules=text)
    assert done.returncode != 0
    assert "account 0009999: NOT READ" in done.stdout
    assert deletes(sim) == 0


def test_history_prints_the_journal(sim: Simulator, cli) -> None:  # type: ignore[no-untyped-def]
    a = sim.seed_order(ACCT, "SSI", age=STALE)
    b = sim.seed_order(OTHER, "VNM", "B", 62_000, 200, age=STALE)
    sim.fill(b, 50)
    assert cli("run", "--once", "--at", AT, "--log-format", "json").returncode == 0

    done = cli("history")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    [row_a] = [line for line in lines if a in line]
    [row_b] = [line for line in lines if b in line]
    assert "cancelled" in row_a and "CL" in row_a and "stale" in row_a
    assert "partially_cancelled" in row_b and "150" in row_b and "FFPC" in row_b
    assert "1 sweep(s); ok=1" in done.stdout

    only = cli("history", "--account", OTHER)
    assert b in only.stdout and a not in only.stdout


def test_history_without_a_journal(cli) -> None:  # type: ignore[no-untyped-def]
    done = cli("history")
    assert done.returncode == 0 and "no journal yet" in done.stdout


def test_history_since_compares_instants_not_text(sim: Simulator, cli) -> None:  # type: ignore[no-untyped-def]
    """The journal stamps exchange time (+07:00); ``--since`` in UTC must mean the same
    instant, not a string compared against another zone's digits."""
    a = sim.seed_order(ACCT, "SSI", age=STALE)
    before = datetime.now(UTC) - timedelta(minutes=5)
    assert cli("run", "--once", "--at", AT, "--log-format", "json").returncode == 0
    after = datetime.now(UTC) + timedelta(minutes=5)

    def utc(instant: datetime) -> str:
        return instant.strftime("%Y-%m-%dT%H:%M:%SZ")

    assert a in cli("history", "--since", utc(before)).stdout
    later = cli("history", "--since", utc(after))
    assert later.returncode == 0 and a not in later.stdout and "0 sweep(s)" in later.stdout


def test_at_in_utc_reads_the_exchange_days_book(sim: Simulator, cli) -> None:  # type: ignore[no-untyped-def]
    """23:30Z on the 22nd is 06:30 on the 23rd in Vietnam: the book read is the 23rd's."""
    early = sim.seed_order(ACCT, "SSI", age=timedelta(hours=4))  # entered 06:00 on the 23rd
    done = cli("check", "--at", "2026-11-22T23:30:00Z")
    assert done.returncode == 0, done.stderr
    assert "as of 2026-11-22T23:30:00+00:00" in done.stdout
    [row] = [line for line in done.stdout.splitlines() if line.startswith(ACCT)]
    assert early in row and "hold" in row  # matched (30m old), held: the market is closed
    [request] = sim.requests_to("GET", "/api/v3/trading/orderBook")[:1]
    assert request.query["from"] == "2026/11/23"
