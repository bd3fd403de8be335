"""The rules.yaml schema (version 1) as pydantic models: parsed once at the edge, frozen inside.

Every model forbids unknown keys: a typo such as ``max_agee`` must be an error, never a rule
that silently stops guarding. Scalars are strict where YAML's guessing could change a meaning:
an account written ``0001234`` without quotes is a number to YAML, and a string such as
``"false"`` is not a bool. ``docs/rules-reference.md`` documents every key and default.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any, Final, Literal, TypeVar
from urllib.parse import urlsplit

import idna
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from guard.config.durations import DurationError, format_duration, parse_duration
from guard.market.calendar import Board
from guard.model import TERMINAL_STATUSES

__all__ = [
    "CANCELLABLE_CHOICES",
    "DEFAULT_CANCELLABLE",
    "ORDER_TYPES",
    "TERMINAL_STATUSES",
    "Alerts",
    "Heartbeat",
    "Limits",
    "OrderTypeCode",
    "Protect",
    "Rule",
    "RuleMatch",
    "RulesFile",
    "Side",
]

# Status codes of ssi_sdk.enums.OrderStatus, grouped by what a cancel can do to them.
PENDING_STATUSES: Final = frozenset({"WC", "WM"})
CANCELLABLE_CHOICES: Final = ("PD", "WA", "RS", "SD", "QU", "PF", "IAV")
DEFAULT_CANCELLABLE: Final = ("WA", "RS", "SD", "QU", "PF")
ORDER_TYPES: Final = ("ATO", "ATC", "LO", "MTL", "MP", "MOK", "MAK", "PLO")

OrderTypeCode = Literal["ATO", "ATC", "LO", "MTL", "MP", "MOK", "MAK", "PLO"]
Side = Literal["B", "S"]

_CONFIG = ConfigDict(extra="forbid", frozen=True)
_SYMBOL = re.compile(r"[A-Z0-9]+")
_SYMBOL_GLOB = re.compile(r"[A-Z0-9*?\[\]!-]+")
_ACCOUNT = re.compile(r"[0-9A-Z]+")
_TIME = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])(?::([0-5][0-9]))?")


def _q(value: object, limit: int = 40) -> str:
    """A value quoted for a message, on one line and cut short: inputs can be anything."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def _err(kind: str, message: str, **ctx: Any) -> PydanticCustomError:
    return PydanticCustomError(kind, message, ctx or None)


def _duration(value: object) -> timedelta:
    """YAML text -> timedelta; a Python timedelta passes if positive (tests build models too)."""
    if isinstance(value, timedelta):
        if value <= timedelta(0):
            raise _err("duration", "a duration must be positive")
        return value
    if isinstance(value, bool | int | float):
        raise _err("duration", f"{_q(value)} has no unit (use 30s, 15m, 1h30m)")
    if not isinstance(value, str):
        raise _err("duration", "expected a duration such as 30s, 15m or 1h30m")
    try:
        return parse_duration(value)
    except DurationError as exc:
        raise _err("duration", str(exc)) from None


def _at_least_one_second(value: timedelta) -> timedelta:
    if value < timedelta(seconds=1):
        raise _err("duration", "must be at least 1s")
    return value


def _clock_time(value: object) -> time:
    """``11:25`` or ``11:25:30`` in exchange time (the loader keeps 11:25 from becoming 685)."""
    if isinstance(value, time):
        if value.tzinfo is not None or value.microsecond:
            raise _err("time", "a time of day is HH:MM or HH:MM:SS, in exchange time")
        return value
    if isinstance(value, str) and (m := _TIME.fullmatch(value.strip())):
        return time(int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))
    raise _err("time", f"{_q(value)} is not a time of day (use HH:MM or HH:MM:SS, e.g. \"11:25\")")


def _holiday(value: object) -> date:
    if isinstance(value, datetime):
        raise _err("date", "a holiday is a date (YYYY-MM-DD), not a date and time")
    if isinstance(value, date):
        return value
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise _err("date", f"{_q(value)} is not a date (use YYYY-MM-DD, e.g. 2026-11-24)")


