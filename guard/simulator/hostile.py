"""Hostile answers: pure rewrites of a real JSON reply, for ``rewrite`` faults.

Each function returns a rewrite (reply body in, reply body out) that a broker with bugs, or a
gateway in front of it, could plausibly send: a row twice, a status that is not the exchange's,
a page cut short, booleans as strings. The handler has already run when a rewrite applies, so
a cancel is applied exactly as it would be; only what the client is told changes. Arm them
with ``Simulator.rewrite_reply``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

__all__ = ["cut_page", "duplicate_row", "flip_status", "string_booleans"]

Rewrite = Callable[[Any], Any]


def _rows(body: Any) -> list[Any] | None:
    if isinstance(body, dict) and isinstance(body.get("orderList"), list):
        return list(body["orderList"])
    return None


def duplicate_row(order_id: str, **changes: Any) -> Rewrite:
    """The book lists ``order_id`` twice: the real row, then a copy with ``changes`` (e.g.
    ``clientRequestId=""``, so one row is protected and its twin is not). ``totalRecord``
    counts both, so the page itself looks whole."""

    def rewrite(body: Any) -> Any:
        rows = _rows(body)
        if rows is None:
            return body
        out: list[Any] = []
        for row in rows:
            out.append(row)
            if isinstance(row, dict) and row.get("orderId") == order_id:
                out.append({**copy.deepcopy(row), **changes})
        return {**body, "orderList": out, "totalRecord": len(out)}

    return rewrite


def flip_status(order_id: str, status: str) -> Rewrite:
    """The book shows ``order_id`` in ``status`` whatever the exchange holds (a stale cache,
    another client's cancel in flight)."""

    def rewrite(body: Any) -> Any:
        rows = _rows(body)
        if rows is None:
            return body
        flipped = [{**row, "orderStatus": status}
                   if isinstance(row, dict) and row.get("orderId") == order_id else row
                   for row in rows]
        return {**body, "orderList": flipped}

    return rewrite


def cut_page(keep: int) -> Rewrite:
    """Only the first ``keep`` rows are sent; ``totalRecord`` still counts every order (a
    page the gateway cut short)."""

    def rewrite(body: Any) -> Any:
        rows = _rows(body)
        if rows is None or len(rows) <= keep:
            return body
        return {**body, "orderList": rows[:keep], "totalRecord": body.get("totalRecord",
                                                                         len(rows))}

    return rewrite


def string_booleans() -> Rewrite:
    """Every ``success`` in a batch reply becomes the string ``"true"``/``"false"`` (the
    truth, in the wrong type: ``bool("false")`` is True)."""

    def rewrite(body: Any) -> Any:
        if not isinstance(body, dict) or not isinstance(body.get("results"), list):
            return body
        results = [{**r, "success": "true" if r.get("success") is True else "false"}
                   if isinstance(r, dict) and "success" in r else r
                   for r in body["results"]]
        return {**body, "results": results}

    return rewrite
