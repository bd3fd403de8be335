"""Bearer tokens, refresh tokens and the one-session-per-apiKey rule, as SSI enforces them.

- A login (``/auth/token``) starts a new session for the apiKey and kills the previous one.
- A refresh token is single use. Presenting a used one is treated as a leak: the whole session
  is revoked (code 401103), exactly what makes the SDK raise ``ReauthenticationRequired``.
- Expiry uses the real wall clock, because the SDK checks ``expiresAt`` against its host clock.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass

__all__ = [
    "CODE_REFRESH_EXPIRED",
    "CODE_REFRESH_REVOKED",
    "Session",
    "SessionStore",
]

# Error codes, not secrets (ruff's S105 sees "TOKEN" in the names).
CODE_TOKEN_MISSING = "401001"  # noqa: S105
CODE_TOKEN_INVALID = "401002"  # noqa: S105
CODE_TOKEN_EXPIRED = "401003"  # noqa: S105
CODE_SESSION_REVOKED = "401004"
CODE_BAD_SIGNATURE = "401005"
CODE_BAD_CREDENTIALS = "401010"
CODE_BAD_OTP = "401105"
CODE_SMART_OTP_PENDING = "401114"
CODE_SMART_OTP_UNKNOWN = "401116"
CODE_REFRESH_EXPIRED = "401101"
CODE_REFRESH_REVOKED = "401103"


@dataclass
class Session:
    api_key: str
    access_token: str
    access_expires: float
    refresh_token: str
    refresh_expires: float
    revoked: bool = False


class AuthFailure(Exception):
    """Turned into HTTP 401 with ``code`` by the server."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class SessionStore:
    """Thread-safe sessions keyed by apiKey."""

    def __init__(self, access_ttl: float = 3600.0, refresh_ttl: float = 86400.0) -> None:
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl
        self._by_key: dict[str, Session] = {}
        self._by_access: dict[str, Session] = {}
        self._used_refresh: dict[str, Session] = {}
        self._lock = threading.Lock()
        self.logins = 0
        self.refreshes = 0

    def _new(self, api_key: str) -> Session:
        now = time.time()
        session = Session(
            api_key=api_key,
            access_token="sim-at-" + secrets.token_urlsafe(24),
            access_expires=now + self.access_ttl,
            refresh_token="sim-rt-" + secrets.token_urlsafe(24),
            refresh_expires=now + self.refresh_ttl,
        )
        old = self._by_key.get(api_key)
        if old is not None:
            old.revoked = True
        self._by_key[api_key] = session
        self._by_access[session.access_token] = session
        return session

    def login(self, api_key: str) -> Session:
        with self._lock:
            self.logins += 1
            return self._new(api_key)

    def refresh(self, refresh_token: str) -> Session:
        with self._lock:
            if refresh_token in self._used_refresh:
                # Reuse = leak: revoke the apiKey's whole session.
                leaked = self._used_refresh[refresh_token]
                current = self._by_key.get(leaked.api_key)
                if current is not None:
                    current.revoked = True
                raise AuthFailure(CODE_REFRESH_REVOKED, "refresh token reused: session revoked")
            session = next(
                (s for s in self._by_key.values() if s.refresh_token == refresh_token), None
            )
            if session is None or session.revoked:
                raise AuthFailure(CODE_REFRESH_REVOKED, "refresh token revoked")
            if session.refresh_expires <= time.time():
                raise AuthFailure(CODE_REFRESH_EXPIRED, "refresh token expired")
            self._used_refresh[refresh_token] = session
            self.refreshes += 1
            return self._new(session.api_key)

    def check(self, authorization: str | None) -> Session:
        """The live session for an ``Authorization: Bearer`` header, or ``AuthFailure``."""
        if not authorization or not authorization.startswith("Bearer "):
            raise AuthFailure(CODE_TOKEN_MISSING, "missing bearer token")
        token = authorization[len("Bearer ") :].strip()
        with self._lock:
            session = self._by_access.get(token)
            if session is None:
                raise AuthFailure(CODE_TOKEN_INVALID, "unknown access token")
            if session.revoked:
                raise AuthFailure(CODE_SESSION_REVOKED, "session revoked by another login")
            if session.access_expires <= time.time():
                raise AuthFailure(CODE_TOKEN_EXPIRED, "access token expired")
            return session

    def api_key_of(self, authorization: str | None) -> str | None:
        """The apiKey a bearer token was issued to, live or not (for rate metering)."""
        if not authorization or not authorization.startswith("Bearer "):
            return None
        with self._lock:
            session = self._by_access.get(authorization[len("Bearer ") :].strip())
            return session.api_key if session else None

    def revoke_all(self) -> None:
        """Fault: another login killed every session (refresh tokens die with them)."""
        with self._lock:
            for session in self._by_key.values():
                session.revoked = True

    def expire_access(self) -> None:
        """Fault: every access token is past its expiry (refresh still works)."""
        with self._lock:
            for session in self._by_key.values():
                session.access_expires = time.time() - 1
