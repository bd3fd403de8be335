"""The simulator's HTTP face: aiohttp routes that speak SSI FastConnect v3's wire format.

Every route goes through one middleware that does what the real gateway does before a handler
runs: fault injection, the per-apiKey rate limit (with ``X-RateLimit-*`` and ``Retry-After``),
bearer-token checks, signature checks on signed bodies, and a record of the request for tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from aiohttp import web

from guard.clock import EXCHANGE_TZ
from guard.simulator.exchange import (
    ERR_BAD_ORDER,
    ERR_NOT_OWNER,
    Exchange,
    ExchangeError,
    SimOrder,
)
from guard.simulator.faults import Fault, FaultPlan
from guard.simulator.keys import SimKeyPair
from guard.simulator.ratelimit import TokenBuckets
from guard.simulator.sessions import (
    CODE_BAD_CREDENTIALS,
    CODE_BAD_OTP,
    CODE_BAD_SIGNATURE,
    CODE_SMART_OTP_PENDING,
    CODE_SMART_OTP_UNKNOWN,
    AuthFailure,
    Session,
    SessionStore,
)

__all__ = ["ClientCredentials", "RecordedRequest", "SimServer"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CODE_BAD_REQUEST = "400100"
MAX_PAGE_SIZE = 1000  # rows per order-book page, at most
CODE_REPLAY_WINDOW = "400111"
CODE_DUPLICATE = "409100"
CODE_RATE_LIMIT = "429100"
CODE_SERVER_ERROR = "500100"
REPLAY_WINDOW_MS = 30_000
MAX_RECORDED = 100_000
MARKET_ORDER_TYPES = frozenset({"ATO", "ATC", "MP", "MTL", "MOK", "MAK"})
MAX_BATCH = 20

# The parsed JSON body of the request in hand: set by the gateway, read by the handlers. A
# ContextVar, not request storage: aiohttp runs each request in its own task.
_BODY: ContextVar[Any] = ContextVar("sim_request_body", default=None)

_SIGNED = {("POST", "/api/v3/trading/order"), ("DELETE", "/api/v3/trading/order"),
           ("DELETE", "/api/v3/trading/order/batch"), ("POST", "/api/v3/trading/order/batch")}
_PUBLIC = {"/api/v3/auth/token", "/api/v3/auth/refresh", "/api/v3/auth/requestOtp"}


@dataclass(frozen=True)
class ClientCredentials:
    """What a client needs to talk to this simulator (written by ``--env-file``)."""

    client_id: str
    api_key: str
    api_secret: str
    private_key: str
    otp: str
    accounts: tuple[str, ...]


@dataclass
class RecordedRequest:
    """One request as the simulator received it, and what it answered."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    status: int = 0
    at: float = field(default_factory=time.monotonic)
    fault: str | None = None
    # What was sent back, for tests that check a client against what it was shown: the
    # parsed JSON reply (None when there was none, or it was not JSON), when it left the
    # handler chain (monotonic), and the ``name`` of every ``rewrite`` fault applied to it.
    reply: Any = None
    answered_at: float | None = None
    rewritten: tuple[str, ...] = ()


def _now_wire(exchange: Exchange) -> str:
    return exchange.clock().astimezone(EXCHANGE_TZ).strftime("%Y/%m/%d %H:%M:%S")


def _error(status: int, code: str, msg: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"code": int(code), "msg": msg}, status=status, headers=headers)


def _day(instant: datetime) -> date:
    """The exchange date of an instant (Asia/Ho_Chi_Minh), whatever the host's zone."""
    return instant.astimezone(EXCHANGE_TZ).date()


def _drop(request: web.Request) -> web.Response:
    """Close the connection with no answer.

    Aborting the transport and returning a throwaway response (rather than raising) keeps
    aiohttp from logging a traceback for a fault the test asked for.
    """
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=500)


def _raw_reply(fault: Fault) -> web.Response:
    """The reply a ``body`` fault asks for: bytes/str verbatim, anything else as JSON."""
    body = fault.body
    if isinstance(body, str):
        body = body.encode("utf-8")
    elif not isinstance(body, bytes):
        body = json.dumps(body).encode("utf-8")
    return web.Response(status=fault.status, body=body, content_type="application/json")


def _json_of(response: web.Response) -> Any:
    """The JSON a response carries, or None (no body, not JSON)."""
    payload = response.body
    if not isinstance(payload, bytes | bytearray) or not payload:
        return None
    try:
        return json.loads(payload)
    except (ValueError, RecursionError):  # a hostile reply nested past Python's recursion
        return None


