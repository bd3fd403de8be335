"""Fault injection for the simulator, set from tests: what goes wrong, where, how often.

A ``Fault`` matches requests by method, path prefix and (optionally) account, and applies to
the next ``times`` of them (or to all, while armed), to a share ``rate`` of them. The server
asks ``FaultPlan.pick`` once per request and acts on what it gets back.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Fault", "FaultKind", "FaultPlan"]

FaultKind = Literal["latency", "error", "hang", "malformed", "drop", "body", "rewrite", "effect"]


@dataclass
class Fault:
    """One injected fault.

    - ``latency``: sleep ``seconds`` before answering normally.
    - ``error``: answer HTTP ``status`` (5xx, or 429 with ``retry_after`` seconds).
    - ``hang``: sleep ``seconds`` (past the client's timeout). For a cancel, ``apply_first``
      says whether the cancel took effect before the hang or never did.
    - ``malformed``: answer 200 with a body that is not JSON.
    - ``drop``: close the connection without an answer.
    - ``body``: answer HTTP ``status`` with ``body`` (after the gateway's auth checks):
      ``bytes``/``str`` are sent verbatim, anything else as JSON. With ``apply_first`` the
      handler runs first (a write is applied) and only its reply is replaced; without, the
      handler never runs. See ``Simulator.override_reply``.
    - ``rewrite``: the handler runs (a write is applied), then its JSON reply goes through
      ``rewrite`` before it is sent: a broker whose answer lies about what it did or holds
      (see ``guard.simulator.hostile``). ``name`` labels it in the request record.
    - ``effect``: call ``effect()`` once the handler has answered, e.g. fill an order right
      after the book was read, so the exchange itself moves between a read and a cancel.

    ``account`` narrows any kind to requests for that account (``accountNo`` in the query,
    the body, or any item of a batch): one account's reads fail while another's work.
    ``skip`` lets the first ``skip`` matching requests through untouched: the second read
    fails, not the first.
    """

    kind: FaultKind
    method: str | None = None
    path: str | None = None
    times: int | None = 1
    rate: float = 1.0
    status: int = 503
    seconds: float = 0.0
    apply_first: bool = False
    retry_after: float = 1.0
    body: Any = None
    account: str | None = None
    rewrite: Callable[[Any], Any] | None = None
    effect: Callable[[], None] | None = None
    name: str = ""
    skip: int = 0

    def matches(self, method: str, path: str, accounts: Collection[str] = ()) -> bool:
        if self.method and self.method.upper() != method.upper():
            return False
        if self.account is not None and self.account not in accounts:
            return False
        return not self.path or path.startswith(self.path)


class FaultPlan:
    """The armed faults; thread-safe, seeded for reproducible runs."""

    def __init__(self, seed: int = 7) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._rng = random.Random(seed)  # noqa: S311 - fault sampling, not security

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pick(self, method: str, path: str, accounts: Collection[str] = ()) -> list[Fault]:
        """The faults that fire on this request (latency first), consuming their counts.
        ``accounts``: the accounts the request is for (for faults armed on one account)."""
        fired: list[Fault] = []
        with self._lock:
            for fault in list(self._faults):
                if not fault.matches(method, path, accounts):
                    continue
                if fault.skip > 0:
                    fault.skip -= 1
                    continue
                if fault.rate < 1.0 and self._rng.random() >= fault.rate:
                    continue
                fired.append(fault)
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
        fired.sort(key=lambda f: f.kind != "latency")
        return fired
