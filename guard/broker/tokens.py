"""The token cache: a file in the state directory, mode 0600, never in a log.

The cache is bound to the API URL and API key it was issued for, so a simulator token is never
offered to SSI's production server, nor one account's token to another key.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guard.record.redact import secrets_registry

__all__ = ["CachedToken", "TokenCache"]


@dataclass(frozen=True)
class CachedToken:
    """The SDK's ``Token.to_dict()``, plus what it was issued for."""

    api_url: str
    key_id: str
    token: dict[str, Any]

    @property
    def expires_at(self) -> int:
        return int(self.token.get("expiresAt") or 0)

    @property
    def refresh_expires_at(self) -> int:
        return int(self.token.get("refreshExpiresAt") or 0)


def key_id(api_url: str, api_key: str) -> str:
    """A stable, non-reversible name for (URL, API key)."""
    return hashlib.sha256(f"{api_url}\0{api_key}".encode()).hexdigest()[:16]


class TokenCache:
    """Read and write ``token.json`` atomically, mode 0600 from the first byte."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "token.json"

    def load(self, api_url: str, api_key: str) -> CachedToken | None:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(raw, dict) or not isinstance(raw.get("token"), dict):
            return None
        if raw.get("key_id") != key_id(api_url, api_key):
            return None
        token = raw["token"]
        secrets_registry.add(token.get("accessToken"), token.get("refreshToken"))
        return CachedToken(api_url, raw["key_id"], token)

    def save(self, api_url: str, api_key: str, token: dict[str, Any]) -> None:
        secrets_registry.add(token.get("accessToken"), token.get("refreshToken"))
        payload = {"api_url": api_url, "key_id": key_id(api_url, api_key), "token": token}
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                os.fchmod(fh.fileno(), 0o600)
                json.dump(payload, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise

    def mtime(self) -> float:
        """When the cache was last written (0 if absent): lets the daemon notice a new login."""
        try:
            return self.path.stat().st_mtime
        except OSError:
            return 0.0

    def clear(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
