"""``run --once`` and ``check`` alert through the daemon's path (``guard.service.ops.alerting``):
real subprocesses against the simulator, POSTing to a real HTTP receiver on loopback.

A cron or systemd-timer deployment runs ``run --once``: a breaker trip, an unconfirmed cancel
or a year without holiday data must reach the webhook before the process exits, and a
webhook that fails must change neither the exit status nor the one-line output.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kit import ACCT, AT, OTHER, STALE
from kit.ops import Receiver, rules_yaml, until

from guard.service.ops import alerting
from guard.simulator.control import Simulator

Cli = Callable[..., subprocess.CompletedProcess[str]]


class Hook:
    """A webhook receiver in a thread (the CLI under test is another process): every POST
    body, answered with ``status``."""

    def __init__(self, status: int = 200) -> None:
        self.bodies: list[dict[str, Any]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                hook.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def seen(self) -> list[tuple[Any, Any]]:
        return [(b.get("condition"), b.get("state")) for b in self.bodies]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[Hook]:
    receiver = Hook()
    yield receiver
    receiver.close()


@pytest.fixture
def cli(sim: Simulator, tmp_path: Path) -> Cli:
    """``cli(*args, rules=text)``: ``python -m guard ARGS`` with the simulator's env."""

    def run(*args: str, rules: str) -> subprocess.CompletedProcess[str]:
        path = tmp_path / "rules.yaml"
        path.write_text(rules)
        argv = [args[0], "--rules", str(path), *args[1:]]
        env = {**os.environ, **sim.env(), "SSI_GUARD_STATE_DIR": str(tmp_path / "state")}
        return subprocess.run([sys.executable, "-m", "guard", *argv, "--log-format", "json"],
                              env=env, capture_output=True, text=True, timeout=60, check=False)

    return run


