"""The daemon's health: what systemd's STATUS=, ``/healthz`` and ``ssi-guard status`` report.

Written to ``$STATE_DIR/status.json`` (0600) on every change, so ``ssi-guard status`` can
answer without a network port.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

__all__ = ["Health", "pid_alive", "read_status", "write_status"]

State = Literal["starting", "healthy", "degraded", "stopping", "stopped"]


@dataclass(frozen=True)
class Health:
    state: State = "starting"
    reason: str = ""
    last_sweep_at: str = ""
    last_sweep_result: str = ""
    last_ok_sweep_at: str = ""
    token_expires_at: int = 0
    next_sweeps: dict[str, str] = field(default_factory=dict)
    pid: int = field(default_factory=os.getpid)
    updated_at: str = ""
    market_offset_s: float = 0.0  # market clock minus wall clock: non-zero only in a rehearsal
    stale_heartbeats: dict[str, str] = field(default_factory=dict)  # rule -> why, while stale

    @property
    def healthy(self) -> bool:
        return self.state == "healthy"

    def with_(self, **changes: Any) -> Health:
        return replace(self, **changes)

    def one_line(self) -> str:
        """A summary for systemd's STATUS= (shown by ``systemctl status``)."""
        parts = [self.state + (f" ({self.reason})" if self.reason else "")]
        if self.last_sweep_at:
            parts.append(f"last sweep {self.last_sweep_at} {self.last_sweep_result}")
        if self.next_sweeps:
            first = min(self.next_sweeps.items(), key=lambda kv: kv[1])
            parts.append(f"next {first[0]} {first[1]}")
        return "; ".join(parts)


def write_status(state_dir: Path, health: Health, now: datetime) -> None:
    path = state_dir / "status.json"
    tmp = path.with_suffix(".tmp")
    data = asdict(health.with_(updated_at=now.isoformat(timespec="seconds")))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)
    os.replace(tmp, path)


def read_status(state_dir: Path) -> dict[str, Any] | None:
    try:
        raw = json.loads((state_dir / "status.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return raw if isinstance(raw, dict) else None


def pid_alive(pid: object) -> bool:
    """Whether process ``pid`` exists (a process of another user counts: it is alive)."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
