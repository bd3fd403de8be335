"""Durations as people write them in rules.yaml: ``30s``, ``15m``, ``1h30m``, ``1h30m15s``.

Only whole hours, minutes and seconds, largest unit first, each unit at most once. A bare
number, a float, a zero or a negative duration is refused: in a safety rule, ``max_age: 15``
(seconds? minutes?) or ``max_age: 0`` (cancel everything at once) is far more likely a mistake
than an intent.
"""

from __future__ import annotations

import re
from datetime import timedelta

__all__ = ["DURATION_HINT", "DurationError", "format_duration", "parse_duration"]

DURATION_HINT = "use 30s, 15m, 1h30m"

_DURATION = re.compile(r"(?:(?P<h>[0-9]+)h)?(?:(?P<m>[0-9]+)m)?(?:(?P<s>[0-9]+)s)?")
# Far beyond any sensible rule, far below timedelta's overflow: keeps the arithmetic boring.
_MAX_SECONDS = 366 * 24 * 3600
_MAX_DIGITS = len(str(_MAX_SECONDS))  # more significant digits than this is always too long


class DurationError(ValueError):
    """A duration string that does not parse; the message is ready for a person."""


def _q(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:36] + "...'"


def parse_duration(text: str) -> timedelta:
    """Parse ``1h30m15s``-style text into a positive ``timedelta``.

    Raises ``DurationError`` with a message like ``'5x' is not a duration (use 30s, 15m, 1h30m)``.
    """
    if not isinstance(text, str):
        raise DurationError(f"{_q(text)} is not a duration: it needs a unit ({DURATION_HINT})")
    stripped = text.strip()
    match = _DURATION.fullmatch(stripped)
    if not stripped or match is None or not any(match.groupdict().values()):
        raise DurationError(f"{_q(text)} is not a duration ({DURATION_HINT})")
    digits = [match.group(g) or "0" for g in ("h", "m", "s")]
    if any(len(d.lstrip("0")) > _MAX_DIGITS for d in digits):  # int() refuses 4300+ digits
        raise DurationError(f"{_q(text)} is too long: at most 366 days")
    hours, minutes, seconds = (int(d) for d in digits)
    total = hours * 3600 + minutes * 60 + seconds
    if total == 0:
        raise DurationError(f"{_q(text)} is zero: a duration must be positive ({DURATION_HINT})")
    if total > _MAX_SECONDS:
        raise DurationError(f"{_q(text)} is too long: at most 366 days")
    return timedelta(seconds=total)


def format_duration(delta: timedelta) -> str:
    """Render a duration the way rules.yaml writes it (``17m12s``); whole seconds, rounded down.

    A non-zero duration under one second renders as ``<1s`` so that a reason never says ``0s``.
    """
    if delta < timedelta(0):
        return "-" + format_duration(-delta)
    total = int(delta.total_seconds())
    if total == 0:
        return "<1s" if delta > timedelta(0) else "0s"
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    units = ((hours, "h"), (minutes, "m"), (seconds, "s"))
    return "".join(f"{value}{unit}" for value, unit in units if value)