def events(done: subprocess.CompletedProcess[str], name: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return [e for e in lines if e.get("event") == name]


def assert_clean(done: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout, done.stderr


def test_run_once_breaker_trip_posts_circuit_breaker(
    sim: Simulator, cli: Cli, hook: Hook
) -> None:
    orders = [sim.seed_order(ACCT, "SSI", age=STALE) for _ in range(3)]

    done = cli("run", "--once", "--at", AT, rules=rules_yaml(webhook=hook.url, max_cancels=2))

    assert done.returncode == 6, done.stderr
    assert_clean(done)
    [line] = done.stderr.splitlines()
    assert line.startswith("sweep 1: blocked")
    # Delivered before the process exited: no waiting here.
    assert ("circuit_breaker", "firing") in hook.seen()
    [body] = [b for b in hook.bodies if b["condition"] == "circuit_breaker"]
    assert body["details"] == {"matches": 3, "limit": 2, "rules": {"stale": 3}}
    assert all(sim.order(o).status == "QU" for o in orders)


def test_run_once_unconfirmed_cancel_posts_unconfirmed_cancel(
    sim: Simulator, cli: Cli, hook: Hook
) -> None:
    order = sim.seed_order(ACCT, "SSI", age=STALE)

    with sim.paused_cancels():  # the cancel stays WC past confirm_timeout
        done = cli("run", "--once", "--at", AT,
                   rules=rules_yaml(webhook=hook.url, confirm_timeout="1s"))

    assert done.returncode == 6, done.stderr
    assert_clean(done)
    assert "unconfirmed=1" in done.stderr
    seen = hook.seen()
    assert ("unconfirmed_cancel", "firing") in seen and ("sweep_failed", "firing") in seen
    [body] = [b for b in hook.bodies if b["condition"] == "unconfirmed_cancel"]
    assert body["details"]["order_id"] == order and body["details"]["account"] == ACCT


@pytest.mark.parametrize("status", [500, None], ids=["webhook-500", "webhook-unreachable"])
def test_a_failing_webhook_changes_neither_exit_status_nor_output(
    sim: Simulator, cli: Cli, status: int | None
) -> None:
    for _ in range(3):
        sim.seed_order(ACCT, "SSI", age=STALE)
    receiver = Hook(status or 200)
    url = receiver.url
    if status is None:
        receiver.close()  # nothing listens there any more: connection refused
    try:
        started = time.monotonic()
        done = cli("run", "--once", "--at", AT, rules=rules_yaml(webhook=url, max_cancels=2))
        took = time.monotonic() - started
    finally:
        if status is not None:
            receiver.close()

    assert done.returncode == 6, done.stderr
    assert_clean(done)
    [line] = done.stderr.splitlines()  # the summary, as with a working webhook
    assert line.startswith("sweep 1: blocked")
    assert events(done, "alert.delivery_failed") and events(done, "alert.undelivered")
    assert took < 15  # three tries with backoff, well inside the flush bound
    if status is not None:
        assert len(receiver.bodies) == 3  # retried, bounded


def test_a_hanging_webhook_is_cut_at_the_flush_bound() -> None:
    """``alerting`` returns within ``flush_s`` of its block's end, whatever the webhook does,
    and raises nothing (``run --once`` gets ``ONCE_FLUSH_S``)."""

    async def main() -> tuple[float, int]:
        async with Receiver("hang", hang_s=30) as slow:
            block = alerting(slow.url(), timeout_s=20, flush_s=0.3)
            alerter = await block.__aenter__()
            alerter.fire("circuit_breaker", "3 > 2")
            await until(lambda: len(slow.hits) == 1)  # on the wire, hanging
            t0 = time.monotonic()
            await block.__aexit__(None, None, None)
            return time.monotonic() - t0, len(slow.hits)

    took, hits = asyncio.run(main())
    assert hits == 1
    assert 0.25 < took < 1.0, took


def test_run_once_in_a_year_without_holiday_data_warns_and_alerts(
    sim: Simulator, cli: Cli, hook: Hook
) -> None:
    done = cli("run", "--once", "--at", "2027-01-01T10:00:00", rules=rules_yaml(webhook=hook.url))

    assert done.returncode == 0, done.stderr
    assert_clean(done)
    warning = [line for line in done.stderr.splitlines() if "holiday" in line]
    assert warning == ["ssi-guard: no exchange holiday list for 2027: every weekday counts as a "
                       "trading day; add the year's holidays to rules.yaml `holidays:`"]
    [event] = events(done, "calendar.no_holiday_data")
    assert event["year"] == 2027 and event["level"] == "warning"
    assert ("no_holiday_data", "firing") in hook.seen()


def test_check_in_a_year_without_holiday_data_warns_and_alerts(
    sim: Simulator, cli: Cli, hook: Hook
) -> None:
    done = cli("check", "--at", "2027-01-01T10:00:00", rules=rules_yaml(webhook=hook.url))

    assert done.returncode == 0, done.stderr
    assert_clean(done)
    assert done.stderr.splitlines() == [
        "ssi-guard: no exchange holiday list for 2027: every weekday counts as a trading day; "
        "add the year's holidays to rules.yaml `holidays:`"]
    assert events(done, "calendar.no_holiday_data")
    assert hook.seen() == [("no_holiday_data", "firing")]


def test_a_year_the_operator_listed_holidays_for_is_quiet(
    sim: Simulator, cli: Cli, hook: Hook
) -> None:
    done = cli("check", "--at", "2027-01-04T10:00:00",
               rules=rules_yaml(webhook=hook.url, holidays=("2027-01-01",)))
    assert done.returncode == 0, done.stderr
    assert done.stderr == "" and not events(done, "calendar.no_holiday_data")
    assert hook.seen() == []


def test_check_alerts_on_an_unread_account(sim: Simulator, cli: Cli, hook: Hook) -> None:
    sim.seed_order(ACCT, "SSI", age=STALE)
    rules = rules_yaml(webhook=hook.url).replace(f'"{OTHER}"', '"0009999"')

    done = cli("check", "--at", AT, rules=rules)

    assert done.returncode == 6
    assert_clean(done)
    assert "account 0009999: NOT READ" in done.stdout
    [body] = [b for b in hook.bodies if b["condition"] == "sweep_failed"]
    assert body["state"] == "firing" and "0009999" in body["summary"]


def test_run_once_with_the_broker_down_exits_4_and_posts_sweep_failed(
    sim: Simulator, cli: Cli, hook: Hook
) -> None:
    sim.stop()  # connection refused from the first request on

    done = cli("run", "--once", "--at", AT, rules=rules_yaml(webhook=hook.url))

    assert done.returncode == 4
    assert_clean(done)
    [line] = done.stderr.splitlines()
    assert line.startswith("ssi-guard: ")
    [body] = hook.bodies
    assert (body["condition"], body["state"]) == ("sweep_failed", "firing")
    assert body["details"]["job"] == "once"