def _rewritten(response: web.Response,
               faults: list[Fault]) -> tuple[web.Response, tuple[str, ...]]:
    """``response`` with its JSON body passed through every ``rewrite`` fault, in order; a
    body that is not JSON is left alone (there is nothing to lie about structurally). Only
    the rewrites that changed something are named: a cut longer than the page is no lie."""
    data = _json_of(response)
    if data is None:
        return response, ()
    names = []
    for fault in faults:
        if fault.rewrite is not None:
            changed = fault.rewrite(data)
            if changed != data:
                names.append(fault.name or "rewrite")
            data = changed
    reply = web.Response(status=response.status, body=json.dumps(data).encode("utf-8"),
                         content_type="application/json")
    return reply, tuple(names)


def _accounts_of(request: web.Request, body: Any) -> frozenset[str]:
    """The accounts a request is for: ``accountNo`` in the query, the body, or batch items."""
    found = {request.query.get("accountNo", "")}
    if isinstance(body, dict):
        found.add(str(body.get("accountNo") or ""))
        items = body.get("orders")
        if isinstance(items, list):
            found.update(str(i.get("accountNo") or "") for i in items if isinstance(i, dict))
    found.discard("")
    return frozenset(found)


def _parse_day(value: str | None) -> date | None:
    if not value:
        return None
    for fmt in ("%Y/%m/%d", "%d/%m/%Y", "%Y-%m-%d"):
        with contextlib.suppress(ValueError):
            return datetime.strptime(value, fmt).date()
    raise web.HTTPBadRequest(
        text=json.dumps({"code": int(CODE_BAD_REQUEST), "msg": f"bad date {value!r}"}),
        content_type="application/json",
    )


