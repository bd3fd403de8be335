"""Rule builders shared by the property tests that draw whole rules files."""

from __future__ import annotations

from typing import Any

__all__ = ["loadable"]


def loadable(match: dict[str, Any], cancellable: list[str],
             pinned: dict[str, str]) -> dict[str, Any]:
    """``match`` without what makes the schema refuse the rule as never matching (``skip`` with
    only PF reachable; only exact symbols, all pinned by ``boards:`` outside the rule's boards),
    so that every drawn file loads and no example is thrown away."""
    if match["partially_filled"] == "skip" and set(match.get("statuses", cancellable)) <= {"PF"}:
        match["partially_filled"] = "cancel_rest"
    symbols, boards = match.get("symbols"), match.get("boards")
    if symbols is not None and boards is not None and all(
            s in pinned and pinned[s] not in boards for s in symbols):
        del match["symbols"]
    return match