def _symbol(value: str) -> str:
    if not _SYMBOL.fullmatch(value):
        raise _err("symbol", f"{_q(value)} is not a symbol (upper-case letters and digits)")
    return value


def _symbol_glob(value: str) -> str:
    if not _SYMBOL_GLOB.fullmatch(value):
        raise _err(
            "symbol",
            f"{_q(value)} is not a symbol or glob (upper-case letters, digits, * ? [ ])",
        )
    return value


def _account(value: str) -> str:
    if not _ACCOUNT.fullmatch(value):
        raise _err("account", f"{_q(value)} is not an account number (digits, e.g. \"0001234\")")
    return value


def _status(value: str) -> str:
    if value in TERMINAL_STATUSES:
        raise _err("status", f"{_q(value)} is a final status: there is nothing left to cancel")
    if value in PENDING_STATUSES:
        raise _err("status", f"{_q(value)} is a pending cancel/modify: the broker is already on it")
    if value not in CANCELLABLE_CHOICES:
        choices = ", ".join(CANCELLABLE_CHOICES)
        raise _err("status", f"unknown status {_q(value)} (choose from {choices})")
    return value


def _not_plo(value: str) -> str:
    if value == "PLO":
        raise _err("plo_order", "PLO orders can never be cancelled")
    return value


_WEBHOOK_SCHEME = re.compile(r"(?i)https?:")
_HOST_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
_BAD_PORT = "the port is not a whole number from 1 to 65535"
_BAD_HOST = "the host is not a valid name or IP address"


def _webhook(value: str) -> str:
    """An http(s) URL that the alert sender (httpx) can send to, checked here so that a typo
    (``:18o99``) fails ``validate`` instead of the delivery at run time. The value may hold a
    token (in its path, query or user info), so no message ever quotes any part of it."""
    if any(c.isspace() or not c.isprintable() for c in value):
        raise _err("url", "the URL contains a space or a control character")
    if not _WEBHOOK_SCHEME.match(value):
        raise _err("url", "must be an http:// or https:// URL")
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:  # unbalanced or invalid [IPv6] brackets
        raise _err("url", _BAD_HOST) from None
    if parts.scheme.lower() not in {"http", "https"}:
        raise _err("url", "must be an http:// or https:// URL")
    if not host:
        raise _err("url", "the URL has no host")
    hostport = parts.netloc.rpartition("@")[2]
    after_host = hostport.rpartition("]")[2] if hostport.startswith("[") else hostport
    _, colon, port = after_host.partition(":")
    if colon and port and not (len(port) <= 5 and port.isascii() and port.isdigit()
                               and 1 <= int(port) <= 65535):
        raise _err("url", _BAD_PORT)
    # What httpx does to the host before it connects: IDNA 2008 for a non-ASCII name. (httpx
    # itself is not imported: the rules model is read by the pure core.)
    try:
        raw_host = host if host.isascii() else idna.encode(host, uts46=True).decode("ascii")
    except (UnicodeError, idna.IDNAError):
        raise _err("url", _BAD_HOST) from None
    if not _valid_host(raw_host):
        raise _err("url", _BAD_HOST)
    return value


def _optional_webhook(value: str | None) -> str | None:
    return None if value is None else _webhook(value)


def _valid_host(raw_host: str) -> bool:
    """An IP address, or a DNS name (IDNs already in punycode): labels of letters, digits,
    ``-`` and ``_``, none empty, at most 253 characters (a trailing dot is allowed)."""
    try:
        ipaddress.ip_address(raw_host)
    except ValueError:
        pass
    else:
        return True
    name = raw_host.removesuffix(".")
    return 0 < len(name) <= 253 and all(_HOST_LABEL.fullmatch(p) for p in name.split("."))


_NAME_MAX = 80


