"""Helpers for the issue-7 tests (alerts, metrics, /healthz): a webhook receiver on loopback,
a daemon run in-process on the simulator with ``operations`` around it, and an event recorder.

Everything is real: the guard's sweeps go through the real ``ssi_sdk`` over HTTP to the
simulator, alerts are POSTed over HTTP to the receiver, /metrics is scraped over HTTP.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from aiohttp import web

from guard.clock import Clock
from guard.record.log import add_observers, remove_observers
from guard.schedule.triggers import JobSpec
from guard.service.daemon import Daemon
from guard.service.ops import Ops, operations
from guard.service.runtime import open_guard
from guard.simulator.control import Simulator
from kit import ACCT, OTHER

Mode = Literal["ok", "hang", "error"]


def rules_yaml(*, webhook: str | None = None, fmt: str = "generic", max_cancels: int = 200,
               confirm_timeout: str = "5s", before_close: bool = False,
               holidays: tuple[str, ...] = ()) -> str:
    """A live rules.yaml over both test accounts: ``stale`` cancels orders older than 15m."""
    text = f"""
version: 1
accounts: ["{ACCT}", "{OTHER}"]
dry_run: false
limits:
  max_cancels_per_sweep: {max_cancels}
  confirm_timeout: {confirm_timeout}
"""
    if holidays:
        text += "holidays: [" + ", ".join(f'"{d}"' for d in holidays) + "]\n"
    if webhook:
        text += f'alerts:\n  webhook: "{webhook}"\n  format: {fmt}\n'
    text += "rules:\n  - name: stale\n    max_age: 15m\n"
    if before_close:
        text += "  - name: close\n    before_close: 5m\n"
    return text


@dataclass
class Hit:
    path: str
    query: dict[str, str]
    body: dict[str, Any]
    at: float


class Receiver:
    """A webhook endpoint on 127.0.0.1 that records every POST.

    ``mode``: ``ok`` answers 200, ``error`` answers 500, ``hang`` sleeps ``hang_s`` (past any
    sane client timeout) before answering.
    """

    def __init__(self, mode: Mode = "ok", hang_s: float = 30.0) -> None:
        self.mode = mode
        self.hang_s = hang_s
        self.hits: list[Hit] = []
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def url(self, path: str = "/hook", query: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}" + (f"?{query}" if query else "")

    async def _handle(self, request: web.Request) -> web.Response:
        body = json.loads(await request.text())
        self.hits.append(Hit(request.path, dict(request.query), body, time.monotonic()))
        if self.mode == "hang":
            await asyncio.sleep(self.hang_s)
        if self.mode == "error":
            return web.Response(status=500, text="boom")
        return web.json_response({"ok": True})

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [h.body for h in self.hits]

    def seen(self) -> list[tuple[Any, Any]]:
        """(condition, state) of every generic-format body received, in order."""
        return [(b.get("condition"), b.get("state")) for b in self.bodies]

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Wait (deadline, not a sleep) until ``count`` bodies have arrived."""
        await until(lambda: len(self.hits) >= count, timeout)
        return self.bodies


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``predicate`` every 10 ms inside the loop; fail if ``timeout`` passes first."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.01)


@dataclass
class Events:
    """A structlog observer that keeps a copy of every event dict."""

    seen: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, logger: Any, name: str,
                 event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        self.seen.append(dict(event))
        return event

    def named(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.seen if e.get("event") == name]


@asynccontextmanager
async def recording() -> AsyncIterator[Events]:
    events = Events()
    add_observers(events)
    try:
        yield events
    finally:
        remove_observers(events)


def write_rules(directory: Path, rules: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "rules.yaml"
    path.write_text(rules, encoding="utf-8")
    return path


@asynccontextmanager
async def running_guard(sim: Simulator, tmp_path: Path, rules: str, clock: Clock, *,
                        metrics_port: int | None = 0, start: bool = True,
                        daemon_opts: dict[str, Any] | None = None,
                        **ops_opts: Any) -> AsyncIterator[tuple[Daemon, Ops]]:
    """open_guard -> Daemon -> operations(...) -> daemon.start(), all in this event loop."""
    rules_path = write_rules(tmp_path, rules)
    env = {**sim.env(), "SSI_GUARD_STATE_DIR": str(tmp_path / "state")}
    async with open_guard(rules_path, env=env, clock=clock) as ctx:
        daemon = Daemon(ctx, rules_path, **(daemon_opts or {}))
        async with operations(daemon, metrics_port=metrics_port, **ops_opts) as ops:
            if start:
                await daemon.start()
            yield daemon, ops


def job(daemon: Daemon, job_id: str = "poll") -> JobSpec:
    return next(j for j in daemon.jobs if j.job_id == job_id)
