"""The dead-man switch's eyes: which heartbeat rules are stale now, measured on the host.

A strategy proves it is alive by touching a file; a heartbeat rule is stale when that file is
missing, or when ``wall_now - mtime >= stale_after``, so the instant it turns stale is exactly
``mtime + stale_after`` (half-open, like every window of the guard). File mtimes are wall time,
so staleness is judged on the host's wall clock (``wall``, ``time.time``), never on the market
clock: a rehearsal with ``--at`` still judges heartbeats in real time.

The wall clock can jump (an NTP step, an operator's ``date``), so the watch also notes, on the
monotonic clock, when it last saw each file's mtime change, and believes the wall only within
``JUMP_SLACK_S`` of that: a file the guard saw touched a second ago is not stale because the
wall jumped forward, and a file whose mtime lies in the future (the wall jumped back) is stale
once it has not changed for ``stale_after`` by the monotonic clock.

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

# How far the wall's age of a file may differ from the monotonic clock's before the wall is
# taken to have jumped (the two drift apart by well under a millisecond a second otherwise).
JUMP_SLACK_S = 0.25


def _clocks_agree(wall_age_s: float, unchanged_s: float) -> bool:
    """Whether the wall's age of a file and the time since the watch saw it change agree."""
    return abs(wall_age_s - unchanged_s) <= JUMP_SLACK_S


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
    judged_from: float  # monotonic instant the grace ends: not judged before it
    stale_since: float | None = None  # set while stale
    reason: str | None = None  # set while stale
    seen_mtime: float | None = None  # the mtime at the last look
    seen_at: float = -math.inf  # monotonic instant the mtime was last seen to change
    warned_mtime: float | None = None  # the mtime a clock warning was last given for
    looked_at: float | None = None  # monotonic instant of the last look at this file


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
                 grace: bool = True,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        """``grace=False`` judges every rule from the first look: for a one-shot run
        (``run --once``, ``check``), which has no start to wait from."""
        self._wall = wall
        self._mono = monotonic
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
        now, mono = self._wall(), self._mono()
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
                start = mono if self._grace else mono - stale_after
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
        mono = self._mono()
        for w in self._watched.values():
            mtime, unreadable = self._mtime(w.file)
            if mtime != w.seen_mtime:
                # Touched since the last look, so at most that long ago (the wall may have
                # jumped since); on the first look, as long ago as the wall says.
                age = 0.0 if mtime is None else max(0.0, now - mtime)
                if w.looked_at is not None:
                    age = min(age, mono - w.looked_at)
                w.seen_mtime, w.seen_at = mtime, mono - age
            w.looked_at = mono
            if mono < w.judged_from:  # in its grace: not judged, only when it could turn
                grace_end = now + (w.judged_from - mono)
                turns = grace_end if mtime is None else mtime + w.stale_after_s
                next_change = min(next_change, max(grace_end, turns))
                continue
            unchanged = mono - w.seen_at
            fresh, wake = self._fresh(w, mtime, now, unchanged)
            if fresh:
                if w.stale_since is not None:
                    self._log.info("heartbeat.resumed", rule=w.rule,
                                   lost_for_s=round(max(0.0, now - w.stale_since), 3))
                    resumed.append(w.rule)
                    w.stale_since = w.reason = None
                next_change = min(next_change, wake)
                continue
            limit = format_duration(timedelta(seconds=w.stale_after_s))
            if mtime is not None and not _clocks_agree(now - mtime, unchanged):
                since = now - (unchanged - w.stale_after_s)
                reason = (f"heartbeat {w.file} unchanged for {limit} by the monotonic clock "
                          f"(its mtime {_clock(mtime)} disagrees with the wall: the clock "
                          "moved)")
            elif mtime is not None:
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

    def _fresh(self, w: _Watched, mtime: float | None, now: float,
               unchanged_s: float) -> tuple[bool, float]:
        """Whether ``w`` is fresh, and if so the wall instant to look again by.

        Normally the wall decides (``now < mtime + stale_after``, exact to the microsecond).
        When the wall's age of the file and the monotonic clock's (``unchanged_s``, the time
        since the watch saw the mtime change) disagree by more than ``JUMP_SLACK_S``, the
        wall has jumped, and the monotonic clock decides: fresh while the file has changed
        within ``stale_after``. It never overstates how fresh a file is (a change is dated no
        later than the look that saw it), so a live strategy is never judged dead by a jump,
        and a dead one is judged dead ``stale_after`` after its last touch, whatever the wall
        says."""
        if mtime is None:
            return False, math.inf
        limit = w.stale_after_s
        if _clocks_agree(now - mtime, unchanged_s):
            return (True, mtime + limit) if now < mtime + limit else (False, math.inf)
        self._clock_warning(w, mtime, now, "mtime in the future" if mtime > now
                            else "the wall clock moved")
        if unchanged_s < limit:
            return True, now + (limit - unchanged_s)
        return False, math.inf

    def _clock_warning(self, w: _Watched, mtime: float, now: float, why: str) -> None:
        if w.warned_mtime != mtime:
            w.warned_mtime = mtime
            self._log.warning("heartbeat.clock_mismatch", rule=w.rule, file=w.file, why=why,
                              mtime=_iso(mtime), wall_now=_iso(now),
                              judged_by="the monotonic clock, until they agree")

    def _mtime(self, path: str) -> tuple[float | None, str | None]:
        """The file's mtime, or None and why not (None: missing). A file the guard cannot
        stat is as good as missing: the switch fails towards cancelling, loudly."""
        try:
            return self._stat(path).st_mtime, None
        except (FileNotFoundError, NotADirectoryError):
            return None, None
        except OSError as exc:
            return None, type(exc).__name__

