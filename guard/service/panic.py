"""The panic button, ``ssi-guard cancel-all``: every open, cancellable order of the guarded
accounts that passes the operator's filters, cancelled through the same pipeline as any sweep.

The button is one rule the operator pulls by hand: a ``heartbeat`` rule that is always stale
(``OPERATOR_RULE``), with the filters as its ``match`` and everything else of rules.yaml kept:
the accounts, ``cancellable``, the protect list, the holidays and the board pins. So the
journal, the batches, the resend-on-proof, the confirmation, the cash release and the holds
(banned windows, protected orders) are the ones every sweep has. As an explicit operator
command it overrides ``dry_run``, ``max_cancels_per_sweep`` and the pause file.

``PanicResult`` is what both ways of pressing it print: in the CLI process (no daemon) or in
the daemon that holds the state directory (``guard.service.control``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from pydantic import ValidationError

from guard.config.schema import RulesFile
from guard.errors import ConfigError
from guard.model import FINAL_OK, HoldKind
from guard.sweep import SweepContext, SweepReport, run_sweep

__all__ = ["OPERATOR_RULE", "CancelAll", "PanicResult", "operator_rules", "press"]

OPERATOR_RULE = "cancel-all"
_REASON = "operator cancel-all"
_MAX = 100_000  # the schema's ceiling for max_cancels_per_sweep: no breaker for the operator


@dataclass(frozen=True)
class CancelAll:
    """The operator's filters, ANDed; an empty tuple means "any"."""

    accounts: tuple[str, ...] = ()
    symbols: tuple[str, ...] = ()
    client_request_ids: tuple[str, ...] = ()

    def as_json(self) -> dict[str, list[str]]:
        return {"accounts": list(self.accounts), "symbols": list(self.symbols),
                "client_request_ids": list(self.client_request_ids)}

    @classmethod
    def from_json(cls, raw: object) -> CancelAll:
        """From a control request; anything but lists of strings is a ``ConfigError``."""
        if not isinstance(raw, dict):
            raise ConfigError("cancel-all: the request is not an object")
        fields: dict[str, tuple[str, ...]] = {}
        for key in ("accounts", "symbols", "client_request_ids"):
            value = raw.get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"cancel-all: {key} is not a list of strings")
            fields[key] = tuple(value)
        return cls(**fields)


_FLAGS = {"accounts": "--account", "symbols": "--symbol",
          "client_request_ids": "--client-request-id"}


def operator_rules(rules: RulesFile, request: CancelAll) -> RulesFile:
    """rules.yaml with its rules replaced by the one operator rule, live and unbounded.

    Filters are checked by the rules schema itself (a glob that could never be a symbol, an
    account rules.yaml does not guard), and a bad one is a ``ConfigError`` naming its flag.
    Pure: the heartbeat ``file`` is never read (the operator rule is stale by decree, see
    ``press``)."""
    match: dict[str, Any] = {}
    if request.accounts:
        match["accounts"] = list(request.accounts)
    if request.symbols:
        match["symbols"] = list(request.symbols)
    if request.client_request_ids:
        match["client_request_ids"] = list(request.client_request_ids)
    raw = rules.model_dump(mode="python", exclude_none=True)
    raw.update(
        dry_run=False,
        limits={**raw["limits"], "max_cancels_per_sweep": _MAX},
        rules=[{"name": OPERATOR_RULE,
                "heartbeat": {"file": "/dev/null", "stale_after": timedelta(seconds=1)},
                "match": match}],
    )
    try:
        return RulesFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_flag_messages(exc, request)) from None


def _flag_messages(exc: ValidationError, request: CancelAll) -> list[str]:
    """One line per bad flag value; only if no flag is to blame, what pydantic said (a bad
    filter also empties ``rules``, which is its echo, not a second problem)."""
    out, other = [], []
    for error in exc.errors():
        loc = error["loc"]
        # ("rules", 0, "match", <field>, <index>) for a filter; anything else is rules.yaml's
        if len(loc) >= 5 and loc[:3] == ("rules", 0, "match") and str(loc[3]) in _FLAGS:
            field, index = str(loc[3]), loc[4]
            values: tuple[str, ...] = getattr(request, field)
            shown = values[index] if isinstance(index, int) and index < len(values) else "?"
            message = str(error["msg"]).removeprefix("Value error, ")
            if "is not in the top-level accounts" in message:
                message = "is not an account rules.yaml guards"
            out.append(f"cancel-all: {_FLAGS[field]} {shown!r}: {message}")
        else:
            other.append(f"cancel-all: {'.'.join(map(str, loc))}: {error['msg']}")
    return out or other


