"""The trigger kinds table: every rules.yaml trigger has exactly one class the fast path can
compile, and a kind it cannot compile is refused at once instead of never matching."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from guard.clock import EXCHANGE_TZ
from guard.config import schema
from guard.config.schema import Rule, RulesFile
from guard.evaluate.engine import evaluate
from guard.evaluate.kinds import (
    KINDS,
    At,
    BeforeClose,
    BookTrigger,
    Heartbeat,
    MaxAge,
    OrderTrigger,
    TriggerKind,
    kind_of,
    register,
)
from guard.market.calendar import Board, MarketCalendar
from guard.market.holidays import build_calendar
from guard.model import BookOrder, HoldKind

# How schema.py declares a rule's trigger: the keys of which a rule needs exactly one.
SCHEMA_TRIGGERS: tuple[str, ...] = schema._TRIGGERS

ONE_OF_EACH: dict[str, Any] = {
    "max_age": "15m", "before_close": "5m", "at": ["11:25"],
    "heartbeat": {"file": "/run/strategy-a/heartbeat", "stale_after": "10s"}}


def test_every_schema_trigger_has_a_compilable_kind() -> None:
    missing = [t for t in SCHEMA_TRIGGERS if t not in KINDS]
    assert not missing, f"schema triggers with no class in guard/evaluate/kinds.py: {missing}"
    for trigger in SCHEMA_TRIGGERS:
        kind = KINDS[trigger]
        assert kind.field == trigger
        assert isinstance(kind, OrderTrigger | BookTrigger), trigger
    assert set(KINDS) == set(SCHEMA_TRIGGERS), "a kind for a key the schema does not have"


def test_every_schema_trigger_is_exercised_here() -> None:
    """So that a new trigger also gets a sample rule below, not only a class."""
    assert set(ONE_OF_EACH) == set(SCHEMA_TRIGGERS)


@pytest.mark.parametrize("trigger", sorted(ONE_OF_EACH))
def test_a_rule_finds_its_kind(trigger: str) -> None:
    rule = Rule.model_validate({"name": "r", trigger: ONE_OF_EACH[trigger]})
    assert rule.trigger == trigger
    assert kind_of(rule) is KINDS[trigger]
    assert getattr(rule, kind_of(rule).field) is not None


def test_the_kinds_and_how_they_compile() -> None:
    assert isinstance(KINDS["max_age"], MaxAge) and isinstance(KINDS["max_age"], OrderTrigger)
    assert isinstance(KINDS["before_close"], BeforeClose)
    assert isinstance(KINDS["at"], At)
    assert isinstance(KINDS["heartbeat"], Heartbeat)
    assert all(isinstance(KINDS[k], BookTrigger) for k in ("before_close", "at", "heartbeat"))
    assert all(not kind.holds for kind in KINDS.values())


# ---- a kind the fast path cannot compile fails loudly ----------------------------------------


class Uncompiled(TriggerKind):
    """A kind with a field but neither a per-order cutoff nor a per-board reason."""

    field = "at_window"


class NoReason(BookTrigger):
    field = "at_window"


class Holding(BookTrigger):
    field = "at_window"
    holds = frozenset({HoldKind.OTHER})

    def reason(self, rule: Rule, local: datetime, calendar: MarketCalendar,
               board: Board | None, signals: Mapping[str, str]) -> str | None:
        return None


class NotAField(BookTrigger):
    field = "max_agee"

    def reason(self, rule: Rule, local: datetime, calendar: MarketCalendar,
               board: Board | None, signals: Mapping[str, str]) -> str | None:
        return None


class SecondMaxAge(MaxAge):
    pass


def test_a_kind_without_compile_support_is_refused() -> None:
    before = dict(KINDS)
    with pytest.raises(TypeError, match="Uncompiled has no compile support"):
        register(Uncompiled())
    with pytest.raises(TypeError, match="abstract"):
        NoReason()  # type: ignore[abstract]
    with pytest.raises(ValueError, match="declares holds"):
        register(Holding())
    with pytest.raises(ValueError, match="'max_agee' is not an attribute of Rule"):
        register(NotAField())
    with pytest.raises(ValueError, match="'max_age' already has MaxAge"):
        register(SecondMaxAge())
    assert dict(KINDS) == before  # nothing half-registered


def test_a_trigger_with_no_kind_raises_rather_than_never_matching() -> None:
    rule: Any = SimpleNamespace(name="new-kind", trigger="after_open")
    with pytest.raises(LookupError, match="'new-kind': trigger 'after_open' has no kind"):
        kind_of(rule)


# ---- the table is what the engine uses ---------------------------------------------------------


def test_each_kind_words_its_own_reason() -> None:
    now = datetime(2026, 11, 27, 14, 25, 30, tzinfo=EXCHANGE_TZ)  # Friday
    rf = RulesFile.model_validate({
        "version": 1, "accounts": ["0001234"],
        "rules": [{"name": "stale", "max_age": "15m"},
                  {"name": "close", "before_close": "5m"},
                  {"name": "fixed", "at": ["14:25:30"]}]})
    o = BookOrder(account="0001234", order_id="1", client_request_id="c1", symbol="SSI",
                  side="B", order_type="LO", price=None, price_word=None, quantity=100,
                  filled=0, cancelled=0, status="QU",
                  input_time=now - timedelta(minutes=17, seconds=12))
    [d] = evaluate([o], rf, now, build_calendar(), {"SSI": Board.HOSE})
    assert d.reason == ("age 17m12s >= 15m; 14:25:30 is 4m30s before HOSE ATC; "
                        "fixed sweep at 14:25:30")
    assert KINDS["max_age"].template(rf.rules[0]).format("17m12s") == (  # type: ignore[attr-defined]
        "age 17m12s >= 15m")


def test_a_heartbeat_rule_fires_only_while_signalled_and_words_its_signal() -> None:
    now = datetime(2026, 11, 27, 10, 0, 3, tzinfo=EXCHANGE_TZ)
    rf = RulesFile.model_validate({
        "version": 1, "accounts": ["0001234"],
        "rules": [{"name": "alive", "heartbeat": ONE_OF_EACH["heartbeat"],
                   "match": {"client_request_ids": ["sa-*"]}}]})
    young = now - timedelta(seconds=1)
    ours = BookOrder(account="0001234", order_id="1", client_request_id="sa-1", symbol="SSI",
                     side="B", order_type="LO", price=None, price_word=None, quantity=100,
                     filled=0, cancelled=0, status="QU", input_time=young)
    theirs = BookOrder(account="0001234", order_id="2", client_request_id="sb-1", symbol="SSI",
                       side="B", order_type="LO", price=None, price_word=None, quantity=100,
                       filled=0, cancelled=0, status="QU", input_time=young)
    fresh = evaluate([ours, theirs], rf, now, build_calendar(), {"SSI": Board.HOSE})
    assert not any(d.verdict for d in fresh)
    why = "heartbeat /run/strategy-a/heartbeat stale since 10:00:03"
    stale = evaluate([ours, theirs], rf, now, build_calendar(), {"SSI": Board.HOSE},
                     {"alive": why})
    by_id = {d.order.order_id: d for d in stale}
    assert by_id["1"].cancel and by_id["1"].reason == why
    assert not by_id["2"].verdict  # its client request id is not sa-*
    other = evaluate([ours], rf, now, build_calendar(), {"SSI": Board.HOSE}, {"other": why})
    assert not other[0].verdict  # a signal for another rule name is not this rule's
