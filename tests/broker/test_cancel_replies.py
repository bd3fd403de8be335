"""The broker's words in a cancel reply are read strictly, through
the real SDK over HTTP to the simulator.

A batch item is accepted only when ``success`` is the JSON boolean ``true`` and it carries no
``errorCode``. An item with an ``errorCode`` and any other ``success`` ("false", 0, null,
missing) is a refusal with that code: outcome ``failed``, never logged as ``cancel.sent``.
Anything else (``"true"``, 1, null or missing without a code, ``true`` with a code) is an
unreadable reply: ambiguous, so the book is re-read and only what is still open is resent.
The same holds for the reply to a single cancel.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from kit import ACCT, BATCH, OTHER, SINGLE, STALE
from kit.log import Recorder
from kit.sweep import (
    Guard,
    assert_no_double_cancel,
    assert_one_outcome_per_intent,
    outcomes,
    rules_text,
)

from guard.broker.client import Broker
from guard.broker.tokens import TokenCache
from guard.settings import load_credentials
from guard.simulator.control import Simulator

RULES = rules_text(confirm_timeout="2s").replace(f'accounts: ["{ACCT}", "{OTHER}"]',
                                                 f'accounts: ["{ACCT}"]')
CODE = "400221"
_MISSING = object()


def item(order_id: str, success: Any, code: Any = _MISSING) -> dict[str, Any]:
    out: dict[str, Any] = {"orderId": order_id, "clientRequestId": "", "orderStatus": "QU"}
    if success is not _MISSING:
        out["success"] = success
    if code is not _MISSING:
        out.update(errorCode=code, errorMessage="refused by the test broker")
    return out


def reply(*items: dict[str, Any]) -> dict[str, Any]:
    return {"batchRequestId": "x", "results": list(items)}


@pytest.mark.parametrize("success", ["false", False, 0, None, _MISSING, "true", "no"],
                         ids=["text-false", "false", "zero", "null", "missing", "text-true",
                              "word"])
def test_an_item_with_an_error_code_is_a_refusal_with_that_code(
    success: Any, sim: Simulator, tmp_path: Path
) -> None:
    """Finding 7: ``success: "false"`` was read as accepted (``bool("false")``): logged as
    ``cancel.sent``, watched for the whole confirm_timeout, reported ``unconfirmed``."""
    a = sim.seed_order(ACCT, "SSI", "B", 27_000, 100, age=STALE)
    b = sim.seed_order(ACCT, "VNM", "B", 62_000, 100, age=STALE)
    sim.override_reply("DELETE", BATCH, reply(item(a, success, CODE), item(b, False, "400")),
                       apply_first=False)
    guard = Guard(sim, tmp_path / "state", RULES)
    log = Recorder()
    report = guard.sweep(log=log)

    assert log.named("cancel.sent") == []
    assert [(e["order_id"], e["code"]) for e in log.named("cancel.refused")] == [
        (a, CODE), (b, "400")]
    got = outcomes(guard.journal_path)
    [(kind, qty, status, detail)] = got[a]
    assert (kind, qty, status) == ("failed", 0, "QU") and f"code {CODE}" in detail, detail
    assert report.result != "ok"
    assert sim.requests_to("DELETE", SINGLE) == []  # an item refused is not sent again
    assert len(sim.requests_to("DELETE", BATCH)) == 1 and sim.accepted_cancels() == []
    with guard.journal() as j:
        [(response,)] = j.query("SELECT response FROM requests WHERE kind = 'batch'")
    first, _ = json.loads(response)["results"]
    assert (first["order_id"], first["accepted"], first["code"]) == (a, False, CODE)


UNREADABLE: dict[str, tuple[Any, Any]] = {
    "text-true": ("true", _MISSING),
    "one": (1, _MISSING),
    "null": (None, _MISSING),
    "missing": (_MISSING, _MISSING),
    "text-false-no-code": ("false", _MISSING),
    "true-with-a-code": (True, CODE),
    "code-a-list": (False, [CODE]),
}


@pytest.mark.parametrize("applied", [True, False], ids=["applied", "not-applied"])
@pytest.mark.parametrize("case", list(UNREADABLE))
def test_an_item_that_says_neither_yes_nor_no_is_settled_from_the_book(
    case: str, applied: bool, sim: Simulator, tmp_path: Path
) -> None:
    """No proof of acceptance and no refusal: the book is re-read, what it shows WC was
    applied, what it shows open is sent again. Never a second cancel, never a false report."""
    ids = [sim.seed_order(ACCT, "SSI", "B", 27_000, 100 * (i + 1), age=STALE) for i in range(2)]
    success, code = UNREADABLE[case]
    sim.override_reply("DELETE", BATCH, reply(item(ids[0], success, code), item(ids[1], True)),
                       apply_first=applied)
    guard = Guard(sim, tmp_path / "state", RULES)
    log = Recorder()
    report = guard.sweep(log=log)

    assert report.result == "ok", outcomes(guard.journal_path)
    assert sorted(sim.accepted_cancels()) == sorted(ids)
    assert_no_double_cancel(sim)
    assert len(sim.requests_to("DELETE", BATCH)) == (1 if applied else 2)
    assert sim.requests_to("DELETE", SINGLE) == []
    assert log.named("cancel.refused") == []
    assert {k: [r[0] for r in v] for k, v in outcomes(guard.journal_path).items()} == {
        i: ["cancelled"] for i in ids}
    assert_one_outcome_per_intent(guard.journal_path)


# ---- a single cancel -------------------------------------------------------------------------

SINGLE_REPLIES: dict[str, tuple[Any, str]] = {
    # reply body -> "refused" (failed with the code) or "ambiguous" (settled from the book)
    "another-order": ({"orderId": "99999999", "orderStatus": "WC"}, "ambiguous"),
    "status-a-list": ({"orderId": "{a}", "orderStatus": ["WC"]}, "ambiguous"),
    "success-text-true": ({"orderId": "{a}", "orderStatus": "WC", "success": "true"},
                          "ambiguous"),
    "a-list": ([{"orderId": "{a}", "orderStatus": "WC"}], "ambiguous"),
    "error-code": ({"orderId": "{a}", "success": False, "errorCode": CODE,
                    "errorMessage": "no"}, "refused"),
    "error-code-text-false": ({"orderId": "{a}", "success": "false", "errorCode": CODE},
                              "refused"),
}


@pytest.mark.parametrize("case", list(SINGLE_REPLIES))
def test_a_single_cancel_reply_is_read_as_strictly(case: str, sim: Simulator,
                                                   tmp_path: Path) -> None:
    """One order goes out as a single cancel (and so would a batch refused whole: the batch
    override is there in case), whose 2xx reply is hostile. Before: any 2xx was accepted."""
    a = sim.seed_order(ACCT, "SSI", "B", 27_000, 100, age=STALE)
    body, verdict = SINGLE_REPLIES[case]
    body = json.loads(json.dumps(body).replace("{a}", a))
    sim.override_reply("DELETE", BATCH, {"code": 400, "msg": "bad batch"}, status=400)
    sim.override_reply("DELETE", SINGLE, body, apply_first=False)
    guard = Guard(sim, tmp_path / "state", RULES)
    log = Recorder()
    report = guard.sweep(log=log)

    got = {k: [r[0] for r in v] for k, v in outcomes(guard.journal_path).items()}
    if verdict == "refused":
        assert got == {a: ["failed"]} and report.result != "ok"
        [(_, _, _, detail)] = outcomes(guard.journal_path)[a]
        assert f"code {CODE}" in detail, detail
        assert log.named("cancel.sent") == []
        [refused] = log.named("cancel.refused")
        assert refused["code"] == CODE
        assert len(sim.requests_to("DELETE", SINGLE)) == 1 and sim.accepted_cancels() == []
    else:
        assert got == {a: ["cancelled"]} and report.result == "ok"
        assert len(sim.requests_to("DELETE", SINGLE)) == 2  # re-read: still open, sent again
        assert sim.accepted_cancels() == [a]
    assert_one_outcome_per_intent(guard.journal_path)


# ---- the request is the SDK's own -------------------------------------------------------------


def test_the_cancels_sent_are_shaped_as_the_sdks_own(sim: Simulator, tmp_path: Path) -> None:
    """The adapter signs and sends the cancel itself (to read the reply raw); the body must
    stay the one ``cancel_batch_orders`` / ``cancel_order_by_order_id`` would send."""
    a, b, c, d = (sim.seed_order(ACCT, "SSI", "B", 27_000, 100) for _ in range(4))
    creds = load_credentials(sim.env())

    async def scenario() -> None:
        async with Broker(creds, TokenCache(tmp_path / "state")) as broker:
            await broker.ensure_session()
            [mine] = await broker.cancel_batch([(ACCT, a)])
            assert mine.accepted and mine.status == "WC"
            one = await broker.cancel_one(ACCT, b)
            assert one.accepted and one.status == "WC"
            sdk = broker.trading.trading
            await sdk.cancel_batch_orders([{"account_no": ACCT, "order_id": c}])
            await sdk.cancel_order_by_order_id(ACCT, d)

    (tmp_path / "state").mkdir(mode=0o700)
    asyncio.run(scenario())
    ours, theirs = (r.body for r in sim.requests_to("DELETE", BATCH))
    assert isinstance(ours, dict) and isinstance(theirs, dict)
    assert sorted(ours) == sorted(theirs)
    assert [sorted(o) for o in ours["orders"]] == [sorted(o) for o in theirs["orders"]]
    assert {k: v for k, v in ours["orders"][0].items() if k not in ("clientCancelId", "orderId")
            } == {k: v for k, v in theirs["orders"][0].items()
                  if k not in ("clientCancelId", "orderId")}
    single_ours, single_theirs = (r.body for r in sim.requests_to("DELETE", SINGLE))
    assert isinstance(single_ours, dict) and isinstance(single_theirs, dict)
    assert sorted(single_ours) == sorted(single_theirs)
    assert sim.accepted_cancels() == [a, b, c, d]
