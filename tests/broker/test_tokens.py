"""``TokenCache``: mode 0600 from the first byte, bound to (API URL, API key), and the broker
reusing it instead of logging in again (a second login would end the first session)."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

from guard.broker.client import Broker
from guard.broker.tokens import TokenCache, key_id
from guard.record.redact import secrets_registry
from guard.settings import load_credentials
from guard.simulator.control import Simulator

URL = "https://api.ssi.com.vn"
TOKEN = {"accessToken": "at-" + "x" * 20, "expiresAt": 1_795_000_000,
         "refreshToken": "rt-" + "y" * 20, "refreshExpiresAt": 1_795_080_000}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_save_is_private_and_holds_no_api_key(tmp_path: Path) -> None:
    cache = TokenCache(tmp_path)
    cache.save(URL, "AK-123", TOKEN)
    assert mode(cache.path) == 0o600
    raw = json.loads(cache.path.read_text())
    assert raw == {"api_url": URL, "key_id": key_id(URL, "AK-123"), "token": TOKEN}
    assert "AK-123" not in cache.path.read_text()
    assert not (tmp_path / "token.tmp").exists()


def test_save_over_a_loose_file_and_a_stale_tmp_is_still_private(tmp_path: Path) -> None:
    cache = TokenCache(tmp_path)
    cache.path.write_text("{}")
    cache.path.chmod(0o644)
    tmp = tmp_path / "token.tmp"
    tmp.write_text("junk")
    tmp.chmod(0o666)
    cache.save(URL, "AK", TOKEN)
    assert mode(cache.path) == 0o600 and not tmp.exists()


def test_load_is_bound_to_url_and_key(tmp_path: Path) -> None:
    cache = TokenCache(tmp_path)
    cache.save(URL, "AK", TOKEN)
    got = cache.load(URL, "AK")
    assert got is not None and got.token == TOKEN
    assert (got.expires_at, got.refresh_expires_at) == (1_795_000_000, 1_795_080_000)
    assert cache.load("http://127.0.0.1:8080", "AK") is None  # a simulator token
    assert cache.load(URL, "AK-other") is None  # another key
    assert key_id(URL, "AK") != key_id(URL + "/", "AK")


def test_missing_or_corrupt_cache_loads_nothing(tmp_path: Path) -> None:
    cache = TokenCache(tmp_path)
    assert cache.load(URL, "AK") is None and cache.mtime() == 0.0
    for junk in ("not json", "[]", '{"key_id": "x"}', '{"token": "x"}'):
        cache.path.write_text(junk)
        assert cache.load(URL, "AK") is None


def test_tokens_are_registered_for_redaction_and_clear_removes(tmp_path: Path) -> None:
    cache = TokenCache(tmp_path)
    cache.save(URL, "AK", TOKEN)
    assert {TOKEN["accessToken"], TOKEN["refreshToken"]} <= set(secrets_registry.snapshot())
    assert cache.mtime() > 0
    cache.clear()
    cache.clear()  # idempotent
    assert not cache.path.exists()


def test_broker_reuses_a_cached_token_and_ignores_another_servers(
    sim: Simulator, tmp_path: Path
) -> None:
    creds = load_credentials(sim.env())
    cache = TokenCache(tmp_path)

    async def session() -> None:
        async with Broker(creds, cache) as broker:
            await broker.ensure_session()
            assert await broker.orders("0001234", sim.clock().date()) == ()

    logins = sim.requests_to("POST", "/api/v3/auth/token")
    asyncio.run(session())  # logs in with SSI_OTP and caches the token
    assert mode(cache.path) == 0o600
    first = cache.load(creds.api_url, creds.api_key)
    assert first is not None
    asyncio.run(session())  # a restart: the cached token is used, no second login
    assert len(sim.requests_to("POST", "/api/v3/auth/token")) == len(logins) + 1

    # A cache written for another server (or key) is never offered to this one.
    cache.save("https://api.ssi.com.vn", creds.api_key, first.token)
    asyncio.run(session())
    assert len(sim.requests_to("POST", "/api/v3/auth/token")) == len(logins) + 2
    [bearer] = {r.status for r in sim.requests_to("GET", "/api/v3/trading/orderBook")}
    assert bearer == 200  # the stale foreign token was never used: every read succeeded
