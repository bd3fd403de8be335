"""``ssi-guard simulator`` as a real subprocess: it prints its URL, writes a 0600 env file a
client can log in with, serves the seeded demo book, and stops cleanly on SIGTERM.
"""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from ssi_sdk import Auth, Config, Trading
from ssi_sdk.enums import OrderStatus

from guard.clock import EXCHANGE_TZ

ENV_KEYS = ["SSI_API_URL", "SSI_CLIENT_ID", "SSI_API_KEY", "SSI_API_SECRET", "SSI_PRIVATE_KEY",
            "SSI_OTP", "SSI_ACCOUNT"]


class _Proc:
    """A child process whose stdout lines are collected by a thread (no blocking reads)."""

    def __init__(self, args: list[str]) -> None:
        self.popen = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, encoding="utf-8")
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.append(line.rstrip("\n"))

    def stop(self) -> tuple[int, str]:
        """SIGTERM, then the exit code and stderr; the pipes are closed."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        code = self.popen.wait(timeout=10)
        self._reader.join(timeout=5)
        assert self.popen.stderr is not None
        stderr = self.popen.stderr.read()
        self.close()
        return code, stderr

    def close(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(timeout=10)
        self._reader.join(timeout=5)
        for pipe in (self.popen.stdout, self.popen.stderr):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def simulator_cli(tmp_path: Path) -> Iterator[tuple[_Proc, Path]]:
    env_file = tmp_path / "sim.env"
    proc = _Proc([sys.executable, "-m", "guard", "simulator", "--port", "0", "--scenario", "demo",
                  "--env-file", str(env_file)])
    try:
        yield proc, env_file
    finally:
        proc.close()


def _env(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text(encoding="utf-8").splitlines() if line)
    return {key: value for key, value in pairs}


@pytest.mark.slow
def test_simulator_subprocess_serves_the_demo_book(
    simulator_cli: tuple[_Proc, Path], until: Callable[..., bool]
) -> None:
    proc, env_file = simulator_cli
    assert until(lambda: any("listening on" in line for line in proc.lines)
                 or proc.popen.poll() is not None, timeout=20), "no URL printed"
    match = re.search(r"listening on (http://127\.0\.0\.1:(\d+))", "\n".join(proc.lines))
    assert match and int(match.group(2)) > 0, proc.lines
    assert until(lambda: any("mode 0600" in line for line in proc.lines), timeout=5)

    assert stat.S_IMODE(os.stat(env_file).st_mode) == 0o600
    env = _env(env_file)
    assert list(env) == ENV_KEYS
    assert env["SSI_API_URL"] == match.group(1)
    accounts = env["SSI_ACCOUNT"].split(",")
    assert accounts == ["0001234", "0001238", "0005678"]

    config = Config(api_url=env["SSI_API_URL"], client_id=env["SSI_CLIENT_ID"],
                    api_key=env["SSI_API_KEY"], api_secret=env["SSI_API_SECRET"],
                    private_key=env["SSI_PRIVATE_KEY"])
    now = datetime.now(EXCHANGE_TZ)
    start = (now - timedelta(hours=3)).strftime("%Y/%m/%d")  # the demo's oldest is 70 min
    end = now.strftime("%Y/%m/%d")
    with Auth(config) as auth:
        auth.authenticate(otp=env["SSI_OTP"])
        trading = Trading(auth)
        assert [a.account_no for a in trading.account.get_account_info()] == accounts
        book = {acct: trading.portfolio.get_historical_orders(acct, start, end)
                for acct in accounts}

    assert (len(book["0001234"]), len(book["0001238"]), len(book["0005678"])) == (6, 4, 2)
    orders = [o for acct in accounts for o in book[acct]]
    statuses = sorted(o.status.value for o in orders)
    assert statuses == ["FF", "PF"] + ["QU"] * 9 + ["RJ"]
    [partial] = [o for o in orders if o.status is OrderStatus.PARTIAL_FILLED]
    assert (partial.symbol, partial.quantity, partial.filled_quantity) == ("HPG", 1_000, 400)
    [rejected] = [o for o in orders if o.status is OrderStatus.REJECTED]
    assert rejected.message
    assert "keep-core-vcb" in {o.client_request_id for o in orders}

    def age(order_input_time: str) -> timedelta:
        entered = datetime.strptime(order_input_time, "%Y/%m/%d %H:%M:%S")
        return now - entered.replace(tzinfo=EXCHANGE_TZ)

    ages = [age(o.input_time) for o in orders if o.status is OrderStatus.QUEUED]
    assert any(a < timedelta(minutes=10) for a in ages)  # fresh
    assert any(a > timedelta(minutes=20) for a in ages)  # stale

    code, stderr = proc.stop()
    assert code == 0, stderr
    assert "simulator stopped" in proc.lines[-1]
