"""A journal holding one realistic exchange day (and a little of the days around it)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from kit.report import DAY, at

from guard.record.journal import Journal


def write_day(j: Journal) -> None:
    """Monday 23 Nov 2026: five cancels on 0001234 (two rules, one order matched by both), a
    failed and an unconfirmed one, one with no outcome yet, futures margin on 0005678, a
    breaker trip, a missed pre-close sweep, two heartbeat losses (one back, one not), an order
    given up on. A cancel and a trip of the day before and after must not count."""
    s = j.start_sweep(at(10, 0, 1), "poll", at(10, 0), False)
    j.decisions(s, [("0001234", "1", "SSI", "QU", 1000, "stale", "", None, "cancel"),
                    ("0001234", "2", "HPG", "PF", 600, "stale,close", "", None, "cancel"),
                    ("0001234", "3", "FPT", "QU", 300, "stale", "", None, "cancel"),
                    ("0001238", "4", "SHS", "QU", 2000, "stale", "", None, "cancel"),
                    ("0001238", "5", "PVS", "QU", 400, "stale", "", None, "cancel")])
    ids = j.intents(s, at(10, 0, 1), "k1", [
        ("0001234", "1", "stale", "26900", "B", "LO", 1000, 0),
        ("0001234", "2", "stale,close", "26300", "B", "LO", 600, 400),
        ("0001234", "3", "stale", "96000", "S", "LO", 300, 0),
        ("0001238", "4", "stale", "14000", "B", "LO", 2000, 0),
        ("0001238", "5", "stale", "33500", "S", "LO", 400, 0)])
    j.outcome(ids[0], at(10, 0, 2), "0001234", "1", "cancelled", 1000, "CL", "")
    j.outcome(ids[1], at(10, 0, 2), "0001234", "2", "partially_cancelled", 600, "CL", "")
    j.outcome(ids[2], at(10, 0, 2), "0001234", "3", "filled_first", 0, "FF", "filled first")
    j.outcome(ids[3], at(10, 0, 2), "0001238", "4", "unconfirmed", 0, "",
              "no final status within 30s")
    j.outcome(ids[4], at(10, 0, 2), "0001238", "5", "failed", 0, "RJ", "broker refused")
    j.event(at(10, 0, 3), at(10, 0, 3), "cash.released", "0001234", None,
            {"withdrawable_delta": "42780000", "basis": "equity"})
    j.event(at(10, 0, 3), at(10, 0, 3), "cash.released", "0001238", None,
            {"withdrawable_delta": "-5000", "basis": "equity"})  # a mismatch: not released
    s2 = j.start_sweep(at(14, 25, 1), "pre-close:close", at(14, 25), False)
    [late] = j.intents(s2, at(14, 25, 1), "k2",
                       [("0005678", "9", "close", "1352", "B", "LO", 2, 0)])
    j.outcome(late, at(14, 25, 2), "0005678", "9", "cancelled", 2, "CL", "")
    [open_] = j.intents(s2, at(14, 25, 1), "k2",
                        [("0001234", "7", "close", "57500", "B", "LO", 300, 0)])
    j.event(at(14, 25, 3), at(14, 25, 3), "cash.released", "0005678", None,
            {"withdrawable_delta": "45968000", "basis": "derivative", "expected": None})
    j.event(at(11, 0), at(11, 0), "breaker.tripped", None, None,
            {"matches": 250, "limit": 200, "rules": {"stale": 250}})
    j.event(at(14, 26), at(14, 26), "schedule.missed", None, None,
            {"job": "pre-close:close", "scheduled": "2026-11-23T14:25:00+07:00",
             "critical": True})
    j.event(at(9, 30), at(9, 30), "heartbeat.lost", None, "strategy-a",
            {"rule": "strategy-a", "file": "/run/a/hb", "stale_since": "2026-11-23T02:29:58+00:00",
             "age_s": 12.0})
    j.event(at(9, 30, 5), at(9, 30, 5), "heartbeat.lost", None, "strategy-a",  # said again
            {"rule": "strategy-a", "file": "/run/a/hb", "stale_since": "2026-11-23T02:29:58+00:00",
             "age_s": 17.0})
    j.event(at(9, 32), at(9, 32), "heartbeat.resumed", None, "strategy-a",
            {"rule": "strategy-a", "lost_for_s": 125.2})
    j.event(at(13, 5), at(13, 5), "heartbeat.lost", None, "strategy-b",
            {"rule": "strategy-b", "file": "/run/b/hb", "stale_since": "2026-11-23T06:04:50+00:00",
             "age_s": None})
    j.event(at(13, 6), at(13, 6), "cancel.given_up", "0001238", None,
            {"account": "0001238", "order_id": "4", "symbol": "SHS", "unconfirmed": 3})
    for other in (DAY - timedelta(days=1), DAY + timedelta(days=1)):  # not this day
        so = j.start_sweep(at(10, 0, day=other), "poll", at(10, 0, day=other), False)
        [i] = j.intents(so, at(10, 0, day=other), "kx",
                        [("0001234", "99", "stale", "1000", "B", "LO", 1, 0)])
        j.outcome(i, at(10, 0, day=other), "0001234", "99", "cancelled", 1, "CL", "")
        j.event(at(10, 0, day=other), at(10, 0, day=other), "breaker.tripped", None, None,
                {"matches": 9, "limit": 1})
    assert open_


@pytest.fixture
def day_journal(tmp_path: Path) -> Iterator[Path]:
    """The state directory's journal.sqlite3, written and closed."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    path = state / "journal.sqlite3"
    j = Journal(path)
    try:
        write_day(j)
    finally:
        j.close()
    yield path
