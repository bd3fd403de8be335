"""Helpers for the daemon tests (tests/test_daemon_*.py): the guard as a real subprocess.

``ssi-guard run`` runs as a child process with its own event loop, APScheduler, signal handlers
and JSON logs on a pipe; a fake ``NOTIFY_SOCKET`` collects what it tells systemd. Every wait has
a deadline, and every child is killed in ``close()`` (call it in ``finally``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ssi_sdk import Auth, Config, Trading

from kit import ACCT, OTHER

BATCH = "/api/v3/trading/order/batch"
SINGLE = "/api/v3/trading/order"

# Variables from the test runner's own environment that must not leak into a child guard.
_FOREIGN = ("SSI_", "NOTIFY_SOCKET", "WATCHDOG_", "STATE_DIRECTORY", "CREDENTIALS_DIRECTORY")


def rules_yaml(*, dry_run: bool = False, poll: str = "1s", max_age: str = "15m",
               confirm_timeout: str = "5s", extra: str = "") -> str:
    return f"""
version: 1
accounts: ["{ACCT}", "{OTHER}"]
poll_every: {poll}
dry_run: {"true" if dry_run else "false"}
limits:
  max_cancels_per_sweep: 50
  confirm_timeout: {confirm_timeout}
protect:
  client_request_id_prefixes: ["keep-"]
rules:
  - name: stale
    max_age: {max_age}
{extra}"""


def guard_env(client_env: Mapping[str, str], state_dir: Path, *, otp: bool = True,
              **extra: str) -> dict[str, str]:
    """The child's environment: the runner's minus anything guard-related, plus these."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN)}
    env.update(client_env)
    if not otp:
        env.pop("SSI_OTP", None)
    env.update({"SSI_GUARD_STATE_DIR": str(state_dir), "PYTHONUNBUFFERED": "1", **extra})
    return env


def read_env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text(encoding="utf-8").splitlines() if line)
    return {key: value for key, value in pairs}


def wait_for(predicate: Callable[[], Any], timeout: float, step: float = 0.02) -> Any:
    """Poll until ``predicate()`` is truthy (returned) or the deadline passes (its last value)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(step)


class NotifySocket:
    """A bound ``AF_UNIX``/``SOCK_DGRAM`` socket standing in for systemd's, read by a thread.

    ``abstract=True`` binds an abstract address and hands the child the ``@name`` form.
    """

    def __init__(self, tmp_path: Path, abstract: bool = False) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._dir: str | None = None
        if abstract:
            name = f"ssi-guard-test-{os.getpid()}-{time.monotonic_ns()}"
            self.sock.bind("\0" + name)
            self.address = "@" + name
        else:
            path = tmp_path / "notify.sock"
            if len(str(path).encode()) > 100:  # sun_path holds 108 bytes
                self._dir = tempfile.mkdtemp(prefix="sdn", dir="/tmp")
                path = Path(self._dir) / "n.sock"
            self.sock.bind(str(path))
            self.address = str(path)
        self.sock.settimeout(0.1)
        self.messages: list[str] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._closed.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.messages.append(data.decode())

    def lines(self) -> list[str]:
        with self._lock:
            return [line for m in self.messages for line in m.splitlines()]

    def count(self, line: str) -> int:
        return sum(1 for x in self.lines() if x == line)

    def wait(self, line: str, timeout: float, times: int = 1) -> bool:
        return bool(wait_for(lambda: self.count(line) >= times, timeout))

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=2)
        self.sock.close()
        if self._dir is not None:
            with contextlib.suppress(OSError):
                for child in Path(self._dir).iterdir():
                    child.unlink()
                os.rmdir(self._dir)


class GuardProcess:
    """``python -m guard ARGS`` with stdout (JSON log lines) collected by a thread."""

    def __init__(self, args: list[str], env: Mapping[str, str]) -> None:
        self.popen = subprocess.Popen([sys.executable, "-m", "guard", *args], env=dict(env),
                                      stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, encoding="utf-8")
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._stderr: list[str] = []
        self._threads = [threading.Thread(target=self._pump, args=(self.popen.stdout, self.lines),
                                          daemon=True),
                         threading.Thread(target=self._pump, args=(self.popen.stderr,
                                                                   self._stderr), daemon=True)]
        for thread in self._threads:
            thread.start()

    def _pump(self, pipe: Any, into: list[str]) -> None:
        for line in pipe:
            with self._lock:
                into.append(line.rstrip("\n"))

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def stderr(self) -> str:
        with self._lock:
            return "\n".join(self._stderr)

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """Parsed JSON log lines (all of them must be JSON), optionally one event's only."""
        with self._lock:
            lines = list(self.lines)
        out = [json.loads(line) for line in lines if line.strip()]
        return out if name is None else [e for e in out if e.get("event") == name]

    def wait_event(self, name: str, timeout: float,
                   where: Callable[[dict[str, Any]], bool] = lambda e: True,
                   times: int = 1) -> list[dict[str, Any]]:
        """Wait for ``times`` events called ``name`` matching ``where``; fail with the log."""
        def enough() -> bool:
            matched = [e for e in self.events(name) if where(e)]
            return len(matched) >= times or self.popen.poll() is not None

        wait_for(enough, timeout)
        matched = [e for e in self.events(name) if where(e)]
        if len(matched) < times:
            raise AssertionError(f"no {name!r} (x{times}) within {timeout}s; exit "
                                 f"{self.popen.poll()}; stderr: {self.stderr[-2000:]}\n"
                                 + "\n".join(x[:300] for x in self.lines[-40:]))
        return matched

    def signal(self, sig: signal.Signals) -> None:
        self.popen.send_signal(sig)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and the exit code."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        code = self.popen.wait(timeout=timeout)
        for thread in self._threads:
            thread.join(timeout=5)
        return code

    def close(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(timeout=10)
        for thread in self._threads:
            thread.join(timeout=5)
        for pipe in (self.popen.stdout, self.popen.stderr):
            if pipe is not None:
                pipe.close()


def start_guard(rules: Path, env: Mapping[str, str], at: str | None = None) -> GuardProcess:
    args = ["run", "--rules", str(rules), "--log-format", "json"]
    if at is not None:
        args += ["--at", at]
    return GuardProcess(args, env)


def cli(args: list[str], env: Mapping[str, str],
        timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """A one-shot ``python -m guard ARGS``, with no controlling terminal and nothing on stdin."""
    return subprocess.run([sys.executable, "-m", "guard", *args], env=dict(env),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout, check=False, start_new_session=True)


def status_json(state_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((state_dir / "status.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def sdk_book(client_env: Mapping[str, str], day: str) -> dict[str, dict[str, str]]:
    """Every order of both accounts on ``day`` (YYYY/MM/DD), read with the real SDK:
    account -> {symbol + "/" + order id: status}. Logging in ends any other session."""
    config = Config(api_url=client_env["SSI_API_URL"], client_id=client_env["SSI_CLIENT_ID"],
                    api_key=client_env["SSI_API_KEY"], api_secret=client_env["SSI_API_SECRET"],
                    private_key=client_env["SSI_PRIVATE_KEY"])
    with Auth(config) as auth:
        auth.authenticate(otp=client_env["SSI_OTP"])
        trading = Trading(auth)
        return {acct: {f"{o.symbol}/{o.order_id}": str(getattr(o.status, "value", o.status))
                       for o in trading.portfolio.get_historical_orders(acct, day, day)}
                for acct in (ACCT, OTHER)}
