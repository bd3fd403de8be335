"""A structlog processor that masks secrets anywhere in an event, exception text included.

Three nets, because one is never enough for credentials:
1. by key: a value under a key that names a secret (``api_secret``, ``token``, ``otp``...);
2. by value: any string that contains a secret registered at run time (the API secret, the
   private key, the current access and refresh tokens, the OTP);
3. by shape: JWT-like tokens, the SDK's base64 XML key, long hex signatures.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, MutableMapping
from typing import Any

__all__ = ["MASK", "Redactor", "SecretRegistry", "secrets_registry"]

MASK = "***"

_SECRET_KEY = re.compile(
    r"(secret|token|otp|password|passwd|private_?key|signature|authorization|credential|api_?key)",
    re.IGNORECASE,
)
# Keys that name a secret but hold a fact about it (``token_expires_at``, ``token_valid``):
# their values still go through the value and shape nets below.
_ABOUT_A_SECRET = re.compile(r"(_at|_valid|_seconds|_count|_s)$", re.IGNORECASE)
_SHAPES = (
    re.compile(r"eyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]{4,}"),  # JWT
    re.compile(r"PFJTQUtleVZhbHVl[A-Za-z0-9+/=]+"),  # base64("<RSAKeyValue")
    re.compile(r"<RSAKeyValue>.*?</RSAKeyValue>", re.DOTALL),
    re.compile(r"\b[0-9a-fA-F]{128,}\b"),  # RSA signatures and raw key material in hex
    re.compile(r"(?i)(bearer\s+)[^\s\"',]+"),
)
_MIN_SECRET_LEN = 4


class SecretRegistry:
    """The live secret values to mask; thread-safe, values are never exposed."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()

    def add(self, *values: str | None) -> None:
        with self._lock:
            for value in values:
                if value and len(value) >= _MIN_SECRET_LEN:
                    self._values.add(value)

    def snapshot(self) -> tuple[str, ...]:
        with self._lock:
            # Longest first, so a secret that contains another is masked whole.
            return tuple(sorted(self._values, key=len, reverse=True))

    def clear(self) -> None:
        with self._lock:
            self._values.clear()


secrets_registry = SecretRegistry()


def _mask_text(text: str, values: Iterable[str]) -> str:
    for value in values:
        if value not in text:
            continue
        if value.isdigit():
            # A short all-digit secret (an OTP) is masked where it stands as a number of its
            # own, not inside a longer one: 55650000 is an amount, not the OTP 650000.
            text = re.sub(rf"(?<!\d){value}(?!\d)", MASK, text)
        else:
            text = text.replace(value, MASK)
    for shape in _SHAPES:
        if shape.groups:
            text = shape.sub(lambda m: m.group(1) + MASK, text)
        else:
            text = shape.sub(MASK, text)
    return text


class Redactor:
    """structlog processor: returns the event dict with every secret replaced by ``***``."""

    def __init__(self, registry: SecretRegistry = secrets_registry) -> None:
        self._registry = registry

    def __call__(
        self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        values = self._registry.snapshot()
        for key in list(event_dict):
            event_dict[key] = self._clean(key, event_dict[key], values)
        return event_dict

    def scrub(self, text: str) -> str:
        """Mask secrets in one string (used for messages printed outside the log pipeline)."""
        return _mask_text(text, self._registry.snapshot())

    def _clean(self, key: str, value: Any, values: tuple[str, ...]) -> Any:
        if (isinstance(key, str) and _SECRET_KEY.search(key)
                and not _ABOUT_A_SECRET.search(key) and value not in (None, "", False)):
            return MASK
        if isinstance(value, str):
            return _mask_text(value, values)
        if isinstance(value, dict):
            return {k: self._clean(str(k), v, values) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self._clean("", v, values) for v in value)
        if isinstance(value, BaseException):
            return _mask_text(repr(value), values)
        return value
