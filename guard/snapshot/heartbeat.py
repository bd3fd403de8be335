"""The dead-man switch's eyes: which heartbeat rules are stale now, measured on the host.

A strategy proves it is alive by touching a file; a heartbeat rule is stale when that file is
missing, or when ``wall_now - mtime >= stale_after``, so the instant it turns stale is exactly
``mtime + stale_after`` (half-open, like every window of the guard). File mtimes are wall time,
so staleness is judged on the host's wall clock (``wall``, ``time.time``), never on the market
clock: a rehearsal with ``--at`` still judges heartbeats in real time.

After the guard starts it judges no rule for ``stale_after``: the strategy may be starting
too. A rule added by a reload gets that grace from the reload. (A rule whose file changes is a
new rule; one whose ``stale_after`` changes keeps its grace start.)

The pure engine never sees a file: this module turns the files into ``signals`` (rule name ->
the reason an order is cancelled), which ``SweepContext.signals`` hands to ``evaluate``.
It logs ``heartbeat.lost`` once when a rule goes stale and ``heartbeat.resumed`` when it is
fresh again; alerts and metrics are built on those two events and their fields.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType

import structlog

from guard.clock import EXCHANGE_TZ
from guard.config.durations import format_duration
from guard.config.schema import Rule, RulesFile
from guard.record.log import Log

__all__ = ["HeartbeatCheck", "HeartbeatWatch", "heartbeat_rules"]

Stat = Callable[[str], os.stat_result]


def heartbeat_rules(rules: RulesFile | Iterable[Rule]) -> tuple[Rule, ...]:
    """The rules whose trigger is ``heartbeat``."""
    listed = rules.rules if isinstance(rules, RulesFile) else tuple(rules)
    return tuple(r for r in listed if r.heartbeat is not None)


def _clock(instant: float) -> str:
    return datetime.fromtimestamp(instant, EXCHANGE_TZ).strftime("%H:%M:%S")


def _iso(instant: float) -> str:
    return datetime.fromtimestamp(instant, EXCHANGE_TZ).isoformat(timespec="milliseconds")


@dataclass
class _Watched:
    """What the watch knows of one rule between checks."""

    rule: str
    file: str
    stale_after_s: float
    judged_from: float  # wall instant the grace ends: not judged before it
    stale_since: float | None = None  # set while stale
    reason: str | None = None  # set while stale


@dataclass(frozen=True)
class HeartbeatCheck:
    """One look at every heartbeat file.

    ``stale``: rule name -> reason, for every rule stale now. ``newly_stale``: the rules that
    went stale at this check (the daemon sweeps at once for them). ``next_change``: the
    earliest wall instant at which a rule not stale now can turn stale without anything
    being touched (a fresh file's ``mtime + stale_after``, or the end of a grace); None when
    there is none (no rules, or all stale: only a touch can change those, and that is seen
    by the next regular check).
    """

    stale: Mapping[str, str]
    newly_stale: tuple[str, ...] = ()
    resumed: tuple[str, ...] = ()
    next_change: float | None = None
    at: float = 0.0


class HeartbeatWatch:
    """Stats each heartbeat rule's file and keeps which rules are stale.

    ``check()`` is the only method that looks at the files; it is cheap (one ``stat`` per
    rule) and is called by the daemon's heartbeat loop at least once a second, and by every
    sweep (through ``signals``) so that a sweep decides on the files as they are at that
    moment, never on an older look.
    """

    def __init__(self, rules: RulesFile | Iterable[Rule], *, log: Log | None = None,
                 wall: Callable[[], float] = time.time, stat: Stat = os.stat,
                 grace: bool = True) -> None:
        """``grace=False`` judges every rule from the first look: for a one-shot run
        (``run --once``, ``check``), which has no start to wait from."""
        self._wall = wall
        self._grace = grace
        self._stat = stat
        self._log: Log = log or structlog.get_logger("guard")
        self._watched: dict[str, _Watched] = {}
        self.last = HeartbeatCheck(MappingProxyType({}))
        self.update_rules(rules)

    @property
    def rules(self) -> tuple[str, ...]:
        """The names of the heartbeat rules watched, in rules.yaml order."""
        return tuple(self._watched)

    def update_rules(self, rules: RulesFile | Iterable[Rule]) -> None:
        """Watch ``rules``' heartbeat rules from now on (at start, and after a reload)."""
        now = self._wall()
        watched: dict[str, _Watched] = {}
        for rule in heartbeat_rules(rules):
            assert rule.heartbeat is not None
            stale_after = rule.heartbeat.stale_after.total_seconds()
            old = self._watched.get(rule.name)
            if old is not None and old.file == rule.heartbeat.file:
                grace_start = old.judged_from - old.stale_after_s
                old.stale_after_s = stale_after
                old.judged_from = grace_start + stale_after
                watched[rule.name] = old
            else:
                if old is not None:
                    self._forget(old, now, why="heartbeat file changed by reload")
                start = now if self._grace else now - stale_after
                watched[rule.name] = _Watched(rule.name, rule.heartbeat.file, stale_after,
                                              judged_from=start + stale_after)
        for name, old in self._watched.items():
            if name not in watched:
                self._forget(old, now, why="rule removed by reload")
        self._watched = watched

    def _forget(self, old: _Watched, now: float, why: str) -> None:
        """A stale rule that stops being watched ends its loss (an alert must not stay
        firing for a rule that no longer exists)."""
        if old.stale_since is not None:
            self._log.info("heartbeat.resumed", rule=old.rule,
                           lost_for_s=round(max(0.0, now - old.stale_since), 3), reason=why)

    def signals(self) -> Mapping[str, str]:
        """``SweepContext.signals``: look now, and name the stale rules with their reasons."""
        return self.check().stale

    def check(self) -> HeartbeatCheck:
        """Stat every file, log what changed, and say what is stale now."""
        now = self._wall()
        stale: dict[str, str] = {}
        newly: list[str] = []
        resumed: list[str] = []
        next_change = math.inf
        for w in self._watched.values():
            mtime, unreadable = self._mtime(w.file)
            if now < w.judged_from:  # in its grace: not judged, only when it could turn
                turns = w.judged_from if mtime is None else mtime + w.stale_after_s
                next_change = min(next_change, max(w.judged_from, turns))
                continue
            if mtime is not None and now < mtime + w.stale_after_s:
                if w.stale_since is not None:
                    self._log.info("heartbeat.resumed", rule=w.rule,
                                   lost_for_s=round(max(0.0, now - w.stale_since), 3))
                    resumed.append(w.rule)
                    w.stale_since = w.reason = None
                next_change = min(next_change, mtime + w.stale_after_s)
                continue
            limit = format_duration(timedelta(seconds=w.stale_after_s))
            if mtime is not None:
                since = mtime + w.stale_after_s
                reason = (f"heartbeat {w.file} stale since {_clock(since)} "
                          f"(last touched {_clock(mtime)}, stale_after {limit})")
            else:
                # When a file vanished is not known: it is stale from the first look that
                # finds it gone (or from the end of the grace, if it never existed).
                since = w.stale_since if w.stale_since is not None else now
                what = f"unreadable ({unreadable})" if unreadable else "missing"
                reason = f"heartbeat {w.file} {what} (stale_after {limit})"
            if w.stale_since is None:
                self._log.warning("heartbeat.lost", rule=w.rule, file=w.file,
                                  stale_since=_iso(since),
                                  age_s=None if mtime is None else round(now - mtime, 3))
                newly.append(w.rule)
                w.stale_since = since
            w.reason = reason
            stale[w.rule] = reason
        self.last = HeartbeatCheck(MappingProxyType(stale), tuple(newly), tuple(resumed),
                                   None if next_change == math.inf else next_change, now)
        return self.last

    def _mtime(self, path: str) -> tuple[float | None, str | None]:
        """The file's mtime, or None and why not (None: missing). A file the guard cannot
        stat is as good as missing: the switch fails towards cancelling, loudly."""
        try:
            return self._stat(path).st_mtime, None
        except (FileNotFoundError, NotADirectoryError):
            return None, None
        except OSError as exc:
            return None, type(exc).__name__

