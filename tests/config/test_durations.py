"""Durations as written in rules.yaml: the accepted forms and, above all, the refused ones."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from guard.config.durations import DurationError, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("15m", timedelta(minutes=15)),
        ("2h", timedelta(hours=2)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1h30m15s", timedelta(hours=1, minutes=30, seconds=15)),
        ("90m", timedelta(minutes=90)),
        ("1h15s", timedelta(hours=1, seconds=15)),
        (" 5m ", timedelta(minutes=5)),
        ("0h1s", timedelta(seconds=1)),
    ],
)
def test_parses(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "", "   ", "0s", "0m", "0h0m0s", "-5m", "+5m", "1.5m", "1,5m", "5", "5x", "5d", "5M",
        "5 m", "m", "30m1h", "1h1h", "15min", "1e3s", "\u00bdm", "\uff15m", "99999999h",
    ],
)
def test_refuses(text: str) -> None:
    with pytest.raises(DurationError) as info:
        parse_duration(text)
    assert repr(text) in str(info.value)


def test_message_suggests_the_format() -> None:
    with pytest.raises(DurationError, match=r"'5x' is not a duration \(use 30s, 15m, 1h30m\)"):
        parse_duration("5x")


def test_zero_says_positive() -> None:
    with pytest.raises(DurationError, match="positive"):
        parse_duration("0m")


@pytest.mark.parametrize("value", [30, 1.5, None, True])
def test_refuses_non_text(value: object) -> None:
    with pytest.raises(DurationError):
        parse_duration(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(minutes=17, seconds=12), "17m12s"),
        (timedelta(hours=1, minutes=30), "1h30m"),
        (timedelta(seconds=59, microseconds=999_999), "59s"),
        (timedelta(microseconds=1), "<1s"),
        (timedelta(0), "0s"),
        (timedelta(seconds=-90), "-1m30s"),
    ],
)
def test_formats(delta: timedelta, text: str) -> None:
    assert format_duration(delta) == text


@given(st.integers(min_value=1, max_value=366 * 24 * 3600))
def test_format_then_parse_round_trips(seconds: int) -> None:
    delta = timedelta(seconds=seconds)
    assert parse_duration(format_duration(delta)) == delta