def _rule_name(value: str) -> str:
    """Names reach logs, alerts and terminals: one line of visible text, so a stray tab, an
    escape sequence or a right-to-left override cannot disguise which rule acted."""
    if not value:
        raise _err("rule_name", "must not be empty")
    if value.isspace():
        raise _err("rule_name", "must not be blank")
    if value != value.strip():
        raise _err("rule_name", "must not start or end with a space")
    bad = next((c for c in value if not c.isprintable() or _INVISIBLE.fullmatch(c)), None)
    if bad is not None:
        raise _err("rule_name", f"{_q(value)} contains a control or invisible character "
                   f"({bad!r})")
    if len(value) > _NAME_MAX:
        raise _err("rule_name", f"at most {_NAME_MAX} characters (got {len(value)})")
    return value


# Format characters str.isprintable() lets through that still hide or reorder text.
_INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")


def _filter_given(value: object) -> object:
    """``accounts:`` with nothing after it is YAML null. Read as "absent" it would widen the
    rule to every account; whoever wrote the key meant to narrow it. So it is an error."""
    if value is None:
        raise _err("null", "has no value: list at least one, or remove the key to match any")
    return value


def _alerts_given(value: object) -> object:
    if value is None:
        raise _err("null", "has no value: give a webhook, or remove the key to send no alerts")
    return value


_CRID_MAX = 64


def _crid_glob(value: str) -> str:
    """A glob on ``clientRequestId``: one line of visible ASCII, as the strategy wrote it."""
    if not value:
        raise _err("crid", "must not be empty")
    if len(value) > _CRID_MAX:
        raise _err("crid", f"at most {_CRID_MAX} characters (got {len(value)})")
    if not (value.isascii() and value.isprintable()) or " " in value:
        raise _err("crid", f"{_q(value)} is not a client request id glob (visible ASCII, no "
                   "spaces; * ? [ ] as in shell globs)")
    return value


def _heartbeat_file(value: str) -> str:
    """An absolute path: a relative one would depend on the daemon's working directory."""
    if not value.startswith("/") or "\0" in value or "\n" in value:
        raise _err("path", f"{_q(value)} is not an absolute path (e.g. /run/strategy-a/heartbeat)")
    return value


Duration = Annotated[timedelta, BeforeValidator(_duration)]
PollInterval = Annotated[
    timedelta, BeforeValidator(_duration), AfterValidator(_at_least_one_second)
]
ClockTime = Annotated[time, BeforeValidator(_clock_time)]
HolidayDate = Annotated[date, BeforeValidator(_holiday)]
Symbol = Annotated[StrictStr, AfterValidator(_symbol)]
SymbolGlob = Annotated[StrictStr, AfterValidator(_symbol_glob)]
Account = Annotated[StrictStr, AfterValidator(_account)]
Status = Annotated[StrictStr, AfterValidator(_status)]
OrderTypeFilter = Annotated[OrderTypeCode, AfterValidator(_not_plo)]
NonEmptyStr = Annotated[StrictStr, Field(min_length=1)]
_T = TypeVar("_T")
Given = Annotated[_T, BeforeValidator(_filter_given)]  # optional, but never an explicit null
RuleName = Annotated[StrictStr, AfterValidator(_rule_name)]
CridGlob = Annotated[StrictStr, AfterValidator(_crid_glob)]
HeartbeatFile = Annotated[StrictStr, AfterValidator(_heartbeat_file)]


def _problems(title: str, problems: list[tuple[tuple[str | int, ...], str, object]]) -> None:
    """Raise every cross-field problem at once, each at its own field path (for line numbers)."""
    if problems:
        details = [
            InitErrorDetails(type=_err("cross_field", msg), loc=loc, input=value)
            for loc, msg, value in problems
        ]
        raise ValidationError.from_exception_data(title, details)


class Limits(BaseModel):
    """Circuit breakers: a sweep that wants more than ``max_cancels_per_sweep`` sends none."""

    model_config = _CONFIG

    max_cancels_per_sweep: StrictInt = Field(default=200, ge=1, le=100_000)
    confirm_timeout: Duration = timedelta(seconds=30)


class Protect(BaseModel):
    """Orders the guard never touches, whatever a rule says."""

    model_config = _CONFIG

    client_request_id_prefixes: tuple[NonEmptyStr, ...] = ("keep-",)


