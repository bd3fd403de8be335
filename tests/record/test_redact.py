"""``Redactor``: secrets masked by key, by value, by shape, and inside exception text."""

from __future__ import annotations

import base64
import io
import json
import logging
import secrets
from typing import Any

import pytest

from guard.record.log import get_logger
from guard.record.redact import MASK, Redactor, SecretRegistry, secrets_registry


def clean(event: dict[str, Any], *values: str) -> dict[str, Any]:
    registry = SecretRegistry()
    registry.add(*values)
    return dict(Redactor(registry)(None, "info", dict(event)))


@pytest.mark.parametrize("key", ["api_secret", "apiSecret", "access_token", "refreshToken",
                                 "otp", "SSI_OTP", "password", "private_key", "privateKey",
                                 "X-Signature", "Authorization", "credentials", "api_key"])
def test_by_key(key: str) -> None:
    assert clean({key: "hunter2-not-registered"})[key] == MASK
    assert clean({key: 123456})[key] == MASK


def test_by_key_keeps_empty_values_and_ordinary_keys() -> None:
    got = clean({"otp": None, "token": "", "order_id": "00000001", "request_key": "abc123"})
    assert got == {"otp": None, "token": "", "order_id": "00000001", "request_key": "abc123"}


def test_by_key_in_nested_structures() -> None:
    got = clean({"body": {"apiKey": "k", "otp": "1", "list": [{"refreshToken": "r"}, "ok"]}})
    assert got["body"] == {"apiKey": MASK, "otp": MASK, "list": [{"refreshToken": MASK}, "ok"]}


def test_by_value_anywhere_in_text() -> None:
    secret = "s3cr3t-" + secrets.token_hex(6)
    got = clean({"error": f"login failed for {secret}!", "items": [f"x{secret}y", 3],
                 "deep": {"note": (secret,)}}, secret)
    assert got == {"error": f"login failed for {MASK}!", "items": [f"x{MASK}y", 3],
                   "deep": {"note": (MASK,)}}


def test_longest_secret_is_masked_whole() -> None:
    got = clean({"msg": "token abcdefgh-ijkl"}, "abcd", "abcdefgh-ijkl")
    assert got["msg"] == f"token {MASK}"


def test_short_values_are_not_registered() -> None:
    registry = SecretRegistry()
    registry.add("abc", None, "", "abcd")
    assert registry.snapshot() == ("abcd",)


@pytest.mark.parametrize("text", [
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV",
    base64.b64encode(b"<RSAKeyValue><Modulus>AQAB</Modulus></RSAKeyValue>").decode(),
    "<RSAKeyValue><Modulus>xyz</Modulus><D>abc</D></RSAKeyValue>",
    "ab" * 64,
])
def test_by_shape(text: str) -> None:
    got = clean({"error": f"bad reply: {text} end"})["error"]
    assert text not in got and got.startswith("bad reply: ") and got.endswith(" end")


def test_bearer_header_value_is_masked_but_the_word_kept() -> None:
    assert clean({"h": "Authorization: Bearer abc.def-123"})["h"] == f"Authorization: Bearer {MASK}"


def test_exception_objects_are_masked() -> None:
    secret = "pk-" + secrets.token_hex(8)
    got = clean({"exc": RuntimeError(f"cannot sign with {secret}")}, secret)
    assert secret not in got["exc"] and "RuntimeError" in got["exc"]


def test_scrub() -> None:
    registry = SecretRegistry()
    registry.add("topsecretvalue")
    assert Redactor(registry).scrub("a topsecretvalue b") == f"a {MASK} b"


# ---- through the real logging pipeline -------------------------------------------------------


def test_tracebacks_and_library_logs_are_masked(captured: io.StringIO) -> None:
    secret = "live-" + secrets.token_urlsafe(16)
    secrets_registry.add(secret)
    log = get_logger("guard.test")
    try:
        raise ValueError(f"refresh failed: {secret}")
    except ValueError:
        log.exception("session.failed", detail=f"with {secret}")
    logging.getLogger("ssi_sdk.transport").warning("request failed token=%s", secret)
    logging.getLogger("guard.plain").error("stdlib %s", secret)

    out = captured.getvalue()
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[0]["event"] == "session.failed"
    assert "exception" in lines[0] and "ValueError" in json.dumps(lines[0])  # it was rendered
    assert len(lines) == 3
    assert secret not in out
    assert out.count(MASK) >= 4


def test_facts_about_a_secret_are_not_masked_but_still_scanned() -> None:
    """``token_expires_at`` is a timestamp, not a token; a token-shaped value under such a key
    is still masked by shape."""
    from guard.record.redact import Redactor, SecretRegistry

    redactor = Redactor(SecretRegistry())
    out = redactor(None, "info", {"event": "x", "token_expires_at": 1795480730,
                                  "token_valid": 1, "access_token": "abc123456",
                                  "refresh_token_at": "Bearer sim-at-abcdefghijkl"})
    assert out["token_expires_at"] == 1795480730
    assert out["token_valid"] == 1
    assert out["access_token"] == "***"
    assert "sim-at-abcdefghijkl" not in str(out["refresh_token_at"])


def test_an_all_digit_secret_is_masked_alone_but_not_inside_a_longer_number() -> None:


    registry = SecretRegistry()
    registry.add("650000")
    scrub = Redactor(registry).scrub
    assert scrub("otp=650000") == f"otp={MASK}"
    assert scrub("code 650000.") == f"code {MASK}."
    assert scrub("released 55650000.0 VND") == "released 55650000.0 VND"
    assert scrub("order 6500001") == "order 6500001"
