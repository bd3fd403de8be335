"""Every error the CLI reports to a person derives from ``GuardError``.

The CLI maps each class to an exit code and prints ``str(error)``: one clear line, never a
traceback, and never a secret (messages are built from our own words, not from request bodies).
"""

from __future__ import annotations

__all__ = [
    "BrokerReplyError",
    "BrokerUnavailable",
    "ConfigError",
    "CredentialsError",
    "GuardError",
    "JournalError",
    "ReauthRequired",
    "StateError",
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


class BrokerUnavailable(GuardError):
    """The broker could not be reached or answered with a server error."""

    exit_code = 4


class BrokerReplyError(GuardError):
    """The broker answered with something that does not parse; nothing is decided from it."""

    exit_code = 4


class StateError(GuardError):
    """The state directory is unusable (permissions, lock held by another guard)."""

    exit_code = 5


class JournalError(StateError):
    """The journal cannot be written or read (a full disk, a corrupt or unreadable file).

    The guard never sends a cancel it could not journal first; a failure after a cancel left
    is logged (``cancel.sent``) before anything else is tried, then the sweep ends."""

    exit_code = 5
