"""The broker client: the one stateful connection to SSI (or the simulator) through ``ssi_sdk``.

It makes the SDK calls, leaves reading the replies to ``guard.broker.replies``, and turns
SDK/httpx failures into a small, honest set of errors (``guard.errors``):

- ``ReauthRequired``: the session is gone and only ``ssi-guard login`` can bring it back;
- ``BrokerCallError(kind=...)``: ``rate_limited`` (with ``retry_after``), ``ambiguous`` (a
  write that may or may not have been applied: timeout, 5xx, dropped connection),
  ``unavailable`` (nothing was sent: connection refused), ``refused`` (the broker said no);
- ``BrokerReplyError``: the reply did not parse. Nothing is ever decided from such a reply.

Replies are read from the raw JSON where the SDK's models would guess (see
``guard.broker.replies``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import date, datetime
from functools import partial
from typing import Any, TypeVar

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
from ssi_sdk.constant import (
    EP_ORDER_HISTORY,
    EP_TRADING_ORDER,
    EP_TRADING_ORDER_BATCH,
    HEADER_SIGNATURE,
)
from ssi_sdk.exceptions import ValidationError
from ssi_sdk.models import (
    BatchOrderRequest,
    CancelOrderRequest,
    OrderBookRequest,
    Token,
)
from ssi_sdk.utils import (
    generate_request_id,
    get_device_id,
    require_non_empty,
    sign,
)

from guard.broker import replies
from guard.broker.budget import Budget, answer_limit
from guard.broker.tokens import TokenCache
from guard.clock import EXCHANGE_TZ
from guard.errors import (
    BrokerCallError,
    BrokerError,
    BrokerReplyError,
    CallKind,
    ReauthRequired,
    call_error,
)
from guard.market.accounts import (
    AccountKind,
    AccountTyping,
    DerivativeCash,
    kind_of_type,
    suffix_hint,
)
from guard.market.instruments import Instrument
from guard.model import BookOrder, CancelReply, CashFigures
from guard.record.redact import secrets_registry
from guard.settings import Credentials

__all__ = ["DEFAULT_RATE_LIMIT", "Broker"]

T = TypeVar("T")

REFRESH_AHEAD_S = 300  # refresh this long before the access token expires
# Pace below SSI's published 10 requests/s: the server meters arrivals, the SDK departures, and
# loopback or network jitter between the two is enough to trip a 429 at exactly the limit.
DEFAULT_RATE_LIMIT = 9
MAX_PASSES = 4  # reads of a book that keeps changing while it is paged, before it is unread


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
        # Every call of every account spends from this one budget, by priority (see
        # ``guard.broker.budget``); the SDK's own limiter stays behind it.
        self.budget = Budget(rate_limit)
        # Pages each account's book took at its last read: the next read asks for them all at
        # once, instead of learning the count from page 1 first.
        self._pages_hint: dict[str, int] = {}
        self._auth: AsyncAuth | None = None
        self._trading: AsyncTrading | None = None
        self._data: AsyncData | None = None
        self._cache_mtime = 0.0
        # SSI_OTP logs in once at most: after that only `ssi-guard login` may, or two guards
        # on one API key would keep killing each other's sessions.
        self._otp_spent = False
        # Why the session in memory is not in the token cache (None when it is): see
        # ``_save_token``.
        self.token_unsaved: str | None = None
        self._session_lock: asyncio.Lock | None = None
        # Each account's kind, read once per exchange day (``account_typing``).
        self._typing: dict[str, AccountTyping] = {}
        self._typing_day: date | None = None
        self._listing: tuple[dict[str, str], str] | None = None  # accounts, or why not
        self._typing_lock: asyncio.Lock | None = None

    # ---- lifecycle ----------------------------------------------------------------------

    async def open(self) -> None:
        self._session_lock = asyncio.Lock()
        self._typing_lock = asyncio.Lock()
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
        """Cache the session. A cache that cannot be written (a full disk) never breaks the
        call that refreshed it: the token is kept in memory, ``token_unsaved`` says why, an
        error is logged, and the save is tried again before every later call. (A refresh
        rotates the single-use refresh token: a later process that reads the old one from
        the cache revokes the session, so the caller must not end quietly while unsaved.)"""
        token = self.auth.token
        if token is None:
            return
        secrets_registry.add(token.access_token, token.refresh_token)
        if self.cache is None:
            return
        try:
            self.cache.save(self.creds.api_url, self.creds.api_key, token.to_dict())
        except OSError as exc:
            why = f"cannot write {self.cache.path}: {exc.strerror or type(exc).__name__}"
            if why != self.token_unsaved:
                self._log.error("token.save_failed", error=why,
                                action="free the state directory; the session is kept in "
                                       "memory until it can be saved")
            self.token_unsaved = why
            return
        self.token_unsaved = None
        self._cache_mtime = self.cache.mtime()

    @property
    def request_timeout_s(self) -> float:
        """How long one request may take before the SDK gives up on it."""
        return float(self.config.timeout_ms) / 1000

    def session_changed_at(self) -> float:
        """The token cache's mtime: it changes when ``ssi-guard login`` writes a new token."""
        return self.cache.mtime() if self.cache is not None else 0.0

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
        if self.token_unsaved is not None:
            self._save_token()  # the disk may have been freed since
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
            try:
                await self.login(otp=self.creds.otp.get_secret_value())
            except BrokerCallError as exc:
                if not exc.reached:
                    # The connection was refused: the OTP never left this host, so it is
                    # still unused. Spending it here would make a guard started while the
                    # network (or SSI) is down ask for `ssi-guard login` once it is back.
                    self._otp_spent = False
                raise
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
            return call_error("rate_limited", "rate limited by the broker (429)",
                                   retry_after=wait, code=str(exc.code), status=429)
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            name = type(exc).__name__
            return call_error("unavailable", f"cannot connect to the broker ({name})",
                                   reached=False)
        if isinstance(exc, httpx.HTTPError):
            kind: CallKind = "ambiguous" if write else "unavailable"
            return call_error(kind, f"no answer from the broker ({type(exc).__name__})")
        if isinstance(exc, APIError):
            status = exc.status_code or 0
            if 200 <= status < 300 and str(exc.code) == str(status):
                # The SDK could not read a 2xx body (not JSON: its code is then the HTTP
                # status). The server did answer "OK", so a write was run: a refusal would
                # make the caller send the same cancels again.
                kind = "ambiguous" if write else "unavailable"
                return call_error(kind, f"unreadable reply from the broker (HTTP {status},"
                                       " not JSON)", code=str(exc.code), status=status)
            if status >= 500 or status in (408, 409) or (
                status == 200 and str(exc.code).isdigit() and int(str(exc.code)) >= 500
            ):
                kind = "ambiguous" if write else "unavailable"
                return call_error(kind, f"broker error HTTP {status} (code {exc.code})",
                                       code=str(exc.code), status=status)
            return call_error("refused", f"broker refused (HTTP {status}, code {exc.code})",
                                   code=str(exc.code), status=status)
        if isinstance(exc, SSIError):
            return call_error("refused", f"SDK refused the call ({type(exc).__name__})")
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
            await self.budget.take()
            seen = self._auth.rest_client.rate_limit if self._auth is not None else None
            limit = None if write else answer_limit()
            try:
                if limit is None:
                    return await make()
                try:
                    return await asyncio.wait_for(make(), limit)
                except TimeoutError:
                    raise call_error("unavailable", f"no answer within {limit:g}s") from None
            except RateLimitError as exc:
                self.budget.pause((exc.retry_after_ms or 1000) / 1000)
                raise self._translate(exc, write=write) from None
            except ReauthenticationRequired:
                raise ReauthRequired("the SSI session was revoked: run ssi-guard login") from None
            except AuthenticationError as exc:
                if attempt == 2:
                    if exc.status_code == 403:
                        raise call_error(
                            "refused", f"broker forbids this call (HTTP 403, code {exc.code})",
                            code=str(exc.code), status=403,
                        ) from None
                    raise ReauthRequired("the broker keeps refusing the session") from None
                await self._recover_session()
            except (SSIError, httpx.HTTPError) as exc:
                raise self._translate(exc, write=write) from None
            except (ValueError, TypeError, AttributeError, KeyError, RecursionError) as exc:
                message = f"unparseable reply from the broker ({type(exc).__name__})"
                if write:
                    raise call_error("ambiguous", message) from None
                raise BrokerReplyError(message) from None
            finally:
                self._follow_quota(seen)
        raise AssertionError("unreachable")

    def _follow_quota(self, seen: dict[str, int | None] | None) -> None:
        """The SDK rests its limiter a second when the server says ``X-RateLimit-Remaining:
        0``; the budget rests with it, so what waits, waits in priority order here. (The SDK
        keeps a new dict per reply: ``seen`` is the one before this call, so a stale 0 from
        an older reply pauses nothing.)"""
        if self._auth is None:
            return
        now = self._auth.rest_client.rate_limit
        if now is not seen and now.get("remaining") == 0:
            self.budget.pause(1.0)

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
        """Today's book for ``day`` in exchange time (the SDK's "today" is the host's date),
        every page of it.

        Pages of ``PAGE_SIZE`` are read until one comes back short or empty. A book that
        changed while it was paged (``BookChanged``: orders arrived, rows shifted between
        pages) is read again, until two passes in a row agree; if they never do within
        ``MAX_PASSES``, the account is unread (``BrokerReplyError``). No decision is taken
        from half a book.
        """
        last: tuple[BookOrder, ...] | None = None
        problem = ""
        for _ in range(MAX_PASSES):
            try:
                book = await self._read_pass(account, day)
            except replies.BookChanged as exc:
                problem, last = str(exc), None
                continue
            if not problem or book == last:
                return book  # no change seen, or two whole passes in a row agree
            last = book
        raise BrokerReplyError(f"{problem or f'account {account}: the book kept changing'}; "
                               f"no two of {MAX_PASSES} reads agreed, so it is not decided on")

    async def _read_pass(self, account: str, day: date) -> tuple[BookOrder, ...]:
        """One read of every page; its pages as one book (see ``assemble_book``). Each page
        is the request ``get_historical_orders`` sends, on the same client (token, limiter,
        retries, error mapping), but its reply is checked raw (``parse_order_page``).

        The pages go out together: as many as the account's book took last time at once,
        then, once page 1's ``totalRecord`` says how many there are, the rest at once. The
        pass still ends on a short (or empty) page, as a sequential read would: with a count,
        that is page ``totalRecord // PAGE_SIZE + 1``; without one, pages are asked for until
        one comes back short. Pages asked for beyond that must come back empty, or the book
        changed while it was read. The order the pages arrive in changes nothing of what
        ``assemble_book`` checks (one total, no order twice, every order counted).
        """
        size = replies.PAGE_SIZE
        got: dict[int, replies.Page] = {}

        async def fetch(numbers: range) -> None:
            # Every page answered (or failed) before this returns: no request of a pass
            # that failed is left running behind the caller's back.
            pages = await asyncio.gather(*(self._read_page(account, day, n) for n in numbers),
                                         return_exceptions=True)
            for page in pages:
                if isinstance(page, BaseException):
                    raise page
            got.update(zip(numbers, pages, strict=True))  # type: ignore[arg-type]

        await fetch(range(1, min(self._pages_hint.get(account, 1), replies.MAX_PAGES) + 1))
        while True:
            total = got[1].total
            if total is not None:
                last = total // size + 1  # the short page that ends the book
            else:
                shorts = [n for n in sorted(got) if len(got[n].orders) < size]
                last = shorts[0] if shorts else max(got) + 1
            if last > replies.MAX_PAGES:
                raise BrokerReplyError(f"account {account}: more than {replies.MAX_PAGES} "
                                       f"pages of {size} orders; not a plausible day's book")
            missing = [n for n in range(1, last + 1) if n not in got]
            if not missing:
                break
            if total is not None:
                await fetch(range(missing[0], last + 1))
            else:
                await fetch(range(missing[0], missing[0] + 1))  # no count: one at a time
        beyond = [n for n in got if n > last and got[n].orders]
        if beyond:
            raise replies.BookChanged(f"account {account}: page {beyond[0]} has orders after "
                                      f"the book ended on page {last} (the book changed)")
        self._pages_hint[account] = last
        return replies.assemble_book([got[n] for n in sorted(got)], account)

    async def _read_page(self, account: str, day: date, number: int) -> replies.Page:
        text = day.strftime("%Y/%m/%d")
        params = OrderBookRequest(account_no=account, from_date=text, to_date=text,
                                  page=number, size=replies.PAGE_SIZE).to_dict()
        body = await self._call(partial(self.auth.rest_client.get, EP_ORDER_HISTORY,
                                        params=params), write=False)
        return replies.parse_order_page(body, account, number, replies.PAGE_SIZE)

    async def account_typing(self, account: str) -> AccountTyping:
        """Whether ``account`` is an equity or a derivatives account, as the broker says
        (``get_account_info()``'s ``accountType``), read once per exchange day for every
        account the API key holds.

        When the broker does not say (the call failed, the account is not listed, the type is
        unknown), the number's suffix decides (8: derivatives) and ``account.typed`` is logged
        as a warning with the reason. A broker that answered is not asked again that day; one
        that could not be reached (or limited the rate) is asked again on the next need.
        ``ReauthRequired`` is raised: without a session nothing can be read.
        """
        if self._typing_lock is None:
            raise RuntimeError("Broker is not open")
        async with self._typing_lock:
            day = datetime.fromtimestamp(self._wall(), EXCHANGE_TZ).date()
            if day != self._typing_day:
                self._typing, self._typing_day, self._listing = {}, day, None
            known = self._typing.get(account)
            if known is not None:
                return known
            typing, keep = await self._read_typing(account)
            if keep:
                self._typing[account] = typing
        if typing.source == "suffix":
            self._log.warning("account.typed", account=account, kind=typing.kind.value,
                              account_type=typing.account_type, source=typing.source,
                              reason=typing.reason)
        return typing

    async def _read_typing(self, account: str) -> tuple[AccountTyping, bool]:
        """One account's typing, and whether it holds for the rest of the day. The listing
        is read once a day: every account it types is kept, and so is its answer for the
        accounts it does not (a refusal, an account left out, a type not known)."""
        hint = suffix_hint(account)
        if self._listing is None:
            try:
                rows = await self._call(self.trading.account.get_account_info,
                                        write=False)
                listed = replies.account_types(rows)
            except BrokerError as exc:
                transient = isinstance(exc, BrokerCallError) and exc.kind in (
                    "unavailable", "rate_limited", "ambiguous")
                reason = f"get_account_info failed: {exc}"
                if not transient:
                    self._listing = ({}, reason)
                return AccountTyping(account, hint, "suffix", reason=reason), not transient
            self._listing = (listed, "")
            for number, word in listed.items():
                kind = kind_of_type(word)
                if kind is not None:
                    self._typing[number] = AccountTyping(number, kind, "broker", word)
                    self._log.info("account.typed", account=number, kind=kind.value,
                                   account_type=word, source="broker")
            known = self._typing.get(account)
            if known is not None:
                return known, True
        listed, failure = self._listing
        if failure:
            return AccountTyping(account, hint, "suffix", reason=failure), True
        if account not in listed:
            return AccountTyping(account, hint, "suffix",
                                 reason="get_account_info does not list the account"), True
        word = listed[account]
        return AccountTyping(account, hint, "suffix", word,
                             reason=f"unknown accountType {word!r}"), True

    async def cash(self, account: str) -> CashFigures | DerivativeCash:
        """The account's cash, from the balance its kind keeps it in: an equity account's
        ``get_equity_balance`` and ``get_equity_ppmmr``, a derivatives account's
        ``get_derivative_balance`` (its PPMMR has no purchasing-power figure, so it is not
        read)."""
        typing = await self.account_typing(account)
        portfolio = self.trading.portfolio
        if typing.kind is AccountKind.DERIVATIVE:
            derivative = await self._call(
                lambda: portfolio.get_derivative_balance(account), write=False)
            return replies.derivative_cash(derivative, account)
        balance = await self._call(lambda: portfolio.get_equity_balance(account), write=False)
        ppmmr = await self._call(lambda: portfolio.get_equity_ppmmr(account), write=False)
        if balance is None or ppmmr is None:
            raise BrokerReplyError(f"account {account}: no equity balance in the reply")
        return CashFigures(
            withdrawable=replies.money(balance.withdrawable, "withdrawable"),
            on_hold_cash=replies.money(balance.on_hold_cash, "onHoldCash"),
            purchasing_power=replies.money(ppmmr.purchasing_power, "purchasingPower"),
        )

    def _cancel_request(self, account: str, order_id: str) -> CancelOrderRequest:
        """One cancel as ``cancel_order_by_order_id`` builds it (a fresh clientCancelId, this
        machine's device id, the configured user agent)."""
        require_non_empty(account, "accountNo")
        require_non_empty(order_id, "orderId")
        request = CancelOrderRequest(account_no=account, order_id=order_id,
                                     client_cancel_id=generate_request_id(),
                                     device_id=get_device_id())
        if self.config.user_agent:
            request.user_agent = self.config.user_agent
        return request

    async def _signed_delete(self, path: str, request: CancelOrderRequest | BatchOrderRequest
                             ) -> Any:
        """Sign and send a cancel on the SDK's own client (token, limiter, error mapping, no
        retry of a write), returning the reply as the server sent it: the SDK's reply models
        read ``success`` as ``bool(value)`` and drop what does not fit, so the guard reads
        the raw JSON itself (``_cancel_reply``)."""
        rest = self.auth.rest_client
        text = request.to_str()
        signature = sign(text, rest.get_private_key())
        return await rest.delete(path, content=text.encode("utf-8"),
                                 headers={HEADER_SIGNATURE: signature})

    async def cancel_batch(self, items: Sequence[tuple[str, str]]) -> list[CancelReply]:
        """One signed batch DELETE, the request ``cancel_batch_orders`` sends; replies are
        matched to ``items`` by position and read strictly (see ``_cancel_reply``)."""
        async def send() -> Any:
            if not 1 <= len(items) <= self.config.max_batch_orders:
                raise ValidationError(f"a batch holds 1..{self.config.max_batch_orders} "
                                      f"orders, got {len(items)}")
            orders = [self._cancel_request(a, o).to_dict() for a, o in items]
            envelope = BatchOrderRequest(batch_request_id=generate_request_id(),
                                         batch_request_time=int(self._wall() * 1000),
                                         orders=orders)
            return await self._signed_delete(EP_TRADING_ORDER_BATCH, envelope)

        return replies.batch_replies(await self._call(send, write=True), items)

    async def cancel_one(self, account: str, order_id: str) -> CancelReply:
        """One signed single DELETE, the request ``cancel_order_by_order_id`` sends; a refusal
        comes back as a reply, not an error, and the answer is read strictly."""
        try:
            body = await self._call(
                lambda: self._signed_delete(EP_TRADING_ORDER,
                                            self._cancel_request(account, order_id)),
                write=True,
            )
        except BrokerCallError as exc:
            if exc.kind != "refused":
                raise
            return CancelReply(account, order_id, False, "", exc.code or "", str(exc))
        return replies.cancel_reply(body, account, order_id, batch=False)

    async def master_data(self, day: date) -> list[Instrument]:
        """The day's instruments: each symbol's board and reference/ceiling/floor prices."""
        if self._data is None:
            raise RuntimeError("Broker is not open")
        data = self._data
        text = day.strftime("%Y/%m/%d")
        rows = await self._call(
            lambda: data.market_data.get_master_data_historical(text, text), write=False
        )
        return replies.instruments(rows)
