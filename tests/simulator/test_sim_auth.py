"""Simulator conformance: login, Smart OTP, refresh, session revocation, bearer and signature
checks, all through the real ``ssi_sdk`` (sync and async) over HTTP on loopback.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
import pytest
from kit import ACCT, DAY
from ssi_sdk import (
    AsyncAuth,
    AsyncTrading,
    Auth,
    AuthenticationError,
    ReauthenticationRequired,
    SmartOTPPendingError,
    SmartOTPRejectedError,
    Trading,
)
from ssi_sdk.enums import OrderSide, OrderType
from ssi_sdk.models import Token
from ssi_sdk.utils.crypto import sign

from guard.clock import EXCHANGE_TZ, FakeClock
from guard.simulator.control import Simulator
from guard.simulator.keys import generate_key_pair


def _other_otp(otp: str) -> str:
    return f"{(int(otp) + 1) % 10**6:06d}"


def _code(exc: pytest.ExceptionInfo[Any]) -> Any:
    return exc.value.code


# ---- OTP login ----------------------------------------------------------------------------


def test_otp_login_gives_a_token_that_trading_calls_accept(sim: Simulator, sdk: Any) -> None:
    auth, trading = sdk()
    token = auth.token
    assert token is not None and token.access_token and token.refresh_token
    assert token.expires_at > time.time() + 3000  # a 3600 s access token, in epoch seconds
    assert token.refresh_token_expires_at > token.expires_at
    assert not auth.is_token_expired and auth.can_refresh

    [login] = sim.requests_to("POST", "/api/v3/auth/token")
    c = sim.credentials
    assert login.body == {"apiKey": c.api_key, "apiSecret": c.api_secret, "otp": c.otp}
    assert [a.account_no for a in trading.account.get_account_info()] == [ACCT, "0001238"]


@pytest.mark.parametrize(("wrong", "code"), [("api_secret", 401010), ("otp", 401105)])
def test_wrong_secret_or_otp_is_refused(sim: Simulator, sdk: Any, wrong: str, code: int) -> None:
    overrides = {"api_secret": "not-the-secret"} if wrong == "api_secret" else {}
    otp = _other_otp(sim.credentials.otp) if wrong == "otp" else sim.credentials.otp
    auth, trading = sdk(login=False, **overrides)
    with pytest.raises(AuthenticationError) as exc:
        auth.authenticate(otp=otp)
    assert not isinstance(exc.value, ReauthenticationRequired | SmartOTPRejectedError)
    assert (exc.value.status_code, exc.value.code) == (401, code)
    assert auth.token is None
    with pytest.raises(AuthenticationError):  # no token: no Authorization header at all
        trading.account.get_account_info()


def test_async_otp_login_and_wrong_otp(sim: Simulator) -> None:
    async def run() -> tuple[int, list[str]]:
        code = 0
        async with AsyncAuth(sim.sdk_config()) as auth:
            try:
                await auth.authenticate(otp=_other_otp(sim.credentials.otp))
            except AuthenticationError as exc:
                code = int(exc.code)
            await auth.authenticate(otp=sim.credentials.otp)
            accounts = await AsyncTrading(auth).account.get_account_info()
            return code, [a.account_no for a in accounts]

    assert asyncio.run(run()) == (401105, [ACCT, "0001238"])


# ---- Smart OTP ----------------------------------------------------------------------------


def test_smart_otp_polls_pending_then_logs_in(sim: Simulator, sdk: Any) -> None:
    auth, trading = sdk(login=False)
    otp = auth.request_otp_typed()
    assert otp.transaction_id
    started = time.monotonic()
    token = auth.ensure_authenticated(transaction_id=otp.transaction_id, poll_interval_ms=20)
    assert time.monotonic() - started < 2
    assert token == auth.token.access_token

    polls = sim.requests_to("POST", "/api/v3/auth/token")
    assert [p.status for p in polls] == [202, 200]  # 202 + 401114 = pending, then approved
    c = sim.credentials
    assert all(
        p.body == {"apiKey": c.api_key, "apiSecret": c.api_secret,
                   "transactionId": otp.transaction_id}
        for p in polls
    )
    assert trading.account.get_account_info()

    # An approved transaction is spent: replaying it is a rejected Smart OTP.
    other, _ = sdk(login=False)
    with pytest.raises(SmartOTPRejectedError) as exc:
        other.ensure_authenticated(transaction_id=otp.transaction_id, poll_interval_ms=20)
    assert _code(exc) == 401116


def test_smart_otp_still_pending_after_the_last_poll_can_be_resumed(
    sim: Simulator, sdk: Any
) -> None:
    auth, _ = sdk(login=False)
    tx = auth.request_otp_typed().transaction_id
    with pytest.raises(SmartOTPPendingError) as exc:
        auth.ensure_authenticated(transaction_id=tx, poll_interval_ms=10, poll_max_retries=1)
    assert (exc.value.status_code, exc.value.code) == (202, 401114)
    assert auth.ensure_authenticated(transaction_id=tx, poll_interval_ms=10)


def test_smart_otp_unknown_transaction_and_bad_secret(sim: Simulator, sdk: Any) -> None:
    auth, _ = sdk(login=False)
    with pytest.raises(SmartOTPRejectedError):
        auth.ensure_authenticated(transaction_id="no-such-tx", poll_interval_ms=10)
    bad, _ = sdk(login=False, api_secret="wrong")
    with pytest.raises(AuthenticationError) as exc:
        bad.request_otp_typed()
    assert _code(exc) == 401010


def test_async_smart_otp(sim: Simulator) -> None:
    async def run() -> list[int]:
        async with AsyncAuth(sim.sdk_config()) as auth:
            tx = (await auth.request_otp_typed()).transaction_id
            await auth.ensure_authenticated(transaction_id=tx, poll_interval_ms=10)
            await AsyncTrading(auth).account.get_account_info()
        return [r.status for r in sim.requests_to("POST", "/api/v3/auth/token")]

    assert asyncio.run(run()) == [202, 200]


# ---- refresh ------------------------------------------------------------------------------


def test_refresh_rotates_both_tokens_and_kills_the_old_access_token(
    sim: Simulator, sdk: Any
) -> None:
    auth, trading = sdk()
    before = auth.token
    after = auth.refresh()
    assert after.access_token != before.access_token
    assert after.refresh_token != before.refresh_token
    assert after.refresh_token_expires_at > time.time()
    [call] = sim.requests_to("POST", "/api/v3/auth/refresh")
    assert call.body == {"refreshToken": before.refresh_token}
    assert trading.account.get_account_info()  # the SDK switched to the new bearer token

    old = httpx.get(f"{sim.url}/api/v3/account/info",
                    headers={"Authorization": f"Bearer {before.access_token}"})
    assert old.status_code == 401


def test_reusing_a_refresh_token_revokes_the_session(sim: Simulator, sdk: Any) -> None:
    auth, trading = sdk()
    copy = Token.from_dict(auth.token.to_dict())  # e.g. a cached token in a second process
    auth.refresh()  # the copy's refresh token is now used
    assert trading.account.get_account_info()

    thief, _ = sdk(login=False)
    thief.set_token(copy)
    with pytest.raises(ReauthenticationRequired) as exc:
        thief.refresh()
    assert (exc.value.status_code, exc.value.code) == (401, 401103)
    assert thief.token is None

    # The whole apiKey session is dead: the live access token and refresh token too.
    with pytest.raises(AuthenticationError) as exc2:
        trading.account.get_account_info()
    assert not isinstance(exc2.value, ReauthenticationRequired)
    assert exc2.value.status_code == 401
    with pytest.raises(ReauthenticationRequired):
        auth.refresh()
    auth.authenticate(otp=sim.credentials.otp)  # a new OTP login recovers
    assert trading.account.get_account_info()


def test_async_refresh_reuse(sim: Simulator) -> None:
    async def run() -> int:
        async with AsyncAuth(sim.sdk_config()) as auth, AsyncAuth(sim.sdk_config()) as thief:
            await auth.authenticate(otp=sim.credentials.otp)
            await thief.set_token(Token.from_dict(auth.token.to_dict()))
            await auth.refresh()
            code = 0
            try:
                await thief.refresh()
            except ReauthenticationRequired as exc:
                code = int(exc.code)
            try:
                await AsyncTrading(auth).account.get_account_info()
            except AuthenticationError:
                return code
            raise AssertionError("the session should be revoked")

    assert asyncio.run(run()) == 401103


# ---- bearer token checks ------------------------------------------------------------------


def test_missing_bearer_token_is_401(sim: Simulator, sdk: Any) -> None:
    _, trading = sdk(login=False)
    with pytest.raises(AuthenticationError) as exc:
        trading.portfolio.get_historical_orders(ACCT, DAY, DAY)
    assert (exc.value.status_code, exc.value.code) == (401, 401001)
    raw = httpx.get(f"{sim.url}/api/v3/account/info", headers={"Authorization": "Bearer nope"})
    assert (raw.status_code, raw.json()["code"]) == (401, 401002)
    assert raw.json()["msg"]


def test_expired_access_token_is_401_until_the_client_refreshes(until: Callable[..., bool]) -> None:
    clock = FakeClock(datetime(2026, 11, 23, 10, tzinfo=EXCHANGE_TZ))
    sim = Simulator(clock=clock, key_bits=1024, access_ttl=0.3)
    with sim, Auth(sim.sdk_config()) as auth:
        auth.authenticate(otp=sim.credentials.otp)
        trading = Trading(auth)
        assert trading.account.get_account_info()
        assert auth.is_token_expired  # 0.3 s is inside the SDK's 30 s skew
        expires = sim.sessions.check(f"Bearer {auth.token.access_token}").access_expires
        assert until(lambda: time.time() > expires, timeout=2)
        with pytest.raises(AuthenticationError) as exc:
            trading.account.get_account_info()
        assert exc.value.code == 401003
        auth.ensure_authenticated()  # no OTP needed: it refreshes
        assert len(sim.requests_to("POST", "/api/v3/auth/refresh")) == 1
        assert trading.account.get_account_info()


def test_an_expired_refresh_token_needs_a_new_otp(until: Callable[..., bool]) -> None:
    clock = FakeClock(datetime(2026, 11, 23, 10, tzinfo=EXCHANGE_TZ))
    sim = Simulator(clock=clock, key_bits=1024, refresh_ttl=0.3)
    with sim, Auth(sim.sdk_config()) as auth:
        token = auth.authenticate(otp=sim.credentials.otp)
        assert not auth.can_refresh  # 0.3 s is inside the SDK's 30 s skew
        with pytest.raises(ReauthenticationRequired):
            auth.refresh()  # refused locally
        assert sim.requests_to("POST", "/api/v3/auth/refresh") == []
        # The server agrees once the refresh token is past its expiry.
        assert until(lambda: time.time() > token.refresh_token_expires_at + 1, timeout=3)
        raw = httpx.post(f"{sim.url}/api/v3/auth/refresh",
                         json={"refreshToken": token.refresh_token})
        assert (raw.status_code, raw.json()["code"]) == (401, 401101)


def test_expire_tokens_is_invisible_to_the_sdk_until_it_refreshes(
    sim: Simulator, sdk: Any
) -> None:
    auth, trading = sdk()
    sim.expire_tokens()
    with pytest.raises(AuthenticationError) as exc:
        trading.account.get_account_info()
    assert exc.value.code == 401003
    # The SDK trusts its own expiresAt: ensure_authenticated sends nothing here.
    auth.ensure_authenticated()
    assert sim.requests_to("POST", "/api/v3/auth/refresh") == []
    auth.refresh()
    assert trading.account.get_account_info()


def test_revoked_session_needs_a_new_otp(sim: Simulator, sdk: Any) -> None:
    auth, trading = sdk()
    sim.revoke_session()
    with pytest.raises(AuthenticationError) as exc:
        trading.account.get_account_info()
    assert exc.value.code == 401004
    # The SDK still thinks its token valid, so ensure_authenticated() would send nothing; the
    # refresh token died with the session.
    with pytest.raises(ReauthenticationRequired) as exc2:
        auth.refresh()
    assert exc2.value.code == 401103 and auth.token is None
    with pytest.raises(AuthenticationError, match="OTP"):
        auth.ensure_authenticated()  # no token at all now: only an OTP helps
    auth.ensure_authenticated(otp=sim.credentials.otp)
    assert trading.account.get_account_info()


def test_a_second_login_kills_the_first_session(sim: Simulator, sdk: Any) -> None:
    _, first = sdk()
    _, second = sdk()
    with pytest.raises(AuthenticationError) as exc:
        first.account.get_account_info()
    assert exc.value.code == 401004
    assert second.account.get_account_info()


# ---- signatures ---------------------------------------------------------------------------


def _place_body(symbol: str = "SSI") -> str:
    # The SDK's exact shape: json.dumps defaults, with spaces after ":" and ",".
    return json.dumps({"accountNo": ACCT, "symbol": symbol, "side": "B", "quantity": 100,
                       "price": "27000", "orderType": "LO", "clientRequestId": "raw-1",
                       "deviceId": "test", "userAgent": "SSI Python SDK/3.3.2"})


def test_signature_is_checked_over_the_raw_body(sim: Simulator, sdk: Any) -> None:
    auth, _ = sdk()
    url = f"{sim.url}/api/v3/trading/order"
    bearer = {"Authorization": f"Bearer {auth.token.access_token}",
              "Content-Type": "application/json"}
    body = _place_body()
    good = sign(body, sim.credentials.private_key)

    bad = httpx.post(url, content=body, headers={**bearer, "X-Signature": "00" * 128})
    assert (bad.status_code, bad.json()["code"]) == (401, 401005)
    missing = httpx.post(url, content=body, headers=bearer)
    assert (missing.status_code, missing.json()["code"]) == (401, 401005)
    tampered = httpx.post(url, content=body.replace("100", "900"),
                          headers={**bearer, "X-Signature": good})
    assert tampered.status_code == 401
    assert sim.exchange.book(ACCT) == []

    ok = httpx.post(url, content=body, headers={**bearer, "X-Signature": good})
    assert ok.status_code == 200 and ok.json()["orderStatus"] == "QU"


def test_sdk_signing_with_another_key_is_refused(sim: Simulator, sdk: Any) -> None:
    order_id = sim.seed_order(ACCT, "SSI")
    _, trading = sdk(private_key=generate_key_pair(1024).private_key_b64)
    with pytest.raises(AuthenticationError) as exc:
        trading.trading.place_order(ACCT, "SSI", OrderSide.BUY, 100, 27000, OrderType.LO)
    assert (exc.value.status_code, exc.value.code) == (401, 401005)
    with pytest.raises(AuthenticationError):
        trading.trading.cancel_order_by_order_id(ACCT, order_id)
    assert [o.status for o in sim.exchange.book(ACCT)] == ["QU"]
    assert trading.portfolio.get_historical_orders(ACCT, DAY, DAY)  # unsigned GETs still work
