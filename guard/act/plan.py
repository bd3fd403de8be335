"""Planning cancels: pure. Decisions in, batches out, and every reason a cancel is not sent.

Rules the plan enforces, whatever the decisions say:
- only decisions with ``cancel`` true are targets (an order in WC never is: the engine holds it);
- an order is in at most one batch, and never one the guard already has in flight;
- more targets than ``max_cancels_per_sweep`` trips the circuit breaker: nothing is sent;
- ``dry_run`` or the pause file: nothing is sent, but every target is still listed;
- batches hold at most ``batch_size`` orders of one account.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from guard.evaluate.engine import Decision
from guard.model import CancelTarget

__all__ = ["CancelPlan", "CancelTarget", "plan_cancels"]

DEFAULT_BATCH_SIZE = 20


@dataclass(frozen=True, slots=True)
class CancelPlan:
    """What to send. ``batches`` is empty when ``blocked`` says why (dry run, pause, breaker)."""

    targets: tuple[CancelTarget, ...]
    batches: tuple[tuple[CancelTarget, ...], ...]
    blocked: str | None
    tripped: bool

    @property
    def to_send(self) -> int:
        return sum(len(b) for b in self.batches)


def plan_cancels(
    decisions: Iterable[Decision],
    *,
    max_cancels: int,
    dry_run: bool,
    paused: bool,
    in_flight: Collection[tuple[str, str]] = (),
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> CancelPlan:
    """Turn decisions into per-account batches, or into nothing with the reason why."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    seen: set[tuple[str, str]] = set(in_flight)
    targets: list[CancelTarget] = []
    for decision in decisions:
        key = (decision.order.account, decision.order.order_id)
        if not decision.cancel or key in seen:
            continue
        seen.add(key)
        targets.append(
            CancelTarget(
                order=decision.order,
                rules=decision.rules,
                reason=decision.reason,
            )
        )
    if len(targets) > max_cancels:
        return CancelPlan(
            tuple(targets), (),
            f"circuit breaker: {len(targets)} matches > max_cancels_per_sweep {max_cancels}",
            tripped=True,
        )
    if dry_run:
        return CancelPlan(tuple(targets), (), "dry run", tripped=False)
    if paused:
        return CancelPlan(tuple(targets), (), "paused by the pause file", tripped=False)
    by_account: dict[str, list[CancelTarget]] = {}
    for target in targets:
        by_account.setdefault(target.order.account, []).append(target)
    batches = [
        tuple(items[i : i + batch_size])
        for account in sorted(by_account)
        for items in (by_account[account],)
        for i in range(0, len(items), batch_size)
    ]
    return CancelPlan(tuple(targets), tuple(batches), None, tripped=False)
