"""Wording a verdict: the reason texts of the rules that matched, built when they are read.

``evaluate`` decides; this module only says it in words, from each rule's trigger kind
(``guard.evaluate.kinds``). An ``OrderTrigger`` reason (``age 17m12s >= 15m``) differs for
every order, a ``BookTrigger`` reason (``14:25:00 is 5m before HOSE ATC``, ``fixed sweep at
11:25``) is the same for every order on a board, so one ``str.format`` template per (verdict,
board) with the order's age as its blank words a decision in one call. Pure: the same verdict,
order and board always give the same text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta

from guard.config.durations import format_duration
from guard.config.schema import Rule
from guard.evaluate.kinds import OrderTrigger, format_literal, kind_of
from guard.market.calendar import Board
from guard.model import BookOrder, Match

__all__ = ["RuleWording", "age_text"]

_INT_SECONDS = 2**31  # below this, int(td.total_seconds()) == td.days * 86400 + td.seconds


def age_text(age: timedelta) -> str:
    """``format_duration(age)``, by integer arithmetic where that is provably the same text.

    Called for every aged decision a sweep words, so it skips ``format_duration``'s float and
    generator. Below 2**31 s a float keeps sub-second parts far finer than the gap to the next
    whole second, so truncating ``total_seconds()`` gives exactly days * 86400 + seconds;
    anything else (a sub-second age, an absurd one) takes the general path.
    """
    seconds = age.days * 86_400 + age.seconds
    if not 0 < seconds < _INT_SECONDS:
        return format_duration(age)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    text = f"{hours}h" if hours else ""
    if minutes:
        text += f"{minutes}m"
    if seconds:
        text += f"{seconds}s"
    return text


class RuleWording:
    """The ``Wording`` of one ``evaluate`` call: names and reasons of its verdicts' rules.

    ``trigger_reason(i, board)`` gives BookTrigger rule ``i``'s reason; an OrderTrigger rule's
    reason is its kind's template filled with the order's age, elapsed since ``input_time``.
    """

    __slots__ = ("_aged", "_names", "_now", "_rules", "_templates", "_trigger_reason")

    def __init__(
        self,
        rules: Sequence[Rule],
        trigger_reason: Callable[[int, Board | None], str | None],
        now: datetime,
    ) -> None:
        self._rules = rules
        self._trigger_reason = trigger_reason
        self._now = now.astimezone(UTC)  # an age is elapsed time, whatever the zones
        # rule index -> its OrderTrigger reason template (``{0}``: the order's age)
        self._aged: dict[int, str] = {}
        for i, rule in enumerate(rules):
            kind = kind_of(rule)
            if isinstance(kind, OrderTrigger):
                self._aged[i] = kind.template(rule)
        self._names: dict[int, tuple[str, ...]] = {0: ()}
        self._templates: dict[tuple[int, Board | None], tuple[str, bool]] = {}

    def names(self, mask: int) -> tuple[str, ...]:
        """The names of the rules in ``mask``, in rule order."""
        names = self._names.get(mask)
        if names is None:
            names = self._names[mask] = tuple(self._rules[i].name for i in _bits(mask))
        return names

    def matches(self, mask: int, order: BookOrder, board: Board | None) -> tuple[Match, ...]:
        """Each rule in ``mask`` with why it selected ``order`` (on ``board``)."""
        out = []
        age = ""
        for i in _bits(mask):
            template = self._aged.get(i)
            if template is None:
                reason = self._fired(i, board)
            else:
                age = age or age_text(self._now - order.input_time)
                reason = template.format(age)
            out.append(Match(self._rules[i].name, reason))
        return tuple(out)

    def text(self, mask: int, order: BookOrder, board: Board | None) -> str:
        """The reasons of ``matches`` joined by ``"; "``: one template per (mask, board), with
        the order's age as its one blank. What a sweep journals for every decision."""
        template = self._templates.get((mask, board))
        if template is None:
            template = self._templates[mask, board] = self._template(mask, board)
        text, aged = template
        return text.format(age_text(self._now - order.input_time)) if aged else text

    def _template(self, mask: int, board: Board | None) -> tuple[str, bool]:
        """The reasons joined for ``str.format``: ``{0}`` where the age goes, braces escaped;
        and whether any is aged (else the text is used as is, so it is kept unescaped)."""
        parts = []
        book = []
        for i in _bits(mask):
            template = self._aged.get(i)
            if template is None:
                reason = self._fired(i, board)
                parts.append(format_literal(reason))
                book.append(reason)
            else:
                parts.append(template)
        if len(book) == len(parts):
            return "; ".join(book), False
        return "; ".join(parts), True

    def _fired(self, index: int, board: Board | None) -> str:
        reason = self._trigger_reason(index, board)
        if reason is None:  # a verdict worded for a board its rule did not fire on
            raise ValueError(f"rule {self._rules[index].name!r} did not fire on {board}")
        return reason


def _bits(mask: int) -> Iterator[int]:
    """The indexes of the set bits, lowest (first rule) first."""
    while mask:
        low = mask & -mask
        mask ^= low
        yield low.bit_length() - 1
