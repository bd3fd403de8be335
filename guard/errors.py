"""Every error the CLI reports to a person derives from ``GuardError``.

The CLI maps each class to an exit code and prints ``str(error)``: one clear line, never a
traceback, and never a secret (messages are built from our own words, not from request bodies).
"""

from __future__ import annotations

from typing import Literal

__all__ = [
    "BrokerCallError",
    "BrokerError",
    "BrokerRefused",
    "BrokerReplyError",
    "BrokerUnavailable",
    "CallKind",
    "ConfigError",
    "CredentialsError",
    "GuardError",
    "JournalError",
    "ReauthRequired",
    "StateError",
    "call_error",
]


class GuardError(Exception):
    """Root of the errors ssi-guard reports."""

    exit_code: int = 1


class ConfigError(GuardError):
    """rules.yaml (or another input file) is invalid. ``messages`` holds one line per problem."""

    exit_code = 1

    def __init__(self, messages: list[str] | str) -> None:
        self.messages = [messages] if isinstance(messages, str) else list(messages)
        super().__init__("\n".join(self.messages))


class CredentialsError(GuardError):
    """Credentials are missing or malformed (never includes their values)."""

    exit_code = 2


class ReauthRequired(GuardError):
    """The broker session is gone: a person must run ``ssi-guard login``."""

    exit_code = 3


CallKind = Literal["rate_limited", "ambiguous", "unavailable", "refused"]


class BrokerError(GuardError):
    """The broker failed the guard: it could not be reached, it refused a call, or it
    answered something that does not parse."""

    exit_code = 4


class BrokerReplyError(BrokerError):
    """The broker answered with something that does not parse; nothing is decided from it."""


class BrokerCallError(BrokerError):
    """A call that failed in a way the caller must tell apart, by ``kind``:

    - ``rate_limited`` (429, with ``retry_after``): nothing was applied;
    - ``ambiguous``: a write that may or may not have been applied (a timeout, a 5xx, a
      dropped connection, an unreadable answer): only a read of the book can tell;
    - ``unavailable``: the broker could not be reached or answered a read with an error;
    - ``refused``: the broker said no (``BrokerRefused``).

    ``reached`` is False only when no connection was made (refused, connect timeout): not a
    byte of the request left this host.
    """

    def __init__(
        self,
        kind: CallKind,
        message: str,
        *,
        retry_after: float | None = None,
        code: str | None = None,
        status: int | None = None,
        reached: bool = True,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after
        self.code = code
        self.status = status
        self.reached = reached


class BrokerUnavailable(BrokerCallError):
    """The broker could not be reached, limited the rate, or failed in a way that may have
    applied a write: anything but a plain refusal."""

    def __init__(self, message: str, *, kind: CallKind = "unavailable",
                 retry_after: float | None = None, code: str | None = None,
                 status: int | None = None, reached: bool = True) -> None:
        super().__init__(kind, message, retry_after=retry_after, code=code, status=status,
                         reached=reached)


class BrokerRefused(BrokerCallError):
    """The broker refused this call (a 4xx with its code): it is up, and said no."""

    def __init__(self, message: str, *, code: str | None = None,
                 status: int | None = None) -> None:
        super().__init__("refused", message, code=code, status=status)


def call_error(kind: CallKind, message: str, *, retry_after: float | None = None,
               code: str | None = None, status: int | None = None,
               reached: bool = True) -> BrokerCallError:
    """The error class for ``kind``: a refusal is ``BrokerRefused``, the rest
    ``BrokerUnavailable``."""
    if kind == "refused":
        return BrokerRefused(message, code=code, status=status)
    return BrokerUnavailable(message, kind=kind, retry_after=retry_after, code=code,
                             status=status, reached=reached)


class StateError(GuardError):
    """The state directory is unusable (permissions, lock held by another guard)."""

    exit_code = 5


class JournalError(StateError):
    """The journal cannot be written or read (a full disk, a corrupt or unreadable file).

    The guard never sends a cancel it could not journal first; a failure after a cancel left
    is logged (``cancel.sent``) before anything else is tried, then the sweep ends."""

    exit_code = 5
