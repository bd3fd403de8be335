"""The broker adapter: the only module that calls ``ssi_sdk``.

It turns SDK calls into the guard's values (``BookOrder``, ``CashFigures``, ``CancelReply``) and
SDK/httpx failures into a small, honest set of errors:

- ``ReauthRequired``: the session is gone and only ``ssi-guard login`` can bring it back;
- ``BrokerCallError(kind=...)``: ``rate_limited`` (with ``retry_after``), ``ambiguous`` (a
  write that may or may not have been applied: timeout, 5xx, dropped connection),
  ``unavailable`` (nothing was sent: connection refused), ``refused`` (the broker said no);
- ``BrokerReplyError``: the reply did not parse. Nothing is ever decided from such a reply.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import Any, Literal, TypeVar

import httpx
import structlog
from ssi_sdk import (
    APIError,
    AsyncAuth,
    AsyncData,
    AsyncTrading,
    AuthenticationError,
    Config,
    RateLimitError,
    ReauthenticationRequired,
    SSIError,
)
from ssi_sdk.models import Token

from guard.broker.tokens import TokenCache
from guard.clock import EXCHANGE_TZ
from guard.errors import BrokerReplyError, BrokerUnavailable, ReauthRequired
from guard.record.redact import secrets_registry
from guard.settings import Credentials
from guard.snapshot.model import BookOrder, CashFigures

__all__ = ["Broker", "BrokerCallError", "CallKind", "CancelReply"]

T = TypeVar("T")
CallKind = Literal["rate_limited", "ambiguous", "unavailable", "refused"]

REFRESH_AHEAD_S = 300  # refresh this long before the access token expires
# Pace below SSI's published 10 requests/s: the server meters arrivals, the SDK departures, and
# loopback or network jitter between the two is enough to trip a 429 at exactly the limit.
DEFAULT_RATE_LIMIT = 9
MAX_BOOK_ROWS = 1000  # the SDK reads one page of 1000; more would be silently cut


class BrokerCallError(BrokerUnavailable):
    """A call that failed in a way the caller must tell apart (see the module docstring)."""

    def __init__(
        self,
        kind: CallKind,
        message: str,
        *,
        retry_after: float | None = None,
        code: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after
        self.code = code
        self.status = status


@dataclass(frozen=True, slots=True)
class CancelReply:
    """The broker's answer for one cancel item: accepted (normally WC) or refused with a code."""

    account: str
    order_id: str
    accepted: bool
    status: str
    error_code: str
    error_message: str


def _code(value: Any) -> str:
    if isinstance(value, Enum):
        return str(value.value)
    return "" if value is None else str(value)