@dataclass(frozen=True)
class PanicResult:
    """What ``cancel-all`` prints, from either process: JSON-safe so the daemon can send it.

    ``rows``: one per order the filters selected (protected ones included, so the operator
    sees they were left alone): account, order id, symbol, side, status, remaining, action
    (``cancel``, ``held``, ``protected``, ``would cancel`` in a preview), why, outcome.
    """

    preview: bool
    market_time: str
    sweep_id: int
    result: str
    rows: tuple[tuple[str, ...], ...]
    unread: tuple[tuple[str, str], ...]
    cash: tuple[tuple[str, str], ...]
    paused_overridden: bool

    @property
    def complete(self) -> bool:
        """Every selected order that is not protected reached a final, good outcome (0)."""
        if self.unread or self.result in ("failed", "incomplete", "blocked"):
            return False
        return all(r[6] == "protected" or r[8] in FINAL_OK for r in self.rows)

    @property
    def would_cancel(self) -> int:
        """How many orders a preview would cancel (what the operator is asked about)."""
        return sum(1 for r in self.rows if r[6] == "would cancel")

    def as_json(self) -> dict[str, Any]:
        return {"preview": self.preview, "market_time": self.market_time,
                "sweep_id": self.sweep_id, "result": self.result,
                "rows": [list(r) for r in self.rows], "unread": [list(u) for u in self.unread],
                "cash": [list(c) for c in self.cash],
                "paused_overridden": self.paused_overridden}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> PanicResult:
        return cls(bool(raw["preview"]), str(raw["market_time"]), int(raw["sweep_id"]),
                   str(raw["result"]), tuple(tuple(str(c) for c in r) for r in raw["rows"]),
                   tuple((str(a), str(b)) for a, b in raw["unread"]),
                   tuple((str(a), str(b)) for a, b in raw["cash"]),
                   bool(raw["paused_overridden"]))


HEADERS = ("account", "order", "symbol", "side", "status", "left", "action", "why", "outcome")


def _result(report: SweepReport, preview: bool, paused: bool) -> PanicResult:
    outcomes = {(o.sent.target.order.account, o.sent.target.order.order_id): o
                for o in report.outcomes}
    targets = {t.key for t in report.plan.targets}
    rows = []
    for d in report.decisions:
        if not d.verdict:
            continue  # the filters left it out
        o = d.order
        key = (o.account, o.order_id)
        if d.hold_kind is HoldKind.PROTECTED:
            action, why = "protected", d.held or ""
        elif d.hold is not None:
            action, why = "held", d.held or ""
        elif key in targets:
            action, why = ("would cancel" if preview else "cancel"), d.reason
        else:
            action, why = "held", "a cancel for it is already in flight or given up today"
        outcome = outcomes.get(key)
        shown = outcome.kind if outcome is not None else ("-" if preview or action != "cancel"
                                                          else "not sent")
        rows.append((o.account, o.order_id, o.symbol, o.side, o.status, str(o.remaining),
                     action, why, shown))
    cash = tuple((c.account, str(c.withdrawable_delta)) for c in report.cash)
    return PanicResult(preview, report.market_time.isoformat(timespec="seconds"),
                       report.sweep_id, report.result, tuple(rows), report.unread_accounts,
                       cash, paused)


async def press(ctx: SweepContext, request: CancelAll, *, preview: bool = False) -> PanicResult:
    """Run the operator sweep on ``ctx`` (the guard's own: same journal, broker, in-flight
    claims), or, with ``preview``, the same sweep dry: what it would cancel and hold now."""
    operator = replace(
        ctx,
        rules=operator_rules(ctx.rules, request),
        force_dry_run=preview,
        honour_pause=False,
        straggler_s=None,  # no breaker to wait for: every account is read in full
        signals=lambda: {OPERATOR_RULE: _REASON},
    )
    trigger = "cancel-all-preview" if preview else "cancel-all"
    report = await run_sweep(operator, trigger)
    return _result(report, preview, paused=not preview and ctx.paused)