class Alerts(BaseModel):
    """Where the daemon reports trips and failures (used by the alerting step), in which
    language, and when the day's report goes out. Without ``webhook`` alerts are only logged."""

    model_config = _CONFIG

    webhook: Annotated[StrictStr | None, AfterValidator(_optional_webhook)] = None
    format: Literal["generic", "slack", "telegram"] = "generic"
    language: Literal["en", "vi"] = "en"
    daily_report_at: ClockTime | None = None


class RuleMatch(BaseModel):
    """Filters, all optional and ANDed. An absent filter matches anything; an empty list is an
    error because it would match nothing and so silently disable the rule, and a key with no
    value (YAML null) is an error because it would silently match everything."""

    model_config = _CONFIG

    accounts: Given[tuple[Account, ...] | None] = Field(default=None, min_length=1)
    boards: Given[tuple[Board, ...] | None] = Field(default=None, min_length=1)
    symbols: Given[tuple[SymbolGlob, ...] | None] = Field(default=None, min_length=1)
    sides: Given[tuple[Side, ...] | None] = Field(default=None, min_length=1)
    order_types: Given[tuple[OrderTypeFilter, ...] | None] = Field(default=None, min_length=1)
    statuses: Given[tuple[Status, ...] | None] = Field(default=None, min_length=1)
    client_request_ids: Given[tuple[CridGlob, ...] | None] = Field(default=None, min_length=1)
    partially_filled: Literal["cancel_rest", "skip"] = "cancel_rest"
    min_remaining_qty: StrictInt = Field(default=0, ge=0)


class Heartbeat(BaseModel):
    """The dead-man switch: stale when ``file`` is missing or its mtime is older than
    ``stale_after`` (judged on the host's wall clock, since mtimes are wall time)."""

    model_config = _CONFIG

    file: HeartbeatFile
    stale_after: PollInterval


_TRIGGERS = ("max_age", "before_close", "at", "heartbeat")


class Rule(BaseModel):
    """One named rule: exactly one trigger (``max_age``, ``before_close``, ``at`` or
    ``heartbeat``) + filters."""

    model_config = _CONFIG

    name: RuleName
    max_age: Duration | None = None
    before_close: Duration | None = None
    at: tuple[ClockTime, ...] | None = Field(default=None, min_length=1)
    at_window: Duration = timedelta(seconds=60)
    heartbeat: Heartbeat | None = None
    match: RuleMatch = RuleMatch()

    @model_validator(mode="after")
    def _one_trigger(self) -> Rule:
        given = [t for t in _TRIGGERS if getattr(self, t) is not None]
        if len(given) != 1:
            found = " and ".join(given) if given else "none"
            raise ValueError(
                "a rule needs exactly one trigger (max_age, before_close, at or heartbeat); "
                f"found {found}"
            )
        if "at_window" in self.model_fields_set and self.at is None:
            raise ValueError("at_window only applies to an `at` trigger")
        if self.at is not None and len(set(self.at)) != len(self.at):
            raise ValueError("`at` lists the same time twice")
        return self

    @property
    def trigger(self) -> str:
        """The trigger's key, for logs: ``max_age``, ``before_close``, ``at`` or ``heartbeat``."""
        return next(t for t in _TRIGGERS if getattr(self, t) is not None)

    def describe_trigger(self) -> str:
        """``max_age 15m``, ``before_close 5m`` or ``at 11:25, 14:00``: for logs and dry runs."""
        if self.max_age is not None:
            return f"max_age {format_duration(self.max_age)}"
        if self.before_close is not None:
            return f"before_close {format_duration(self.before_close)}"
        if self.heartbeat is not None:
            return (f"heartbeat {self.heartbeat.file} stale_after "
                    f"{format_duration(self.heartbeat.stale_after)}")
        times = self.at or ()
        return "at " + ", ".join(t.isoformat("seconds" if t.second else "minutes") for t in times)


