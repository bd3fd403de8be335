"""A stand-in structlog logger for tests that read what a component logged, by event."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["OnEvent", "Recorder"]


class Recorder:
    """A structlog-like logger that keeps (level, event, fields)."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Any:
        def log(event: str, **fields: Any) -> None:
            self.records.append((level, event, fields))
        return log

    def bind(self, **_: Any) -> Recorder:
        return self

    def named(self, event: str) -> list[dict[str, Any]]:
        """The fields of every record of ``event``, in order."""
        return [fields for _, name, fields in self.records if name == event]


class OnEvent(Recorder):
    """A Recorder that runs ``action`` (in the logging task) the first time ``event`` is
    logged: the world changes at a known point of a sweep, not after a sleep."""

    def __init__(self, event: str, action: Callable[[], object]) -> None:
        super().__init__()
        self.event = event
        self.action: Callable[[], object] | None = action

    def __getattr__(self, level: str) -> Any:
        record = super().__getattr__(level)

        def log(event: str, **fields: Any) -> None:
            record(event, **fields)
            if event == self.event and self.action is not None:
                action, self.action = self.action, None
                action()
        return log

    def events(self) -> list[str]:
        return [name for _, name, _ in self.records]
