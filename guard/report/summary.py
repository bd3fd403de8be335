"""The day's report: what the guard did on one exchange day, from the journal's rows.

Pure: ``summarise`` turns the day's cancel intents (with their latest outcomes) and recorded
events into a ``DaySummary``; ``render`` words it in English or Vietnamese. ``ssi-guard
report``, the daily alert and the demo all print this same text.

Per account: cancels by outcome, cash released (the sum of the positive withdrawable changes
the sweeps measured, ``cash.released``; futures margin apart, for a derivatives account), and
every cancel that failed, went unconfirmed or has no outcome yet. Per rule: cancels by
outcome (an order two rules selected counts under both). Then the breaker trips, missed
sweeps, heartbeat losses and orders given up on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from guard.clock import exchange_time
from guard.record.journal import CancelRow, EventRow
from guard.report import i18n
from guard.report.i18n import Language

__all__ = ["OUTCOME_ORDER", "AccountDay", "DaySummary", "Loss", "render", "summarise"]

# The confirm step's outcomes in the order a person reads them, then "no outcome yet".
OUTCOME_ORDER: Final = ("cancelled", "partially_cancelled", "filled_first", "already_done",
                        "failed", "unconfirmed", "pending")
_CANCELLED: Final = ("cancelled", "partially_cancelled")
_PROBLEMS: Final = ("failed", "unconfirmed", "pending")

# A report is read by a person (and sent as one chat message): events that can repeat all
# day (a breaker tripping every poll) are counted in full but listed only this far.
LISTED = 10


@dataclass
class AccountDay:
    account: str
    outcomes: Counter[str] = field(default_factory=Counter)
    by_rule: dict[str, Counter[str]] = field(default_factory=dict)
    released: Decimal = Decimal(0)
    margin: Decimal = Decimal(0)  # futures margin released (a derivatives account)
    problems: list[CancelRow] = field(default_factory=list)


@dataclass(frozen=True)
class Loss:
    """A heartbeat loss: when it was seen (market time), since when the file was stale (wall
    time, as the watcher said) and how long until it came back (None: not back that day)."""

    rule: str
    at: datetime
    stale_since: str
    lost_for_s: float | None


@dataclass
class DaySummary:
    day: date
    accounts: dict[str, AccountDay] = field(default_factory=dict)
    trips: list[EventRow] = field(default_factory=list)
    missed: list[EventRow] = field(default_factory=list)
    losses: list[Loss] = field(default_factory=list)
    given_up: list[EventRow] = field(default_factory=list)

    @property
    def cancelled(self) -> int:
        """Orders whose cancel took (fully or what was left of a partly filled one)."""
        return sum(a.outcomes[k] for a in self.accounts.values() for k in _CANCELLED)

    @property
    def released(self) -> Decimal:
        return sum((a.released for a in self.accounts.values()), Decimal(0))

    @property
    def margin(self) -> Decimal:
        return sum((a.margin for a in self.accounts.values()), Decimal(0))

    def counts(self) -> dict[str, Any]:
        """The figures as data (the daily alert's ``details``)."""
        total: Counter[str] = Counter()
        for a in self.accounts.values():
            total.update(a.outcomes)
        return {"day": self.day.isoformat(), "cancelled": self.cancelled,
                "released_vnd": _plain(self.released), "margin_released_vnd": _plain(self.margin),
                "outcomes": {k: total[k] for k in OUTCOME_ORDER if total[k]},
                "breaker_trips": len(self.trips), "missed_sweeps": len(self.missed),
                "heartbeat_losses": len(self.losses), "given_up": len(self.given_up)}


def _plain(d: Decimal) -> str:
    """``68850000`` for ``Decimal('68850000.0')``: no exponent, no trailing zeros."""
    return format(d.normalize(), "f")


def _decimal(value: Any) -> Decimal:
    try:
        d = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return Decimal(0)
    return d if d.is_finite() else Decimal(0)


def _account(summary: DaySummary, account: str) -> AccountDay:
    return summary.accounts.setdefault(account, AccountDay(account))


def summarise(day: date, cancels: Iterable[CancelRow], events: Iterable[EventRow]
              ) -> DaySummary:
    """The summary of exchange day ``day`` from its journal rows (already that day's)."""
    s = DaySummary(day)
    for c in cancels:
        a = _account(s, c.account)
        kind = c.outcome or "pending"
        a.outcomes[kind] += 1
        for rule in c.rules or ("?",):
            a.by_rule.setdefault(rule, Counter())[kind] += 1
        if kind in _PROBLEMS:
            a.problems.append(c)
    lost: dict[str, EventRow] = {}  # rule -> the loss not yet resumed
    for e in events:
        if e.kind == "cash.released" and e.account:
            delta = _decimal(e.data.get("withdrawable_delta"))
            if delta > 0:
                a = _account(s, e.account)
                if e.data.get("basis") == "derivative":
                    a.margin += delta
                else:
                    a.released += delta
        elif e.kind == "breaker.tripped":
            s.trips.append(e)
        elif e.kind == "schedule.missed":
            s.missed.append(e)
        elif e.kind == "cancel.given_up":
            # Said by every sweep that still selects the order: one order, one line.
            key = (e.account, e.data.get("order_id"))
            if all((g.account, g.data.get("order_id")) != key for g in s.given_up):
                s.given_up.append(e)
        elif e.kind == "heartbeat.lost":
            rule = e.rule or "?"
            lost.setdefault(rule, e)  # a loss said again while still lost is the same loss
        elif e.kind == "heartbeat.resumed":
            rule = e.rule or "?"
            began = lost.pop(rule, None)
            if began is not None:
                s.losses.append(_loss(rule, began, _float(e.data.get("lost_for_s"))))
    s.losses.extend(_loss(rule, began, None) for rule, began in lost.items())
    s.losses.sort(key=lambda x: x.at)
    return s


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _loss(rule: str, began: EventRow, lost_for: float | None) -> Loss:
    return Loss(rule, began.market_time,
                str(began.data.get("stale_since", "")), lost_for)


def _clock_time(value: Any) -> str:
    """An ISO instant as exchange time of day (``10:02:03``); anything else as it is."""
    return exchange_time(value, "%H:%M:%S")


def _symbol(symbol: Any) -> str:
    return f" {symbol}" if symbol else ""


def _margin(amount: Decimal, lang: Language) -> str:
    return i18n.text("report.margin", lang, amount=i18n.amount(amount, lang)) if amount else ""


def _outcomes(counts: Mapping[str, int], lang: Language) -> str:
    known = [k for k in OUTCOME_ORDER if counts.get(k)]
    other = sorted(k for k in counts if k not in OUTCOME_ORDER and counts[k])
    return ", ".join(f"{i18n.outcome(k, lang)} {counts[k]}" for k in known + other)


def render(s: DaySummary, lang: Language) -> str:
    """The report as text, one line per fact, in ``lang``."""
    t = i18n.text
    lines = [t("report.title", lang, day=i18n.day(s.day, lang))]
    if s.accounts and any(a.outcomes for a in s.accounts.values()):
        lines.append(t("report.headline", lang, orders=i18n.count(s.cancelled, "order", lang),
                       amount=i18n.amount(s.released, lang), margin=_margin(s.margin, lang)))
    else:
        lines.append(t("report.no_cancels", lang))
    for account in sorted(s.accounts):
        a = s.accounts[account]
        lines.append("")
        money = {"amount": i18n.amount(a.released, lang), "margin": _margin(a.margin, lang)}
        if a.margin and not a.released:  # a derivatives account: only margin
            money = {"amount": i18n.amount(a.margin, lang),
                     "margin": i18n.text("report.margin_only", lang)}
        if a.outcomes:
            lines.append(t("report.account", lang, account=account,
                           cancels=i18n.count(sum(a.outcomes.values()), "cancel", lang),
                           outcomes=_outcomes(a.outcomes, lang), **money))
        else:
            lines.append(t("report.account_cash_only", lang, account=account, **money))
        for rule in sorted(a.by_rule):
            lines.append(t("report.rule", lang, rule=rule,
                           outcomes=_outcomes(a.by_rule[rule], lang)))
        for c in a.problems:
            lines.append(t("report.failure", lang, outcome=i18n.outcome(c.outcome or "pending",
                                                                          lang),
                           order_id=c.order_id, symbol=_symbol(c.symbol), rule=",".join(c.rules),
                           detail=c.detail or "-"))
    lines.append("")
    lines.append(t("report.trips", lang, n=len(s.trips)))
    for e in s.trips[:LISTED]:
        key, extra = "report.trip", {}
        late, carried = e.data.get("late"), e.data.get("carried")
        if late and carried:
            key, extra = "report.trip_late_carried", {"started": e.data.get("started"),
                                                      "carried": carried}
        elif late:
            key, extra = "report.trip_late", {"started": e.data.get("started")}
        elif carried:
            key, extra = "report.trip_carried", {"carried": carried}
        lines.append(t(key, lang, at=e.market_time.strftime("%H:%M:%S"),
                       matches=e.data.get("matches"), limit=e.data.get("limit"), **extra))
    if len(s.trips) > LISTED:
        lines.append(t("report.more", lang, n=len(s.trips) - LISTED))
    lines.append(t("report.missed", lang, n=len(s.missed)))
    for e in s.missed[:LISTED]:
        lines.append(t("report.missed_one", lang, job=e.data.get("job"),
                       scheduled=_clock_time(e.data.get("scheduled"))))
    if len(s.missed) > LISTED:
        lines.append(t("report.more", lang, n=len(s.missed) - LISTED))
    lines.append(t("report.losses", lang, n=len(s.losses)))
    for loss in s.losses:
        back = (t("report.loss_open", lang) if loss.lost_for_s is None
                else t("report.loss_back", lang, lost_for=i18n.duration(loss.lost_for_s, lang)))
        lines.append(t("report.loss", lang, rule=loss.rule,
                       at=_clock_time(loss.stale_since) if loss.stale_since
                       else loss.at.strftime("%H:%M:%S"), back=back))
    if s.given_up:
        lines.append(t("report.given_up", lang, n=len(s.given_up)))
        for e in s.given_up:
            lines.append(t("report.given_up_one", lang, account=e.account or "?",
                           order_id=e.data.get("order_id"),
                           symbol=_symbol(e.data.get("symbol"))))
    return "\n".join(lines) + "\n"