class RulesFile(BaseModel):
    """The whole of rules.yaml, schema version 1. ``dry_run`` defaults to True: safe by default."""

    model_config = _CONFIG

    version: StrictInt
    timezone: Literal["Asia/Ho_Chi_Minh"] = "Asia/Ho_Chi_Minh"
    accounts: tuple[Account, ...] = Field(min_length=1)
    poll_every: PollInterval = timedelta(seconds=30)
    dry_run: StrictBool = True
    cancellable: tuple[Status, ...] = Field(default=DEFAULT_CANCELLABLE, min_length=1)
    limits: Limits = Limits()
    protect: Protect = Protect()
    holidays: tuple[HolidayDate, ...] = ()
    boards: dict[Symbol, Board] = Field(default_factory=dict)
    alerts: Annotated[Alerts | None, BeforeValidator(_alerts_given)] = None
    rules: tuple[Rule, ...] = Field(min_length=1)

    @field_validator("version")
    @classmethod
    def _version_1(cls, value: int) -> int:
        if value != 1:
            raise ValueError(f"unsupported schema version {value}: this ssi-guard reads version 1")
        return value

    @field_validator("accounts", "cancellable")
    @classmethod
    def _unique(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        duplicates = sorted({v for v in value if value.count(v) > 1})
        if duplicates:
            raise ValueError(f"listed twice: {', '.join(duplicates)}")
        return value

    @model_validator(mode="after")
    def _cross_check(self) -> RulesFile:
        """Checks that span keys; each problem is reported at the exact item that is wrong."""
        problems: list[tuple[tuple[str | int, ...], str, object]] = []
        seen: dict[str, int] = {}
        for i, rule in enumerate(self.rules):
            if rule.name in seen:
                problems.append(
                    (("rules", i, "name"), f"rule name {_q(rule.name)} is already used by "
                     f"rules[{seen[rule.name]}]", rule.name)
                )
            seen.setdefault(rule.name, i)
            for j, account in enumerate(rule.match.accounts or ()):
                if account not in self.accounts:
                    problems.append(
                        (("rules", i, "match", "accounts", j),
                         f"account {_q(account)} is not in the top-level accounts", account)
                    )
            for j, status in enumerate(rule.match.statuses or ()):
                if status not in self.cancellable:
                    problems.append(
                        (("rules", i, "match", "statuses", j),
                         f"status {_q(status)} is not in cancellable", status)
                    )
            problems.extend(self._never_matches(i, rule.match))
        _problems("RulesFile", problems)
        return self

    def _never_matches(
        self, i: int, match: RuleMatch
    ) -> list[tuple[tuple[str | int, ...], str, object]]:
        """Filters that provably select nothing a cancel could reach: a rule switched off
        without a word. Only what is certain from this file alone is refused."""
        found: list[tuple[tuple[str | int, ...], str, object]] = []
        statuses = match.statuses
        if match.partially_filled == "skip" and (
            statuses is None or all(s in self.cancellable for s in statuses)
        ):
            # skip drops every PF order; an order must have a cancellable status to be
            # cancelled (otherwise it is held), and a listed status must also be its own.
            reachable = set(statuses if statuses is not None else self.cancellable)
            if reachable <= {"PF"}:
                where = "statuses" if statuses is not None else "cancellable"
                end = "match" if statuses is not None else "cancel an order"
                found.append(
                    (("rules", i, "match", "partially_filled"),
                     f"skip leaves out every PF order and {where} allows only PF: the rule "
                     f"can never {end}", "skip")
                )
        boards, symbols = match.boards, match.symbols
        if boards is not None and symbols is not None and all(
            s in self.boards and self.boards[s] not in boards for s in symbols
        ):
            # Every symbol is exact (a glob is never a key of `boards:`), and `boards:` wins
            # over the broker's master data, so each listed symbol is on a board left out.
            pinned = ", ".join(f"{s}: {self.boards[s].value}" for s in symbols)
            found.append(
                (("rules", i, "match", "symbols"),
                 f"every symbol listed is pinned by `boards:` to a board this rule's `boards` "
                 f"leaves out ({pinned}): the rule can never match", list(symbols))
            )
        return found
