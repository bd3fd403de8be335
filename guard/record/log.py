"""Logging set-up: structlog for our events, stdlib logging of ``ssi_sdk`` and ``apscheduler``
routed through the same processors, JSON lines when not on a TTY, a console view on a TTY.

Secrets are masked by ``Redactor`` after exceptions are rendered, so tracebacks are masked too.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import MutableMapping
from typing import Any, Literal, Protocol, TextIO

import structlog
from structlog.typing import Processor

from guard.record.redact import Redactor

__all__ = ["Log", "Observer", "add_observers", "configure_logging", "get_logger",
           "is_guard_logging",
           "remove_observers"]

Format = Literal["json", "console", "auto"]


class Log(Protocol):
    """What the guard asks of a logger: structlog's bound logger (``get_logger``), or a test's
    recorder. Events are ``noun.verb`` with their context as fields, never formatted in."""

    def bind(self, **context: Any) -> Log: ...
    def debug(self, event: str, **fields: Any) -> Any: ...
    def info(self, event: str, **fields: Any) -> Any: ...
    def warning(self, event: str, **fields: Any) -> Any: ...
    def error(self, event: str, **fields: Any) -> Any: ...
    def exception(self, event: str, **fields: Any) -> Any: ...


# Structured tracebacks WITHOUT frame locals: structlog shows locals by default, cut to 80
# characters, and a secret longer than that (a refresh token, a key) would reach the log as a
# prefix the redactor cannot recognise. The frames (file, line, function) are kept.
_DICT_TRACEBACKS = structlog.processors.ExceptionRenderer(
    structlog.tracebacks.ExceptionDictTransformer(show_locals=False))


_LIBRARIES = ("ssi_sdk", "apscheduler", "aiohttp.access", "httpx", "httpcore")


class _LibraryChatter(logging.Filter):
    """Drop library records below ``floor``: ``ssi_sdk`` sets its logger back to its
    ``Config.log_level`` (INFO by default) every time an ``Auth`` is made."""

    def __init__(self, floor: int) -> None:
        super().__init__()
        self.floor = floor

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= self.floor:
            return True
        return not any(record.name == n or record.name.startswith(n + ".") for n in _LIBRARIES)


# The handler configure_logging installed, if any (a list, so it is replaced, not rebound).
_INSTALLED: list[logging.Handler] = []


def is_guard_logging() -> bool:
    """Whether events go through ``configure_logging``'s chain (and so its redactor) right now:
    structlog hands them to stdlib logging, whose root handler is the one it installed."""
    if not _INSTALLED or not structlog.is_configured():
        return False
    chain = structlog.get_config().get("processors", [])
    return (bool(chain) and chain[-1] is structlog.stdlib.ProcessorFormatter.wrap_for_formatter
            and _INSTALLED[0] in logging.getLogger().handlers)


def _shared() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso"),
    ]


def configure_logging(
    level: str = "INFO",
    fmt: Format = "auto",
    stream: TextIO | None = None,
    renderer_override: Processor | None = None,
) -> None:
    """Configure structlog and stdlib logging once for the process.

    ``renderer_override`` replaces the JSON/console renderer (the demo's narrative view); the
    redaction step still runs before it.
    """
    out = stream or sys.stdout
    use_console = fmt == "console" or (fmt == "auto" and out.isatty())
    renderer: Processor
    final: list[Processor]
    if renderer_override is not None:
        final = [structlog.processors.format_exc_info, Redactor(), renderer_override]
    elif use_console:
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty())
        final = [structlog.processors.format_exc_info, Redactor(), renderer]
    else:
        renderer = structlog.processors.JSONRenderer()
        final = [_DICT_TRACEBACKS, Redactor(), renderer]

    structlog.configure(
        processors=[
            *_shared(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared(),
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    _INSTALLED[:] = [handler]
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    handler.addFilter(_LibraryChatter(max(logging.WARNING, root.level)))
    # Library chatter below WARNING is noise for an operator; our own events keep ``level``.
    # (The handler's filter holds even after ssi_sdk resets its logger's level in Auth().)
    for name in _LIBRARIES:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    # ssi_sdk adds its own stdout handler to "ssi_sdk" unless one is there: a NullHandler keeps
    # it from doing so, and its records propagate to the root handler above instead.
    sdk = logging.getLogger("ssi_sdk")
    if not any(isinstance(h, logging.NullHandler) for h in sdk.handlers):
        for old in list(sdk.handlers):
            sdk.removeHandler(old)
        sdk.addHandler(logging.NullHandler())


def get_logger(name: str = "guard", **context: Any) -> Log:
    """A bound structlog logger; bind context (account, order_id, rule), never format it in."""
    logger: Log = structlog.get_logger(name).bind(**context)
    return logger


class Observer:
    """Base of the processors that watch events (metrics, alert rules): ``observe`` sees every
    event dict, which passes on unchanged. An observer must never break the log call it rides
    on, and so the sweep that made it: whatever ``observe`` raises is swallowed here, once."""

    def __call__(self, logger: Any, name: str,
                 event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        with contextlib.suppress(Exception):
            self.observe(event)
        return event

    def observe(self, event: MutableMapping[str, Any]) -> None:
        raise NotImplementedError


def add_observers(*observers: Processor) -> None:
    """Insert processors that watch every structlog event (metrics, alerts) just before the
    hand-off to the formatter; they must return the event dict unchanged."""
    processors = list(structlog.get_config()["processors"])
    at = len(processors) - 1 if processors else 0
    for observer in observers:
        if observer not in processors:
            processors.insert(at, observer)
            at += 1
    structlog.configure(processors=processors)


def remove_observers(*observers: Processor) -> None:
    processors = [p for p in structlog.get_config()["processors"] if p not in observers]
    structlog.configure(processors=processors)