def _int_field(value: Any, name: str, order_id: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise BrokerReplyError(f"order {order_id}: field {name} is not a whole number")
    if value < 0:
        raise BrokerReplyError(f"order {order_id}: field {name} is negative ({int(value)})")
    return int(value)


def _price(value: Any) -> tuple[Decimal | None, str | None]:
    if isinstance(value, Enum):
        return None, str(value.value)
    if isinstance(value, bool):
        raise BrokerReplyError("price is a boolean")
    if isinstance(value, int | float):
        return Decimal(str(value)), None
    text = str(value).strip()
    try:
        return Decimal(text.replace(",", "")), None
    except InvalidOperation:
        return None, text or None


def to_book_order(order: Any, account: str) -> BookOrder:
    """Parse one SDK ``Order``; anything implausible raises ``BrokerReplyError``."""
    order_id = _code(getattr(order, "order_id", ""))
    if not order_id:
        raise BrokerReplyError(f"account {account}: an order in the book has no orderId")
    quantity = _int_field(order.quantity, "quantity", order_id)
    filled = _int_field(order.filled_quantity, "filledQty", order_id)
    cancelled = _int_field(order.cancel_quantity, "cancelQty", order_id)
    if quantity == 0 or filled + cancelled > quantity:
        raise BrokerReplyError(
            f"order {order_id}: quantity {quantity} does not cover filled {filled} "
            f"+ cancelled {cancelled}"
        )
    status = _code(order.status)
    if not status:
        raise BrokerReplyError(f"order {order_id}: field orderStatus is missing")
    try:
        entered = datetime.strptime(str(order.input_time), "%Y/%m/%d %H:%M:%S")
    except ValueError:
        raise BrokerReplyError(
            f"order {order_id}: field inputTime {str(order.input_time)[:40]!r} is not "
            "YYYY/MM/DD HH:MM:SS"
        ) from None
    price, word = _price(order.price)
    owner = _code(getattr(order, "account_no", "")) or account
    if owner != account:
        raise BrokerReplyError(f"order {order_id}: belongs to {owner}, asked for {account}")
    return BookOrder(
        account=account,
        order_id=order_id,
        client_request_id=_code(order.client_request_id),
        symbol=_code(order.symbol),
        side=_code(order.side),
        order_type=_code(order.order_type),
        price=price,
        price_word=word,
        quantity=quantity,
        filled=filled,
        cancelled=cancelled,
        status=status,
        input_time=entered.replace(tzinfo=EXCHANGE_TZ),
    )


def _money(value: Any, name: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise BrokerReplyError(f"cash field {name} is not a number")
    return Decimal(str(value))


class Broker:
    """One authenticated connection to SSI (or the simulator) shared by every call.

    One ``AsyncAuth`` means one rate limiter for all calls, as SSI meters per API key.
    """

    def __init__(
        self,
        creds: Credentials,
        cache: TokenCache | None = None,
        *,
        rate_limit: int = DEFAULT_RATE_LIMIT,
        timeout_ms: int = 10_000,
        max_retries: int = 2,
        retry_delay_ms: int = 300,
        clock: Callable[[], float] = time.time,
        session_owner: bool = True,
    ) -> None:
        self.creds = creds
        self.cache = cache
        self._wall = clock
        # Only the guard that owns the state directory may refresh or log in: a refresh
        # rotates the refresh token, and the daemon's copy would then count as reused, which
        # makes SSI revoke the whole session. `check` borrows the cached token read-only.
        self.session_owner = session_owner
        self._log = structlog.get_logger("guard.broker")
        self.config = Config(
            client_id=creds.client_id,
            api_key=creds.api_key,
            api_secret=creds.api_secret.get_secret_value(),
            private_key=creds.private_key.get_secret_value(),
            api_url=creds.api_url,
            rate_limit_per_second=rate_limit,
            timeout_ms=timeout_ms,
            max_retries=max_retries,
            retry_delay_ms=retry_delay_ms,
            log_level="WARNING",  # the SDK resets its logger's level to this on every Auth()
        )
        self._auth: AsyncAuth | None = None
        self._trading: AsyncTrading | None = None
        self._data: AsyncData | None = None
        self._cache_mtime = 0.0
        # SSI_OTP logs in once at most: after that only `ssi-guard login` may, or two guards
        # on one API key would keep killing each other's sessions.
        self._otp_spent = False
        self._session_lock: asyncio.Lock | None = None

    # ---- lifecycle ----------------------------------------------------------------------

    async def open(self) -> None:
        self._session_lock = asyncio.Lock()
        self._auth = AsyncAuth(self.config)
        self._trading = AsyncTrading(self._auth)
        self._data = AsyncData(self._auth)
        await self._load_cached_token()

    async def close(self) -> None:
        if self._auth is not None:
            await self._auth.close()
        self._auth = self._trading = self._data = None

    async def __aenter__(self) -> Broker:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def auth(self) -> AsyncAuth:
        if self._auth is None:
            raise RuntimeError("Broker is not open")
        return self._auth

    @property
    def trading(self) -> AsyncTrading:
        if self._trading is None:
            raise RuntimeError("Broker is not open")
        return self._trading

    @property
    def rate_limit_seen(self) -> dict[str, int | None]:
        """The last ``X-RateLimit-*`` values the server sent."""
        return dict(self.auth.rest_client.rate_limit)

    # ---- session ------------------------------------------------------------------------

    async def _load_cached_token(self) -> bool:
        if self.cache is None:
            return False
        self._cache_mtime = self.cache.mtime()
        cached = self.cache.load(self.creds.api_url, self.creds.api_key)
        if cached is None:
            return False
        await self.auth.set_token(Token.from_dict(cached.token))
        return True

    def _save_token(self) -> None:
        token = self.auth.token
        if token is None:
            return
        secrets_registry.add(token.access_token, token.refresh_token)
        if self.cache is not None:
            self.cache.save(self.creds.api_url, self.creds.api_key, token.to_dict())
            self._cache_mtime = self.cache.mtime()

    @property
    def token_expires_at(self) -> int:
        token = self.auth.token
        return token.expires_at if token is not None else 0

    @property
    def has_session(self) -> bool:
        token = self.auth.token
        return token is not None and (not self.auth.is_token_expired or self.auth.can_refresh)

    async def login(self, otp: str | None = None, transaction_id: str | None = None) -> None:
        """Log in with an OTP (or an approved Smart OTP transaction) and cache the token."""
        try:
            if transaction_id:
                await self.auth.ensure_authenticated(transaction_id=transaction_id)
            else:
                await self.auth.authenticate(otp=otp)
        except ReauthenticationRequired:
            raise ReauthRequired("the broker refused the login: run ssi-guard login") from None
        except AuthenticationError as exc:
            raise ReauthRequired(f"login refused by the broker (code {exc.code})") from None
        except (SSIError, httpx.HTTPError) as exc:
            raise self._translate(exc, write=False) from None
        self._save_token()

    async def request_smart_otp(self) -> str:
        """Ask for a Smart OTP push; returns the transaction id to poll with."""
        try:
            reply = await self.auth.request_otp_typed()
        except (SSIError, httpx.HTTPError) as exc:
            raise self._translate(exc, write=False) from None
        if not reply.transaction_id:
            raise BrokerReplyError("the broker did not return a Smart OTP transaction id")
        return str(reply.transaction_id)

    async def ensure_session(self) -> None:
        """Make sure a usable token is held: pick up a fresh login from the cache, refresh
        ahead of expiry, or log in with ``SSI_OTP``. Never prompts.

        Callers are serialised: two sweeps starting together must not both log in (the
        second login ends the first session, and ``SSI_OTP`` may only be spent once), nor
        find the OTP spent while the first login is still on the wire.
        """
        if self._session_lock is None:
            raise RuntimeError("Broker is not open")
        async with self._session_lock:
            await self._ensure_session()

    async def _ensure_session(self) -> None:
        if self.cache is not None and self.cache.mtime() != self._cache_mtime:
            await self._load_cached_token()
        token = self.auth.token
        if token is not None and token.expires_at - self._wall() > REFRESH_AHEAD_S:
            return
        if not self.session_owner:
            if token is not None and not self.auth.is_token_expired:
                return
            raise ReauthRequired(
                "no valid cached session, and this command never refreshes or logs in (that "
                "would end a running guard's session): run ssi-guard login"
            )
        if token is not None and self.auth.can_refresh:
            try:
                await self.auth.refresh()
            except ReauthenticationRequired:
                raise ReauthRequired(
                    "the SSI session was revoked or expired: run ssi-guard login"
                ) from None
            except AuthenticationError as exc:
                raise ReauthRequired(f"token refresh refused (code {exc.code})") from None
            except (SSIError, httpx.HTTPError) as exc:
                raise self._translate(exc, write=False) from None
            self._save_token()
            return
        if self.creds.otp is not None and not self._otp_spent:
            self._otp_spent = True
            await self.login(otp=self.creds.otp.get_secret_value())
            return
        raise ReauthRequired("no valid SSI session: run ssi-guard login")

    # ---- calls --------------------------------------------------------------------------

    def _translate(self, exc: BaseException, *, write: bool) -> BrokerCallError:
        """Map an SDK or httpx failure to what the caller must do about it (and log it as
        ``broker.error``, which the metrics count by kind)."""
        error = self._classify(exc, write=write)
        self._log.info("broker.error", kind=error.kind, status=error.status, code=error.code,
                       write=write, error=str(error))
        return error

    def _classify(self, exc: BaseException, *, write: bool) -> BrokerCallError:
        if isinstance(exc, RateLimitError):
            wait = (exc.retry_after_ms or 1000) / 1000
            return BrokerCallError("rate_limited", "rate limited by the broker (429)",
                                   retry_after=wait, code=str(exc.code), status=429)
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            name = type(exc).__name__
            return BrokerCallError("unavailable", f"cannot connect to the broker ({name})")
        if isinstance(exc, httpx.HTTPError):
            kind: CallKind = "ambiguous" if write else "unavailable"
            return BrokerCallError(kind, f"no answer from the broker ({type(exc).__name__})")
        if isinstance(exc, APIError):
            status = exc.status_code or 0
            if 200 <= status < 300 and str(exc.code) == str(status):
                # The SDK could not read a 2xx body (not JSON: its code is then the HTTP
                # status). The server did answer "OK", so a write was run: a refusal would
                # make the caller send the same cancels again.
                kind = "ambiguous" if write else "unavailable"
                return BrokerCallError(kind, f"unreadable reply from the broker (HTTP {status},"
                                       " not JSON)", code=str(exc.code), status=status)
            if status >= 500 or status in (408, 409) or (
                status == 200 and str(exc.code).isdigit() and int(str(exc.code)) >= 500
            ):
                kind = "ambiguous" if write else "unavailable"
                return BrokerCallError(kind, f"broker error HTTP {status} (code {exc.code})",
                                       code=str(exc.code), status=status)
            return BrokerCallError("refused", f"broker refused (HTTP {status}, code {exc.code})",
                                   code=str(exc.code), status=status)
        if isinstance(exc, SSIError):
            return BrokerCallError("refused", f"SDK refused the call ({type(exc).__name__})")
        raise exc

    async def _call(self, make: Callable[[], Awaitable[T]], *, write: bool) -> T:
        """Run one SDK call. A 401 means the gateway refused it before any handler ran, so
        after a successful refresh it is safe to send again, even a cancel.

        A 403 that survives a fresh token is not about the session: it is this call being
        forbidden (e.g. an account the API key does not own). It is a refusal of this one
        call, so one bad account in rules.yaml cannot stop the others being guarded.

        A reply the SDK cannot parse is a ``BrokerReplyError`` for a read; for a write it is
        ``ambiguous``: the server answered, so the cancel may have been applied, and only a
        re-read of the book can tell.
        """
        for attempt in (1, 2):
            try:
                return await make()
            except ReauthenticationRequired:
                raise ReauthRequired("the SSI session was revoked: run ssi-guard login") from None
            except AuthenticationError as exc:
                if attempt == 2:
                    if exc.status_code == 403:
                        raise BrokerCallError(
                            "refused", f"broker forbids this call (HTTP 403, code {exc.code})",
                            code=str(exc.code), status=403,
                        ) from None
                    raise ReauthRequired("the broker keeps refusing the session") from None
                await self._recover_session()
            except (SSIError, httpx.HTTPError) as exc:
                raise self._translate(exc, write=write) from None
            except (ValueError, TypeError, AttributeError, KeyError) as exc:
                message = f"unparseable reply from the broker ({type(exc).__name__})"
                if write:
                    raise BrokerCallError("ambiguous", message) from None
                raise BrokerReplyError(message) from None
        raise AssertionError("unreachable")

    async def _recover_session(self) -> None:
        """After a 401 on a normal call: try a refresh; a dead session needs a new login."""
        if self.cache is not None and self.cache.mtime() != self._cache_mtime:
            await self._load_cached_token()
            return
        if not self.session_owner:
            raise ReauthRequired("the cached SSI session was refused: run ssi-guard login")
        if not self.auth.can_refresh:
            raise ReauthRequired("the SSI session is gone: run ssi-guard login")
        try:
            await self.auth.refresh()
        except AuthenticationError:
            raise ReauthRequired(
                "the SSI session was revoked (another login?): run ssi-guard login"
            ) from None
        except (SSIError, httpx.HTTPError) as exc:
            raise self._translate(exc, write=False) from None
        self._save_token()

    async def orders(self, account: str, day: date) -> tuple[BookOrder, ...]:
        """Today's book for ``day`` in exchange time (the SDK's "today" is the host's date)."""
        text = day.strftime("%Y/%m/%d")
        raw = await self._call(
            lambda: self.trading.portfolio.get_historical_orders(account, text, text), write=False
        )
        if not isinstance(raw, list):
            raise BrokerReplyError(f"account {account}: order book is not a list")
        if len(raw) >= MAX_BOOK_ROWS:
            raise BrokerReplyError(
                f"account {account}: {len(raw)} orders in one page; the book may be cut"
            )
        return tuple(to_book_order(o, account) for o in raw)

    async def cash(self, account: str) -> CashFigures:
        balance = await self._call(
            lambda: self.trading.portfolio.get_equity_balance(account), write=False
        )
        ppmmr = await self._call(
            lambda: self.trading.portfolio.get_equity_ppmmr(account), write=False
        )
        if balance is None or ppmmr is None:
            raise BrokerReplyError(f"account {account}: no equity balance in the reply")
        return CashFigures(
            withdrawable=_money(balance.withdrawable, "withdrawable"),
            on_hold_cash=_money(balance.on_hold_cash, "onHoldCash"),
            purchasing_power=_money(ppmmr.purchasing_power, "purchasingPower"),
        )

    async def cancel_batch(self, items: Sequence[tuple[str, str]]) -> list[CancelReply]:
        """One signed batch DELETE; replies are matched to ``items`` by position."""
        body = [{"account_no": account, "order_id": order_id} for account, order_id in items]
        reply = await self._call(
            lambda: self.trading.trading.cancel_batch_orders(body),  # type: ignore[arg-type]
            write=True,
        )
        results = list(getattr(reply, "results", []) or [])
        if len(results) != len(items):
            raise BrokerCallError(
                "ambiguous", f"batch reply has {len(results)} results for {len(items)} cancels"
            )
        out = []
        for (account, order_id), result in zip(items, results, strict=True):
            if result.order_id and str(result.order_id) != order_id:
                raise BrokerCallError("ambiguous", "batch reply results are out of order")
            out.append(
                CancelReply(
                    account=account,
                    order_id=order_id,
                    accepted=bool(result.success),
                    status=_code(result.status),
                    error_code=str(result.error_code or ""),
                    error_message=str(result.error_message or "")[:200],
                )
            )
        return out

    async def cancel_one(self, account: str, order_id: str) -> CancelReply:
        """One signed single DELETE; a refusal comes back as a reply, not an error."""
        try:
            reply = await self._call(
                lambda: self.trading.trading.cancel_order_by_order_id(account, order_id),
                write=True,
            )
        except BrokerCallError as exc:
            if exc.kind != "refused":
                raise
            return CancelReply(account, order_id, False, "", exc.code or "", str(exc))
        return CancelReply(account, order_id, True, _code(reply.status), "", "")

    async def master_data(self, day: date) -> list[tuple[str, str]]:
        """(symbol, board) pairs for ``day``: the broker's map from symbol to board."""
        if self._data is None:
            raise RuntimeError("Broker is not open")
        data = self._data
        text = day.strftime("%Y/%m/%d")
        rows = await self._call(
            lambda: data.market_data.get_master_data_historical(text, text), write=False
        )
        return [(str(r.symbol), _code(r.board)) for r in rows if r.symbol and r.board]
