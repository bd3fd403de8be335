"""``/metrics`` and ``/healthz`` on 127.0.0.1, for Prometheus and load-balancer style checks.

``/healthz`` answers 200 with the health as JSON when healthy, 503 with the reason when not.
It binds loopback only: the guard exposes nothing to the network.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from aiohttp import web
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from guard.service.metrics import Metrics

__all__ = ["OpsServer"]


class OpsServer:
    def __init__(self, metrics: Metrics, health: Callable[[], Mapping[str, Any]],
                 next_runs: Callable[[], Mapping[str, datetime]]) -> None:
        self.metrics = metrics
        self.health = health
        self.next_runs = next_runs
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self, port: int, host: str = "127.0.0.1") -> int:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = int(sockets[0].getsockname()[1]) if sockets else port
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, request: web.Request) -> web.Response:
        self.metrics.refresh(self.health(), self.next_runs())
        # The versioned text format: Prometheus 3 refuses a scrape whose type it cannot tell.
        return web.Response(body=self.metrics.exposition(),
                            headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4,
                                     "X-Content-Type-Options": "nosniff"})

    async def _healthz(self, request: web.Request) -> web.Response:
        health = dict(self.health())
        status = 200 if health.get("state") == "healthy" else 503
        return web.Response(status=status, text=json.dumps(health, default=str, sort_keys=True),
                            content_type="application/json")
