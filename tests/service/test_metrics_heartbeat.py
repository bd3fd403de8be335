"""Heartbeat metrics, from the same events as the alert: a 1/0 gauge per rule and a counter of
losses (a loss said again while still stale counts once)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from guard.service.metrics import Metrics


def samples(m: Metrics) -> dict[tuple[str, str], float]:
    out = {}
    for family in text_string_to_metric_families(m.exposition().decode()):
        for s in family.samples:
            if s.name.startswith("ssi_guard_heartbeat") and not s.name.endswith("_created"):
                out[(s.name, s.labels.get("rule", ""))] = s.value
    return out


def test_gauge_and_losses_per_rule() -> None:
    m = Metrics()
    m.declare_heartbeats(["strategy-a", "strategy-b", "strategy-c"])
    assert samples(m) == {
        ("ssi_guard_heartbeat_stale", "strategy-a"): 0,
        ("ssi_guard_heartbeat_stale", "strategy-b"): 0,
        ("ssi_guard_heartbeat_stale", "strategy-c"): 0,
        ("ssi_guard_heartbeat_losses_total", "strategy-a"): 0,
        ("ssi_guard_heartbeat_losses_total", "strategy-b"): 0,
        ("ssi_guard_heartbeat_losses_total", "strategy-c"): 0,
    }
    for event in [
        {"event": "heartbeat.lost", "rule": "strategy-a", "age_s": 11.0},
        {"event": "heartbeat.lost", "rule": "strategy-a", "age_s": 12.0},  # still the same loss
        {"event": "heartbeat.lost", "rule": "strategy-b", "age_s": None},
        {"event": "heartbeat.resumed", "rule": "strategy-a", "lost_for_s": 5.0},
        {"event": "heartbeat.lost", "rule": "strategy-a", "age_s": 10.5},  # a second loss
        {"event": "heartbeat.resumed", "rule": "strategy-a", "lost_for_s": 1.0},
        {"event": "heartbeat.resumed", "rule": "strategy-c", "lost_for_s": 1.0},  # never lost
    ]:
        m(None, "info", event)
    assert samples(m) == {
        ("ssi_guard_heartbeat_stale", "strategy-a"): 0,
        ("ssi_guard_heartbeat_stale", "strategy-b"): 1,
        ("ssi_guard_heartbeat_stale", "strategy-c"): 0,
        ("ssi_guard_heartbeat_losses_total", "strategy-a"): 2,
        ("ssi_guard_heartbeat_losses_total", "strategy-b"): 1,
        ("ssi_guard_heartbeat_losses_total", "strategy-c"): 0,
    }
    m.declare_heartbeats(["strategy-b"])  # declaring again (a reload) keeps what is true
    assert samples(m)[("ssi_guard_heartbeat_stale", "strategy-b")] == 1
