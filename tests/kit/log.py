"""A stand-in structlog logger for tests that read what a component logged, by event."""

from __future__ import annotations

from typing import Any

__all__ = ["Recorder"]


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
