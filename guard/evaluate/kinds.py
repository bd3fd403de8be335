"""Trigger kinds as a table: one class per rules.yaml trigger (``max_age``, ``before_close``,
``at``, ``heartbeat``), owning everything the engine knows about it.

A kind owns its schema ``field`` (the attribute of ``Rule`` that holds it), its check, its
reason wording and the hold kinds it can produce. The engine, ``_compiled`` and ``wording``
ask ``kind_of(rule)`` and branch only on the two ways a check can be compiled:

- ``OrderTrigger``: decided per order, by its ``input_time`` alone. The kind gives a cutoff
  instant for this ``now``; it fires for an order whose ``input_time`` is at or before it. The
  engine finds an order among all such cutoffs with one ``bisect``. Its reason is a template
  with the order's age as its one blank.
- ``BookTrigger``: the same answer for every order on one board at one instant, so it is
  asked once per board per ``evaluate`` and gives the reason text, or None. It may also read
  ``signals``: facts about the world outside the book that the edge measured for this
  ``evaluate`` (which heartbeat rules are stale, and why), keyed by rule name.

Adding a trigger is a field in ``guard/config/schema.py`` (and its ``_TRIGGERS``), one class
here passed to ``register``, and its section in ``docs/rules-reference.md``.
``tests/evaluate/test_trigger_kinds.py`` fails while a schema trigger has no class, and ``register``
refuses a kind the fast path cannot compile: it fails at import rather than never matching.

Pure: no clock, no I/O. Semantics of the kinds are in their docstrings and in
``docs/rules-reference.md`` ("Trigger semantics and boundaries").
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import ClassVar, Final

from guard.clock import EXCHANGE_TZ
from guard.config.durations import format_duration
from guard.config.schema import Rule
from guard.market.calendar import Board, MarketCalendar
from guard.model import HoldKind

__all__ = [
    "KINDS",
    "At",
    "BeforeClose",
    "BookTrigger",
    "Heartbeat",
    "MaxAge",
    "OrderTrigger",
    "TriggerKind",
    "format_literal",
    "kind_of",
    "register",
]


class TriggerKind(ABC):
    """One trigger of rules.yaml. Subclass ``OrderTrigger`` or ``BookTrigger``, not this."""

    field: ClassVar[str]
    """The ``Rule`` attribute that holds this trigger (the rules.yaml key)."""

    holds: ClassVar[frozenset[HoldKind]] = frozenset()
    """The hold kinds this trigger's own check can produce. None of today's kinds holds an
    order back (every hold applies whatever rule matched, see ``engine``), and the engine has
    no path for a kind's own hold, so ``register`` refuses a kind that declares one."""


class OrderTrigger(TriggerKind):
    """Fires for an order whose ``input_time`` is at or before ``cutoff(rule, now)``."""

    @abstractmethod
    def cutoff(self, rule: Rule, now: datetime) -> datetime | None:
        """The latest ``input_time`` that fires at ``now`` (UTC in, exchange time out), or
        None when no order can fire (no datetime is that early)."""

    @abstractmethod
    def template(self, rule: Rule) -> str:
        """The reason as a ``str.format`` template whose ``{0}`` is the order's age, written
        like a duration (``17m12s``); literal braces doubled."""


class BookTrigger(TriggerKind):
    """Fires for every order on a board, or none, at one instant."""

    @abstractmethod
    def reason(
        self, rule: Rule, local: datetime, calendar: MarketCalendar, board: Board | None,
        signals: Mapping[str, str],
    ) -> str | None:
        """Why ``rule`` fires on ``board`` (None: unknown) at ``local`` (exchange time), or
        None if it does not. ``signals`` maps a rule name to why it is signalled now."""


class MaxAge(OrderTrigger):
    """``max_age``: fires when ``now - input_time >= max_age``, the real time elapsed.

    ``>=`` so that the instant an order turns stale, ``input_time + max_age``, is stale: a
    half-open ``[t, oo)`` like every other window, which the scheduler can fire at exactly.
    Reason: ``age 17m12s >= 15m``.
    """

    field = "max_age"

    def cutoff(self, rule: Rule, now: datetime) -> datetime | None:
        # Computed in UTC, so a clock change in now's zone cannot shift it, then shown in
        # exchange time, the zone of every broker input_time, so that comparing them is a plain
        # field compare. Exact while no clock change of Asia/Ho_Chi_Minh lies between them:
        # none since 1975, and a cutoff is at most the 366 days rules.yaml allows before now.
        assert rule.max_age is not None
        try:
            return (now.astimezone(UTC) - rule.max_age).astimezone(EXCHANGE_TZ)
        except OverflowError:  # older than any datetime: no order can be that old
            return None

    def template(self, rule: Rule) -> str:
        assert rule.max_age is not None
        return "age {0} >= " + format_literal(format_duration(rule.max_age))


