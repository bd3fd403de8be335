"""``service/ops_http.py`` on its own: what /healthz and /metrics answer, read over real HTTP
on loopback, for each state the health can be in."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from guard.clock import EXCHANGE_TZ
from guard.service.metrics import Metrics
from guard.service.ops_http import OpsServer

NEXT = {"pre-close:HOSE": datetime(2026, 11, 23, 14, 25, tzinfo=EXCHANGE_TZ)}


def serve(health: Mapping[str, Any], *paths: str) -> list[httpx.Response]:
    async def main() -> list[httpx.Response]:
        server = OpsServer(Metrics(), lambda: health, lambda: NEXT)
        port = await server.start(0)
        try:
            assert port > 0 and server.port == port
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                return [await client.get(p) for p in paths]
        finally:
            await server.stop()

    return asyncio.run(main())


def test_healthz_is_200_only_when_healthy() -> None:
    [ok] = serve({"state": "healthy", "reason": ""}, "/healthz")
    assert ok.status_code == 200 and ok.json() == {"state": "healthy", "reason": ""}
    assert ok.headers["content-type"].startswith("application/json")


@pytest.mark.parametrize("state", ["starting", "degraded", "stopping", "stopped", "", "HEALTHY"])
def test_healthz_is_503_in_every_other_state_with_the_reason(state: str) -> None:
    body = {"state": state, "reason": "accounts not read: 0001238 (HTTP 503)"}
    [bad] = serve(body, "/healthz")
    assert bad.status_code == 503 and json.loads(bad.text) == body


def test_metrics_are_prometheus_text_with_health_and_the_next_sweep() -> None:
    [metrics] = serve({"state": "degraded", "reason": "x"}, "/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {s.name: s.value for f in text_string_to_metric_families(metrics.text)
               for s in f.samples}
    assert samples["ssi_guard_healthy"] == 0
    assert samples["ssi_guard_next_preclose_sweep_timestamp_seconds"] == (
        NEXT["pre-close:HOSE"].timestamp())


def test_it_listens_on_loopback_only() -> None:
    async def main() -> str:
        server = OpsServer(Metrics(), lambda: {"state": "healthy"}, lambda: {})
        await server.start(0)
        try:
            assert server._runner is not None
            [site] = server._runner.sites
            return str(site.name)
        finally:
            await server.stop()

    assert asyncio.run(main()).startswith("http://127.0.0.1:")
