"""What the engine returns: a ``Decision`` per live order, its ``Verdict``, and ``Match``.

Everything is decided when ``evaluate`` returns: the rules that matched each order, and what
holds it back. Only the *wording* of the reasons (``age 17m12s >= 15m``) waits until
``Decision.reason`` or ``Decision.matches`` is read (see ``guard.evaluate.wording``), so that
deciding stays cheap on every poll; a sweep then words each decision once, for its journal.
Wording is pure, so a reason read later is the same text it would have been at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple, Protocol

from guard.market.calendar import Board
from guard.model import BookOrder

__all__ = ["Decision", "Hold", "HoldKind", "Match", "Verdict", "Wording"]


class HoldKind(StrEnum):
    """What kind of hold keeps an order back: a bounded label beside the hold's text.

    The text (``protected prefix keep-``) names values without bound; the kind is what metrics
    count (``ssi_guard_orders_held_total{reason}``) and what code may branch on, so nothing
    has to read the English. The values are the metric labels.
    """

    PROTECTED = "protected"  # the client request id has a protected prefix
    BANNED_WINDOW = "banned_window"  # the calendar bans a cancel now (phase, weekend, holiday)
    ALREADY_CANCELLING = "already_cancelling"  # status WC: a cancel is pending
    NOT_CANCELLABLE = "not_cancellable"  # the status is not in ``cancellable``
    NOTHING_LEFT = "nothing_left"  # nothing unfilled and uncancelled remains
    BOARD_UNKNOWN = "board_unknown"  # neither master data nor ``boards:`` knows the symbol
    ACCOUNT_NOT_GUARDED = "account_not_guarded"  # the account is not in ``accounts``
    OTHER = "other"  # anything else (today: an input_time with no timezone)


class Hold(NamedTuple):
    """Why an order must not be cancelled now: the words, and their kind."""

    text: str
    kind: HoldKind


@dataclass(frozen=True, slots=True)
class Match:
    """A rule that selected an order, and why in words (``age 17m12s >= 15m``)."""

    rule: str
    reason: str


class Wording(Protocol):
    """Names and words the rules of a bitmask (bit ``i`` is the ``i``-th rule)."""

    def names(self, mask: int) -> tuple[str, ...]: ...

    def matches(self, mask: int, order: BookOrder, board: Board | None) -> tuple[Match, ...]: ...

    def text(self, mask: int, order: BookOrder, board: Board | None) -> str: ...


@dataclass(frozen=True, slots=True)
class Verdict:
    """The rules that matched an order: a bitmask over the rules, and what can word it.

    One ``Verdict`` is shared by every order the same rules matched in one ``evaluate`` call.
    Two are equal when they hold the same rules worded the same way (the same ``evaluate``
    call, or equal ``Verdict.of`` matches); compare ``Decision.matches`` across calls.
    """

    mask: int
    wording: Wording = field(repr=False)

    @classmethod
    def of(cls, *matches: Match) -> Verdict:
        """A verdict of matches already worded (for callers that made their own)."""
        return cls((1 << len(matches)) - 1, _Worded(matches))

    def __bool__(self) -> bool:
        return self.mask != 0

    @property
    def rules(self) -> tuple[str, ...]:
        """The names of the rules that matched, in rule order."""
        return self.wording.names(self.mask)

    def matches(self, order: BookOrder, board: Board | None) -> tuple[Match, ...]:
        """Each matched rule with why it selected ``order``, worded now."""
        return self.wording.matches(self.mask, order, board)

    def text(self, order: BookOrder, board: Board | None) -> str:
        """The reasons of ``matches`` joined by ``"; "``, worded now ("" for no match)."""
        return self.wording.text(self.mask, order, board)


@dataclass(frozen=True, slots=True)
class _Worded:
    """The ``Wording`` of ``Verdict.of``: fixed matches, one bit each."""

    _matches: tuple[Match, ...]

    def names(self, mask: int) -> tuple[str, ...]:
        return tuple(m.rule for i, m in enumerate(self._matches) if mask >> i & 1)

    def matches(self, mask: int, order: BookOrder, board: Board | None) -> tuple[Match, ...]:
        return tuple(m for i, m in enumerate(self._matches) if mask >> i & 1)

    def text(self, mask: int, order: BookOrder, board: Board | None) -> str:
        return "; ".join(m.reason for m in self.matches(mask, order, board))


class Decision(tuple[BookOrder, Board | None, Verdict, Hold | None]):
    """What the engine concluded about one order: (order, board, verdict, hold).

    ``held`` is the first reason the order must not be cancelled now, recorded even when no
    rule matched, and ``hold_kind`` its kind; ``cancel`` is true only when some rule matched
    and nothing holds it back. A tuple, because one is built for every live order on every
    poll; with no ``_replace``, because the verdict is worded for this order and board and must
    not be moved to others.
    """

    __slots__ = ()

    def __new__(
        cls,
        order: BookOrder,
        board: Board | None,
        verdict: Verdict,
        held: str | None,
        hold_kind: HoldKind | None = None,
    ) -> Decision:
        """``hold_kind`` defaults to ``OTHER`` for a hold (callers that word their own)."""
        if held is None:
            if hold_kind is not None:
                raise ValueError("a hold kind without a hold")
            return tuple.__new__(cls, (order, board, verdict, None))
        return tuple.__new__(
            cls, (order, board, verdict, Hold(held, HoldKind.OTHER if hold_kind is None
                                               else HoldKind(hold_kind))))

    def __repr__(self) -> str:
        return (f"Decision(order={self.order!r}, board={self.board!r}, "
                f"rules={self.rules!r}, held={self.held!r}, hold_kind={self.hold_kind!r})")

    @property
    def order(self) -> BookOrder:
        return self[0]

    @property
    def board(self) -> Board | None:
        return self[1]

    @property
    def verdict(self) -> Verdict:
        return self[2]

    @property
    def hold(self) -> Hold | None:
        """The hold, text and kind together; None when nothing holds the order back."""
        return self[3]

    @property
    def held(self) -> str | None:
        """The hold's text (``HOSE in ATC: cancel banned``), or None."""
        hold = self[3]
        return None if hold is None else hold.text

    @property
    def hold_kind(self) -> HoldKind | None:
        """The hold's kind (``HoldKind.BANNED_WINDOW``), or None when nothing holds it."""
        hold = self[3]
        return None if hold is None else hold.kind

    @property
    def rules(self) -> tuple[str, ...]:
        """The names of the rules that matched, in rule order."""
        return self.verdict.rules

    @property
    def matches(self) -> tuple[Match, ...]:
        """The rules that matched, each with its reason (worded on each read)."""
        return self.verdict.matches(self.order, self.board)

    @property
    def reason(self) -> str:
        """Every reason of ``matches`` joined by ``"; "`` ("" when no rule matched): the text a
        sweep logs and journals, worded from one template per verdict."""
        return self.verdict.text(self.order, self.board)

    @property
    def cancel(self) -> bool:
        """Send a cancel: some rule matched and nothing holds the order back."""
        return self[3] is None and bool(self.verdict)