class SimServer:
    """The aiohttp application and its state. ``Simulator`` (``control.py``) runs it."""

    def __init__(
        self,
        exchange: Exchange,
        *,
        keys: SimKeyPair,
        creds: ClientCredentials,
        sessions: SessionStore,
        faults: FaultPlan,
        buckets: TokenBuckets,
    ) -> None:
        self.exchange = exchange
        self.keys = keys
        self.creds = creds
        self.sessions = sessions
        self.faults = faults
        self.buckets = buckets
        # What tests read back; bounded so a long-running ``ssi-guard simulator`` stays small.
        self.requests: deque[RecordedRequest] = deque(maxlen=MAX_RECORDED)
        self.unknown_status: dict[str, str] = {}
        # Rows newest first (an order placed while a client pages shifts every later row one
        # place down, so a row can show on two pages): how order books usually list.
        self.newest_first = False
        self._batch_ids: set[str] = set()
        self._smart_otp: dict[str, int] = {}  # transaction id -> polls so far
        self.smart_otp_pending_polls = 1
        self._lock = threading.Lock()
        # The gateway's largest masterdata page: the SDK always asks for 1000, so a smaller
        # cap is how a test makes it walk several pages.
        self.master_page_size = 1000

    # ---- application ------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._gateway], client_max_size=1024**2)
        app.router.add_post("/api/v3/auth/token", self.auth_token)
        app.router.add_post("/api/v3/auth/refresh", self.auth_refresh)
        app.router.add_post("/api/v3/auth/requestOtp", self.request_otp)
        app.router.add_get("/api/v3/trading/orderBook", self.order_book)
        app.router.add_post("/api/v3/trading/order", self.place_order)
        app.router.add_delete("/api/v3/trading/order", self.cancel_order)
        app.router.add_delete("/api/v3/trading/order/batch", self.cancel_batch)
        app.router.add_post("/api/v3/trading/order/batch", self.place_batch)
        app.router.add_get("/api/v3/trading/accountBalance", self.account_balance)
        app.router.add_get("/api/v3/trading/ppmmrAccount", self.ppmmr)
        app.router.add_get("/api/v3/account/info", self.account_info)
        app.router.add_get("/api/v3/data/masterdata", self.master_data)
        return app

    @web.middleware
    async def _gateway(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw[:200].decode("utf-8", "replace")
        record = RecordedRequest(request.method, request.path, dict(request.query), body)
        with self._lock:
            self.requests.append(record)
        _BODY.set(body)
        try:
            response = await self._gate(request, handler, raw, body, record)
        finally:
            record.answered_at = time.monotonic()
        if record.status >= 0 and isinstance(response, web.Response):
            record.reply = _json_of(response)
        return response

    async def _gate(self, request: web.Request, handler: Handler, raw: bytes, body: Any,
                    record: RecordedRequest) -> web.StreamResponse:
        """The gateway proper: faults, rate limit, auth, signature, then the handler."""
        hang: Fault | None = None
        malformed = False
        override: Fault | None = None
        rewrites: list[Fault] = []
        effects: list[Fault] = []

        fired = self.faults.pick(request.method, request.path, _accounts_of(request, body))
        for fault in fired:
            if fault.kind == "rewrite":
                rewrites.append(fault)  # a lie in an answer, not a failure: record.fault kept
                continue
            if fault.kind == "effect":
                effects.append(fault)
                continue
            record.fault = fault.kind
            if fault.kind == "latency":
                await asyncio.sleep(fault.seconds)
            elif fault.kind == "error":
                record.status = fault.status
                headers = {}
                if fault.status == 429:
                    headers = {"Retry-After": f"{fault.retry_after:g}",
                               "X-RateLimit-Limit": str(self.buckets.rate),
                               "X-RateLimit-Remaining": "0"}
                code = CODE_RATE_LIMIT if fault.status == 429 else CODE_SERVER_ERROR
                return _error(fault.status, code, "injected fault", headers)
            elif fault.kind == "drop":
                record.status = -1
                return _drop(request)
            elif fault.kind == "hang":
                hang = fault
            elif fault.kind == "malformed":
                malformed = True
            elif fault.kind == "body":
                override = fault

        key = self._rate_key(request, body)
        admission = self.buckets.admit(key)
        # No quota headers when limiting is off: "Remaining: 0" would make the SDK pause.
        rl_headers = {} if self.buckets.rate <= 0 else {
            "X-RateLimit-Limit": str(admission.limit),
            "X-RateLimit-Remaining": str(admission.remaining)}
        if not admission.allowed:
            record.status = 429
            retry = max(1, int(admission.retry_after + 0.999))
            return _error(429, CODE_RATE_LIMIT, "rate limit exceeded",
                          {**rl_headers, "Retry-After": str(retry)})

        if request.path not in _PUBLIC:
            try:
                self.sessions.check(request.headers.get("Authorization"))
            except AuthFailure as exc:
                record.status = 401
                return _error(401, exc.code, exc.message, rl_headers)
        if (request.method, request.path) in _SIGNED and not self.keys.verify(
            raw, request.headers.get("X-Signature", "")
        ):
            record.status = 401
            return _error(401, CODE_BAD_SIGNATURE, "invalid signature", rl_headers)

        if hang is not None and not hang.apply_first:
            await asyncio.sleep(hang.seconds)  # the client gives up; nothing was applied
            record.status = -2
            return _drop(request)
        if override is not None and not override.apply_first:
            reply = _raw_reply(override)  # the handler never runs: nothing applied
            reply.headers.update(rl_headers)
            record.status = reply.status
            return reply
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            record.status = exc.status
            raise
        if hang is not None:
            await asyncio.sleep(hang.seconds)  # applied, but the answer comes too late
        if malformed:
            response = web.Response(status=200, text='{"code": 200, "data": [ {"orderId": ',
                                    content_type="application/json")
        if override is not None:
            response = _raw_reply(override)  # applied, then answered with the given body
        if rewrites and isinstance(response, web.Response):
            response, record.rewritten = _rewritten(response, rewrites)
        for fault in effects:
            if fault.effect is not None:
                fault.effect()
        for name, value in rl_headers.items():
            response.headers[name] = value
        record.status = response.status
        return response

    def _rate_key(self, request: web.Request, body: Any) -> str:
        """The apiKey a request is metered under. An expired or revoked bearer token still
        names its apiKey: a refresh (sent with the stale token) counts against the key too."""
        if isinstance(body, dict) and isinstance(body.get("apiKey"), str):
            return str(body["apiKey"])
        api_key = self.sessions.api_key_of(request.headers.get("Authorization"))
        return api_key or f"anon:{request.remote}"

    # ---- auth ---------------------------------------------------------------------------

    def _token_body(self, session: Session) -> dict[str, Any]:
        return {
            "code": 200,
            "msg": "Success",
            "data": {
                "accessToken": session.access_token,
                "expiresAt": int(session.access_expires),
                "refreshToken": session.refresh_token,
                "refreshExpiresAt": int(session.refresh_expires),
            },
        }

    async def auth_token(self, request: web.Request) -> web.Response:
        body = _BODY.get()
        if not isinstance(body, dict):
            return _error(400, CODE_BAD_REQUEST, "body must be a JSON object")
        if not self._credentials_ok(body):
            return _error(401, CODE_BAD_CREDENTIALS, "invalid apiKey or apiSecret")
        transaction = body.get("transactionId")
        if transaction:
            with self._lock:
                polls = self._smart_otp.get(str(transaction))
                if polls is None:
                    return _error(401, CODE_SMART_OTP_UNKNOWN, "unknown Smart OTP transaction")
                self._smart_otp[str(transaction)] = polls + 1
                if polls >= self.smart_otp_pending_polls:
                    del self._smart_otp[str(transaction)]  # approved: single use
            if polls < self.smart_otp_pending_polls:
                return _error(202, CODE_SMART_OTP_PENDING, "Push-approval is pending")
        elif str(body.get("otp") or "") != self.creds.otp:
            return _error(401, CODE_BAD_OTP, "invalid OTP")
        return web.json_response(self._token_body(self.sessions.login(self.creds.api_key)))

    def _credentials_ok(self, body: dict[str, Any]) -> bool:
        return bool(
            body.get("apiKey") == self.creds.api_key
            and body.get("apiSecret") == self.creds.api_secret
        )

    async def auth_refresh(self, request: web.Request) -> web.Response:
        body = _BODY.get()
        token = body.get("refreshToken") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            return _error(400, CODE_BAD_REQUEST, "refreshToken is required")
        try:
            session = self.sessions.refresh(token)
        except AuthFailure as exc:
            return _error(401, exc.code, exc.message)
        return web.json_response(self._token_body(session))

    async def request_otp(self, request: web.Request) -> web.Response:
        body = _BODY.get()
        if not isinstance(body, dict) or not self._credentials_ok(body):
            return _error(401, CODE_BAD_CREDENTIALS, "invalid apiKey or apiSecret")
        transaction = uuid.uuid4().hex
        with self._lock:
            self._smart_otp[transaction] = 0
        return web.json_response(
            {"code": 200, "msg": "Success",
             "data": {"transactionId": transaction, "message": "Push sent to your device"}}
        )

    # ---- trading ------------------------------------------------------------------------

    def _owned(self, request: web.Request, account: str | None) -> str:
        if not account or account not in self.exchange.accounts:
            raise web.HTTPForbidden(
                text=json.dumps({"code": 403201, "msg": f"account {account!r} not found"}),
                content_type="application/json",
            )
        return account

    async def order_book(self, request: web.Request) -> web.Response:
        account = self._owned(request, request.query.get("accountNo"))
        start = _parse_day(request.query.get("from"))
        end = _parse_day(request.query.get("to")) or start
        orders = self.exchange.book(account)
        if start is not None and end is not None:
            orders = [o for o in orders if start <= _day(o.input_time) <= end]
        try:
            index = int(request.query.get("pageIndex", "1"))
            size = int(request.query.get("pageSize", str(MAX_PAGE_SIZE)))
        except ValueError:
            return _error(400, CODE_BAD_REQUEST, "pageIndex and pageSize must be integers")
        if index < 1 or size < 1:
            return _error(400, CODE_BAD_REQUEST, "pageIndex and pageSize start at 1")
        size = min(size, MAX_PAGE_SIZE)  # SSI caps a page at 1,000 rows
        if not orders:
            return web.json_response({"code": 204, "msg": "No Content"})
        if self.newest_first:
            orders = orders[::-1]
        page = orders[(index - 1) * size:index * size]
        wire = [self._order_wire(o) for o in page]
        return web.json_response(
            {"accountNo": account, "totalRecord": len(orders), "orderList": wire}
        )

    def _order_wire(self, order: SimOrder) -> dict[str, object]:
        wire = self.exchange.order_wire(order)
        if order.order_id in self.unknown_status:
            wire["orderStatus"] = self.unknown_status[order.order_id]
        return wire

    def _place(self, item: dict[str, Any]) -> SimOrder:
        """Place one order body (single or batch item); refusals are ``ExchangeError``."""
        account = str(item.get("accountNo") or "")
        if account not in self.exchange.accounts:
            raise ExchangeError(ERR_NOT_OWNER, f"account {account!r} not found", 403)
        symbol = str(item.get("symbol", ""))
        if symbol not in self.exchange.symbols:
            raise ExchangeError(ERR_BAD_ORDER, f"unknown symbol {symbol!r}")
        order_type = str(item.get("orderType", "LO"))
        price_raw = item.get("price")
        price: int | str
        if order_type in MARKET_ORDER_TYPES or price_raw in (None, ""):
            # The SDK sends price "0" for market types: the price is the order type's word.
            price = order_type
        else:
            try:
                price = int(float(price_raw))
            except (TypeError, ValueError):
                price = str(price_raw)
        try:
            quantity = int(item.get("quantity", 0))
        except (TypeError, ValueError):
            raise ExchangeError(CODE_BAD_REQUEST, "quantity must be an integer") from None
        return self.exchange.place(
            account,
            symbol,
            side=str(item.get("side", "")),
            order_type=order_type,
            price=price,
            quantity=quantity,
            client_request_id=str(item.get("clientRequestId") or ""),
        )

    async def place_order(self, request: web.Request) -> web.Response:
        body = _BODY.get()
        if not isinstance(body, dict):
            return _error(400, CODE_BAD_REQUEST, "body must be a JSON object")
        self._owned(request, body.get("accountNo"))
        try:
            order = self._place(body)
        except ExchangeError as exc:
            return _error(exc.http_status, exc.code, exc.message)
        return web.json_response(
            {"orderId": order.order_id, "clientRequestId": order.client_request_id,
             "orderStatus": order.status}
        )

    def _find(self, account: str, item: dict[str, Any]) -> str:
        order_id = item.get("orderId")
        if order_id:
            return str(order_id)
        crid = item.get("clientRequestId")
        for order in self.exchange.book(account):
            if order.client_request_id == crid:
                return order.order_id
        return str(crid or "")

    async def cancel_order(self, request: web.Request) -> web.Response:
        body = _BODY.get()
        if not isinstance(body, dict):
            return _error(400, CODE_BAD_REQUEST, "body must be a JSON object")
        account = self._owned(request, body.get("accountNo"))
        try:
            order = self.exchange.request_cancel(account, self._find(account, body))
        except ExchangeError as exc:
            return _error(exc.http_status, exc.code, exc.message)
        return web.json_response(
            {"clientCancelId": body.get("clientCancelId", ""),
             "orderId": order.order_id, "clientRequestId": order.client_request_id,
             "orderStatus": order.status}
        )

    async def cancel_batch(self, request: web.Request) -> web.Response:
        def cancel(item: dict[str, Any]) -> SimOrder:
            account = str(item.get("accountNo") or "")
            if account not in self.exchange.accounts:
                raise ExchangeError(ERR_NOT_OWNER, f"account {account!r} not found", 403)
            return self.exchange.request_cancel(account, self._find(account, item))

        return self._batch(cancel)

    async def place_batch(self, request: web.Request) -> web.Response:
        return self._batch(self._place)

    def _batch(self, apply: Callable[[dict[str, Any]], SimOrder]) -> web.Response:
        """The batch envelope both verbs share: 1..20 items, the replay window, a single-use
        ``batchRequestId``, then one result per item, in request order."""
        body = _BODY.get()
        if not isinstance(body, dict) or not isinstance(body.get("orders"), list):
            return _error(400, CODE_BAD_REQUEST, "body must carry an orders list")
        items = body["orders"]
        if not 1 <= len(items) <= MAX_BATCH:
            return _error(400, CODE_BAD_REQUEST, f"a batch holds 1..{MAX_BATCH} orders")
        batch_id = str(body.get("batchRequestId") or "")
        if not batch_id:
            return _error(400, CODE_BAD_REQUEST, "batchRequestId is required")
        sent_ms = body.get("batchRequestTime")
        if not isinstance(sent_ms, int) or abs(time.time() * 1000 - sent_ms) > REPLAY_WINDOW_MS:
            return _error(400, CODE_REPLAY_WINDOW, "batchRequestTime outside the replay window")
        with self._lock:
            if batch_id in self._batch_ids:
                return _error(409, CODE_DUPLICATE, "batchRequestId already used")
            self._batch_ids.add(batch_id)
        results = []
        for item in items:
            if not isinstance(item, dict):
                results.append({"success": False, "errorCode": CODE_BAD_REQUEST,
                                "errorMessage": "item must be an object"})
                continue
            result: dict[str, Any] = {"clientRequestId": item.get("clientRequestId", "")}
            if "clientCancelId" in item:  # cancels only
                result["clientCancelId"] = item["clientCancelId"]
            try:
                order = apply(item)
                result.update(success=True, orderId=order.order_id,
                              clientRequestId=order.client_request_id, orderStatus=order.status)
            except ExchangeError as exc:
                result.update(success=False, orderId=item.get("orderId", ""),
                              errorCode=exc.code, errorMessage=exc.message)
            results.append(result)
        return web.json_response({"batchRequestId": batch_id, "results": results})

    # ---- cash and reference data --------------------------------------------------------

    async def account_balance(self, request: web.Request) -> web.Response:
        """One member per account kind, as SSI answers: ``equity`` for a Cash or Margin
        account, ``derivative`` for a Derivative one (the other null). A derivatives account's
        margin is posted at VSDC (``cashVSDC``); what it does not hold is withdrawable."""
        account = self._owned(request, request.query.get("accountNo"))
        with self.exchange.lock:
            hold = self.exchange.on_hold(account)
            cash = self.exchange.accounts[account].cash
            derivative = self.exchange.is_derivative(account)
        if derivative:
            return web.json_response({"equity": None, "derivative": {
                "accountNo": account,
                "accountBalance": cash,
                "fee": 0, "commission": 0, "interest": 0, "extInterest": 0, "loan": 0,
                "deliveryAmount": 0, "floatingPL": 0, "tradingPL": 0, "totalPL": 0,
                "withdrawable": cash - hold,
                "cashSSI": cash - hold, "validNonCashSSI": 0, "withdrawableSSI": cash - hold,
                "cashVSDC": hold, "validNonCashVSDC": 0, "withdrawableVSDC": 0,
            }})
        equity = {
            "accountNo": account,
            "accountBalance": cash,
            "withdrawable": cash - hold,
            "onHoldCash": hold,
            "buyUnmatched": hold,
        }
        return web.json_response({"equity": equity, "derivative": None})

    async def ppmmr(self, request: web.Request) -> web.Response:
        account = self._owned(request, request.query.get("accountNo"))
        with self.exchange.lock:
            hold = self.exchange.on_hold(account)
            cash = self.exchange.accounts[account].cash
            derivative = self.exchange.is_derivative(account)
        power = cash - hold
        if derivative:
            ratio = round(100 * hold / cash, 2) if cash else 0
            return web.json_response({"equity": None, "derivative": {
                "accountNo": account, "accountBalance": cash, "withdrawable": power,
                "totalEquity": cash, "marginable": power, "depositable": 0, "rcCall": 0,
                "cashSSI": power, "withdrawableSSI": power, "eeSSI": power,
                "cashVSDC": hold, "withdrawableVSDC": 0, "eeVSDC": 0,
                "marginReqSSI": hold, "marginReqVSDC": hold,
                "accountRatioSSI": ratio, "accountRatioVSDC": ratio,
                "marginCallSSI": 0, "marginCallVSDC": 0,
            }})
        return web.json_response({"equity": {"accountNo": account, "purchasingPower": power,
                                             "withdrawable": power, "ee": power},
                                  "derivative": None})

    async def account_info(self, request: web.Request) -> web.Response:
        with self.exchange.lock:
            types = {a: x.account_type for a, x in self.exchange.accounts.items()}
        return web.json_response(
            [{"accountNo": a, "accountType": types.get(a, "Cash")} for a in self.creds.accounts]
        )

    async def master_data(self, request: web.Request) -> web.Response:
        day = _parse_day(request.query.get("from")) or _day(self.exchange.clock())
        try:
            page = max(1, int(request.query.get("pageIndex") or 1))
            size = max(1, int(request.query.get("pageSize") or 1000))
        except ValueError:
            return _error(400, CODE_BAD_REQUEST, "pageIndex and pageSize must be integers")
        size = min(size, self.master_page_size)
        symbols = sorted(self.exchange.symbols.values(), key=lambda s: s.symbol)
        pages = max(1, -(-len(symbols) // size))
        chunk = symbols[(page - 1) * size : page * size]
        data = [{"symbol": s.symbol, "board": s.board, "tradingDate": day.strftime("%Y/%m/%d"),
                 "ceiling": s.ceiling, "floor": s.floor, "refPrice": s.ref_price} for s in chunk]
        return web.json_response({"code": 200, "msg": "Success", "data": data,
                                  "pagesCount": pages, "totalRecord": len(symbols)})
