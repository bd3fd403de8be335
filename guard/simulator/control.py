"""``Simulator``: the in-process control surface, and the thread that serves it over HTTP.

Tests and the demo own a ``Simulator``: they start it on a loopback port, point the real
``ssi_sdk`` at ``sim.url``, seed orders, move the market clock, inject fills and faults, and read
back every request it received.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from ssi_sdk import Config

from guard.clock import Clock, FakeClock, system_clock
from guard.market.calendar import Board, MarketCalendar
from guard.market.holidays import build_calendar
from guard.simulator.exchange import Exchange, SimOrder, Symbol
from guard.simulator.faults import Fault, FaultPlan
from guard.simulator.keys import generate_key_pair
from guard.simulator.ratelimit import TokenBuckets
from guard.simulator.server import ClientCredentials, RecordedRequest, SimServer
from guard.simulator.sessions import SessionStore

__all__ = ["DEFAULT_SYMBOLS", "KRX_FUTURES", "Simulator"]

DEFAULT_SYMBOLS = (
    Symbol("SSI", "HOSE", 27_000, 28_850, 25_150),
    Symbol("VNM", "HOSE", 62_000, 66_300, 57_700),
    Symbol("FPT", "HOSE", 95_500, 102_100, 88_900),
    Symbol("HPG", "HOSE", 26_400, 28_200, 24_600),
    Symbol("MWG", "HOSE", 58_000, 62_000, 54_000),
    Symbol("VCB", "HOSE", 91_000, 97_300, 84_700),
    Symbol("SHS", "HNX", 14_200, 15_600, 12_800),
    Symbol("PVS", "HNX", 33_100, 36_400, 29_800),
    Symbol("CEO", "HNX", 18_500, 20_300, 16_700),
    Symbol("BSR", "UPCOM", 21_300, 24_400, 18_200),
    Symbol("ACV", "UPCOM", 98_000, 112_700, 83_300),
    Symbol("VEA", "UPCOM", 41_000, 47_100, 34_900),
    Symbol("VN30F2612", "DERIVATIVES", 1_350, 1_444, 1_256),
)
# A VN30 futures contract in the code form of contracts listed since the KRX system, beside
# the older VN30F<yymm> form above (docs/market.md, "Futures contracts"). Listed by the demo
# scenario and by the tests that need it (``sim.exchange.add_symbol``).
KRX_FUTURES = Symbol("41I1FC000", "DERIVATIVES", 1_352, 1_446, 1_258)

_BOARD = {"HOSE": "HOSE", "HNX": "HNX", "UPCOM": "UPCOM", "DERIVATIVES": "DER"}


def _calendar_ban(calendar: MarketCalendar) -> Callable[[str, datetime], str | None]:
    """Why the exchange bans a cancel on a board at an instant: the shipped exchange calendar."""

    def ban(board: str, instant: datetime) -> str | None:
        return calendar.why_banned(Board(_BOARD.get(board, board)), instant)

    return ban


class Simulator:
    """An SSI FastConnect v3-compatible broker on loopback.

    ``clock`` is the market clock: a ``FakeClock`` by default in tests (pass one), the real
    clock otherwise. ``cancel_delay`` (real seconds) is how long a cancel stays WC.
    """

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        rate_limit: int = 10,
        cancel_delay: float = 0.2,
        key_bits: int = 2048,
        access_ttl: float = 3600.0,
        refresh_ttl: float = 86400.0,
        seed: int = 7,
        calendar: MarketCalendar | None = None,
        accounts: tuple[str, ...] = ("0001234",),
        cash: int = 5_000_000_000,
    ) -> None:
        self.clock: Clock = clock or system_clock
        self.keys = generate_key_pair(key_bits)
        self.credentials = ClientCredentials(
            client_id="SIMCLIENT",
            api_key="sim-" + secrets.token_hex(8),
            api_secret=secrets.token_urlsafe(24),
            private_key=self.keys.private_key_b64,
            otp=f"{secrets.randbelow(10**6):06d}",
            accounts=accounts,
        )
        self.exchange = Exchange(
            clock=self._market_now,
            cancel_ban=_calendar_ban(calendar or build_calendar()),
            symbols=DEFAULT_SYMBOLS,
            cancel_delay=cancel_delay,
        )
        for account in accounts:
            self.exchange.add_account(account, cash)
        self.sessions = SessionStore(access_ttl=access_ttl, refresh_ttl=refresh_ttl)
        self.faults = FaultPlan(seed)
        self.buckets = TokenBuckets(rate_limit)
        self.server = SimServer(
            self.exchange, keys=self.keys, creds=self.credentials, sessions=self.sessions,
            faults=self.faults, buckets=self.buckets,
        )
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._port = 0
        self._host = "127.0.0.1"

    def _market_now(self) -> datetime:
        """Read ``self.clock`` at call time, so a clock swapped in later is still obeyed."""
        return self.clock()

    # ---- lifecycle ----------------------------------------------------------------------

    @property
    def url(self) -> str:
        if not self._port:
            raise RuntimeError("simulator not started")
        return f"http://{self._host}:{self._port}"

    @property
    def port(self) -> int:
        return self._port

    def start(self, port: int = 0, host: str = "127.0.0.1") -> str:
        """Serve on ``host:port`` (0 picks a free port) in a background thread; returns the URL."""
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the simulator only listens on loopback")
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._serve(host, port, ready))
            except BaseException as exc:  # surfaced to start()
                failure.append(exc)
                ready.set()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="ssi-simulator", daemon=True)
        self._thread.start()
        ready.wait(timeout=15)
        if failure:
            raise failure[0]
        self._host = host
        return self.url

    async def _serve(self, host: str, port: int, ready: threading.Event) -> None:
        runner = web.AppRunner(self.server.app(), access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self._port = sockets[0].getsockname()[1]
        self._stop = asyncio.Event()
        ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    def stop(self) -> None:
        """Stop serving. Every piece of state (orders, sessions, faults, the record of
        requests) is kept, and so is the port: ``restart`` serves it again."""
        if self._loop is not None and self._stop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout=10)
        self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def restart(self) -> str:
        """Stop (if running) and serve again on the same port with the same state, like a
        broker whose process restarted: clients keep their URL and tokens, but every open
        connection is gone. Safe to call from any thread but the simulator's own."""
        if not self._port:
            raise RuntimeError("simulator never started: nothing to restart")
        port, host = self._port, self._host
        self.stop()
        return self.start(port=port, host=host)

    def __enter__(self) -> Simulator:
        if not self._port:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- what a client needs --------------------------------------------------------------

    def env(self) -> dict[str, str]:
        """The ``SSI_*`` variables a client needs to reach this simulator."""
        c = self.credentials
        return {
            "SSI_API_URL": self.url,
            "SSI_CLIENT_ID": c.client_id,
            "SSI_API_KEY": c.api_key,
            "SSI_API_SECRET": c.api_secret,
            "SSI_PRIVATE_KEY": c.private_key,
            "SSI_OTP": c.otp,
            "SSI_ACCOUNT": ",".join(c.accounts),
        }

    def write_env_file(self, path: Path) -> None:
        """Write the ``KEY=value`` lines, mode 0600 from the first byte (they hold secrets)."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            os.fchmod(fh.fileno(), 0o600)
            for key, value in self.env().items():
                fh.write(f"{key}={value}\n")

    def sdk_config(self, **overrides: Any) -> Any:
        """An ``ssi_sdk.Config`` pointed at this simulator."""
        c = self.credentials
        values: dict[str, Any] = {
            "client_id": c.client_id,
            "api_key": c.api_key,
            "api_secret": c.api_secret,
            "private_key": c.private_key,
            "api_url": self.url,
        }
        values.update(overrides)
        return Config(**values)

    # ---- control ------------------------------------------------------------------------

    def add_account(self, account: str, cash: int = 5_000_000_000,
                    account_type: str = "Cash") -> None:
        """Open an account; ``account_type`` is what ``get_account_info()`` will say of it
        (a ``Derivative`` account answers its cash in the ``derivative`` member)."""
        self.exchange.add_account(account, cash, account_type)
        if account not in self.credentials.accounts:
            object.__setattr__(
                self.credentials, "accounts", (*self.credentials.accounts, account)
            )

    def set_account_type(self, account: str, account_type: str) -> None:
        """Change what ``get_account_info()`` says of ``account`` (any word: a test may want
        one the guard does not know)."""
        with self.exchange.lock:
            self.exchange.accounts[account].account_type = account_type

    def seed_order(
        self,
        account: str,
        symbol: str,
        side: str = "B",
        price: int | str = 27_000,
        quantity: int = 100,
        *,
        order_type: str = "LO",
        age: timedelta | None = None,
        client_request_id: str = "",
    ) -> str:
        """Place an order directly (no HTTP); ``age`` backdates its input time."""
        at = self.clock() - age if age is not None else None
        return self.exchange.place(
            account, symbol, side=side, order_type=order_type, price=price, quantity=quantity,
            client_request_id=client_request_id, input_time=at,
        ).order_id

    def fill(self, order_id: str, quantity: int | None = None) -> None:
        self.exchange.fill(order_id, quantity)

    def order(self, order_id: str) -> SimOrder:
        self.exchange.settle()
        return self.exchange.orders[order_id]

    def set_clock(self, instant: datetime) -> None:
        if not isinstance(self.clock, FakeClock):
            raise TypeError("set_clock needs a Simulator built with clock=FakeClock(...)")
        self.clock.set(instant)

    def set_status(self, order_id: str, status: str, message: str = "") -> None:
        """Force an order's status (e.g. RJ or EX), as the exchange would on its own."""
        with self.exchange.lock:
            order = self.exchange.orders[order_id]
            order.status = status
            order.cancel_due = None
            order.modified_time = self.clock()
            if message:
                order.message = message

    def set_unknown_status(self, order_id: str, code: str) -> None:
        self.server.unknown_status[order_id] = code

    def list_newest_first(self, on: bool = True) -> None:
        """Order-book pages list the newest order first: an order placed while a client pages
        then shifts every later row one place, so one row shows on two pages."""
        self.server.newest_first = on

    def inject(self, fault: Fault) -> Fault:
        return self.faults.add(fault)

    def override_reply(self, method: str, path: str, body: Any, *, status: int = 200,
                       times: int | None = 1, apply_first: bool = False) -> Fault:
        """Answer the next ``times`` requests to ``method path`` with ``body`` (raw
        ``bytes``/``str``, or anything JSON-able) and HTTP ``status``: garbage and hostile
        replies, after the gateway's auth and signature checks. With ``apply_first`` the
        real handler runs first (a cancel is applied) and only its answer is replaced."""
        return self.faults.add(Fault("body", method, path, times=times, status=status,
                                     body=body, apply_first=apply_first))

    def rewrite_reply(self, method: str, path: str, rewrite: Callable[[Any], Any], *,
                      name: str = "rewrite", account: str | None = None,
                      times: int | None = 1, rate: float = 1.0, skip: int = 0) -> Fault:
        """Pass the JSON reply to the next ``times`` requests to ``method path`` (for
        ``account`` only, if given) through ``rewrite``: the handler runs as usual, only the
        answer lies. ``guard.simulator.hostile`` has the plausible lies; ``name`` is what the
        request record (``RecordedRequest.rewritten``) calls this one; the first ``skip``
        matching replies are left alone."""
        return self.faults.add(Fault("rewrite", method, path, times=times, rate=rate,
                                     account=account, rewrite=rewrite, name=name, skip=skip))

    def on_request(self, method: str, path: str, effect: Callable[[], None], *,
                   account: str | None = None, times: int | None = 1,
                   skip: int = 0) -> Fault:
        """Run ``effect`` (e.g. ``lambda: sim.fill(order_id)``) right after the next ``times``
        requests to ``method path`` were answered: the exchange moves between two calls."""
        return self.faults.add(Fault("effect", method, path, times=times, account=account,
                                     effect=effect, skip=skip))

    def revoke_session(self) -> None:
        """Another login killed the session: access and refresh tokens are dead."""
        self.sessions.revoke_all()

    def expire_tokens(self) -> None:
        self.sessions.expire_access()

    @property
    def requests(self) -> list[RecordedRequest]:
        return list(self.server.requests)

    def requests_to(self, method: str, path: str) -> list[RecordedRequest]:
        return [r for r in self.server.requests if r.method == method and r.path == path]

    def accepted_cancels(self) -> list[str]:
        """Order ids of every cancel the exchange accepted, in order (duplicates included)."""
        return [order_id for order_id, _ in self.exchange.accepted_cancels]

    @contextmanager
    def paused_cancels(self) -> Iterator[None]:
        """Hold cancels in WC until the block ends (to observe the pending state)."""
        old = self.exchange.cancel_delay
        self.exchange.cancel_delay = 3600.0
        try:
            yield
        finally:
            self.exchange.cancel_delay = old
            with self.exchange.lock:
                for order in self.exchange.orders.values():
                    if order.cancel_due is not None:
                        order.cancel_due = 0.0