class BeforeClose(BookTrigger):
    """``before_close``: fires in ``[cutoff - before_close, cutoff)``, where ``cutoff`` is the
    board's last cancel chance that day (``MarketCalendar.cancel_cutoff``: 14:30 HOSE, HNX and
    DER, 15:00 UPCoM). Never on a non-trading day or an unknown board.
    Reason: ``14:25:00 is 5m before HOSE ATC`` (``... before UPCOM close`` on UPCoM).
    """

    field = "before_close"

    def reason(
        self, rule: Rule, local: datetime, calendar: MarketCalendar, board: Board | None,
        signals: Mapping[str, str],
    ) -> str | None:
        assert rule.before_close is not None
        if board is None:
            return None
        cutoff = calendar.cancel_cutoff(board, local.date())
        if cutoff is not None and cutoff - rule.before_close <= local < cutoff:
            what = "close" if board is Board.UPCOM else "ATC"
            left = format_duration(cutoff - local)
            return f"{local:%H:%M:%S} is {left} before {board.value} {what}"
        return None


class At(BookTrigger):
    """``at``: fires in ``[at, at + at_window)`` on trading days, whatever the board.

    ``at_window`` defaults to 60s, so that a sweep fired at 11:25:00 and run a few seconds late
    still matches, and polls during the next minute see the same answer.
    Reason: ``fixed sweep at 11:25`` (the first listed time whose window holds now).
    """

    field = "at"

    def reason(
        self, rule: Rule, local: datetime, calendar: MarketCalendar, board: Board | None,
        signals: Mapping[str, str],
    ) -> str | None:
        if not calendar.is_trading_day(local.date()):
            return None
        for at in rule.at or ():
            start = datetime.combine(local.date(), at, tzinfo=EXCHANGE_TZ)
            if start <= local < start + rule.at_window:
                shown = at.isoformat("seconds" if at.second else "minutes")
                return f"fixed sweep at {shown}"
        return None


class Heartbeat(BookTrigger):
    """``heartbeat``: fires while the edge reports the rule's heartbeat stale (``signals``
    holds its name), for every order its ``match`` passes, whatever its age or board. The
    engine's holds still apply: in a banned window the orders are held, not sent.

    Staleness is measured outside the pure core (``guard.snapshot.heartbeat``), on the host's
    wall clock; the signal's text is the reason (``heartbeat /run/a/hb stale since 10:00:03``).
    """

    field = "heartbeat"

    def reason(
        self, rule: Rule, local: datetime, calendar: MarketCalendar, board: Board | None,
        signals: Mapping[str, str],
    ) -> str | None:
        return signals.get(rule.name)


_KINDS: dict[str, TriggerKind] = {}
KINDS: Final[Mapping[str, TriggerKind]] = MappingProxyType(_KINDS)
"""rules.yaml trigger key -> its kind."""


def register(kind: TriggerKind) -> TriggerKind:
    """Add ``kind`` to ``KINDS``, refusing one that would silently never match.

    The fast path compiles only ``OrderTrigger`` and ``BookTrigger``; ``field`` must be an
    attribute of ``Rule``; a field has one kind; a kind's own holds have no engine path.
    """
    name = type(kind).__name__
    if not isinstance(kind, OrderTrigger | BookTrigger):
        raise TypeError(f"trigger kind {name} has no compile support: subclass OrderTrigger "
                        "or BookTrigger")
    field = getattr(kind, "field", None)
    if not isinstance(field, str) or field not in Rule.model_fields:
        raise ValueError(f"trigger kind {name}: field {field!r} is not an attribute of Rule")
    if field in _KINDS:
        raise ValueError(f"trigger kind {name}: {field!r} already has "
                         f"{type(_KINDS[field]).__name__}")
    if kind.holds:
        raise ValueError(f"trigger kind {name} declares holds, which the engine cannot apply")
    _KINDS[field] = kind
    return kind


def kind_of(rule: Rule) -> TriggerKind:
    """The kind of ``rule``'s trigger; a trigger with no kind is a bug, raised at once."""
    trigger = rule.trigger
    try:
        return _KINDS[trigger]
    except KeyError:
        raise LookupError(f"rule {rule.name!r}: trigger {trigger!r} has no kind in "
                          "guard.evaluate.kinds") from None


def format_literal(text: str) -> str:
    """``text`` as a literal inside a ``str.format`` template."""
    return text.replace("{", "{{").replace("}", "}}")


register(MaxAge())
register(BeforeClose())
register(At())
register(Heartbeat())
