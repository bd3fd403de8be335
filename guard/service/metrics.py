"""Prometheus metrics, fed by the guard's own log events.

The sweep already logs every decision, cancel, confirmation and cash release; ``Metrics`` is a
structlog processor that counts those events as they pass, so the numbers on ``/metrics`` can
never disagree with the log. Gauges that describe state (token, schedule) are refreshed at
scrape time by ``refresh``. Every series name starts with ``ssi_guard_``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, MutableMapping
from datetime import datetime
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from guard.model import HoldKind
from guard.record.log import Observer

__all__ = ["HELD_LABELS", "Metrics", "held_label"]

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)

# The engine's ``HoldKind`` values, which ``order.held`` carries as ``hold``: the only labels of
# ssi_guard_orders_held_total (README lists them; tests/service/test_metrics.py holds it to).
HELD_LABELS: Final = tuple(kind.value for kind in HoldKind)
_OTHER: Final = HoldKind.OTHER.value


def held_label(event: Mapping[str, Any]) -> str:
    """The bounded label of an ``order.held`` event: its ``hold`` field, the engine's
    ``HoldKind`` (the reason text itself has unbounded values). A value that is not a
    ``HoldKind`` counts as ``other``, so the label set stays the documented one."""
    label = str(event.get("hold"))
    return label if label in HELD_LABELS else _OTHER


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


class Metrics(Observer):
    """The guard's series on a registry of its own (no process-global state in tests)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.sweeps = Counter("ssi_guard_sweeps", "Sweeps by result", ["result"], registry=r)
        self.matched = Counter("ssi_guard_orders_matched",
                               "Orders a rule selected (those then held back included)",
                               registry=r)
        self.held = Counter("ssi_guard_orders_held", "Matched orders held back, by reason",
                            ["reason"], registry=r)
        self.cancels = Counter("ssi_guard_cancels", "Decided cancels by final outcome",
                               ["outcome"], registry=r)
        self.cancel_latency = Histogram(
            "ssi_guard_cancel_latency_seconds", "Cancel request to broker reply",
            buckets=_LATENCY_BUCKETS, registry=r)
        self.confirm_latency = Histogram(
            "ssi_guard_confirm_latency_seconds", "Cancel sent to final status in the book",
            buckets=_LATENCY_BUCKETS, registry=r)
        self.released = Counter("ssi_guard_released_vnd", "Withdrawable cash released (VND)",
                                registry=r)
        self.api_errors = Counter("ssi_guard_api_errors", "Broker call failures by kind",
                                  ["kind"], registry=r)
        self.token_valid = Gauge("ssi_guard_token_valid", "1 while the SSI session is usable",
                                 registry=r)
        self.token_expiry = Gauge("ssi_guard_token_expiry_timestamp_seconds",
                                  "When the access token expires (epoch s)", registry=r)
        self.last_ok = Gauge("ssi_guard_last_successful_sweep_timestamp_seconds",
                             "When the last complete sweep finished (epoch s)", registry=r)
        self.next_preclose = Gauge("ssi_guard_next_preclose_sweep_timestamp_seconds",
                                   "When the next pre-close sweep fires (epoch s)", registry=r)
        self.healthy = Gauge("ssi_guard_healthy", "1 when healthy, 0 when degraded", registry=r)
        self.alerts = Counter("ssi_guard_alert_deliveries",
                              "Webhook alert deliveries by result (sent, failed try, undelivered)",
                              ["result"], registry=r)
        self.heartbeat_stale = Gauge("ssi_guard_heartbeat_stale",
                                     "1 while a heartbeat rule's file is stale or missing",
                                     ["rule"], registry=r)
        self.heartbeat_losses = Counter("ssi_guard_heartbeat_losses",
                                        "Heartbeats lost (fresh -> stale), by rule", ["rule"],
                                        registry=r)
        self._stale: set[str] = set()

    def declare_heartbeats(self, rules: Iterable[str]) -> None:
        """Show every heartbeat rule at 0 before anything happens to it, so a query or an
        alert on the series finds it from the start."""
        for rule in rules:
            self.heartbeat_stale.labels(rule).set(1 if rule in self._stale else 0)
            self.heartbeat_losses.labels(rule)

    def observe(self, event: MutableMapping[str, Any]) -> None:
        kind = event.get("event")
        if kind == "sweep.finished":
            self.sweeps.labels(str(event.get("result", "unknown"))).inc()
        elif kind in ("sweep.failed", "sweep.crashed"):
            self.sweeps.labels("failed").inc()
        elif kind == "order.matched":
            self.matched.inc()
        elif kind == "order.held":
            self.matched.inc()
            self.held.labels(held_label(event)).inc()
        elif kind in ("cancel.confirmed", "cancel.failed") and "outcome" in event:
            # The confirm step's final word: one per decided cancel. The sender's own
            # ``cancel.failed`` (no ``outcome``: "not sent") is followed by that final word,
            # so counting it too would count one cancel twice.
            self.cancels.labels(str(event["outcome"])).inc()
            if kind == "cancel.confirmed":
                self.confirm_latency.observe(_float(event.get("latency_s")))
        elif kind == "cancel.sent" and "request_s" in event:
            self.cancel_latency.observe(_float(event["request_s"]))
        elif kind == "cash.released":
            delta = _float(event.get("withdrawable_delta"))
            if delta > 0:
                self.released.inc(delta)
        elif kind == "broker.error":
            self.api_errors.labels(str(event.get("kind", "unknown"))).inc()
        elif kind == "alert.sent":
            self.alerts.labels("sent").inc()
        elif kind == "alert.delivery_failed":
            self.alerts.labels("failed").inc()
        elif kind == "alert.undelivered":
            self.alerts.labels("undelivered").inc()
        elif kind == "heartbeat.lost":
            rule = str(event.get("rule"))
            if rule not in self._stale:  # a loss repeated while still stale counts once
                self._stale.add(rule)
                self.heartbeat_losses.labels(rule).inc()
            self.heartbeat_stale.labels(rule).set(1)
        elif kind == "heartbeat.resumed":
            rule = str(event.get("rule"))
            self._stale.discard(rule)
            self.heartbeat_stale.labels(rule).set(0)

    def refresh(self, health: Mapping[str, Any], next_runs: Mapping[str, datetime]) -> None:
        """Set the state gauges from the daemon's health and schedule, just before a scrape.

        Timestamps are wall-clock epoch seconds, comparable with Prometheus' ``time()``. The
        health stamps and ``next_runs`` are in market time, which a rehearsal daemon
        (``run --at``) runs ``market_offset_s`` ahead of the wall clock: that is taken off.
        """
        offset = _float(health.get("market_offset_s"))
        expires = _float(health.get("token_expires_at"))
        self.token_expiry.set(expires)
        reauth = str(health.get("reason", "")).startswith("re-auth")
        self.token_valid.set(1 if expires > 0 and not reauth else 0)
        self.healthy.set(1 if health.get("state") == "healthy" else 0)
        last_ok = str(health.get("last_ok_sweep_at") or "")
        if last_ok:
            with contextlib.suppress(ValueError):
                self.last_ok.set(datetime.fromisoformat(last_ok).timestamp() - offset)
        preclose = [t for job, t in next_runs.items() if job.startswith("pre-close")]
        self.next_preclose.set(min(preclose).timestamp() - offset if preclose else 0)

    def exposition(self) -> bytes:
        return bytes(generate_latest(self.registry))
