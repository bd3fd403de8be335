"""Credentials and the state directory, read from the environment and files only.

Credentials never come from rules.yaml. Each ``SSI_*`` value is looked up, in order, in:
the environment variable; a file named by ``<NAME>_FILE``; systemd's
``$CREDENTIALS_DIRECTORY/<NAME>`` (``LoadCredential=SSI_API_SECRET:/etc/ssi-guard/api_secret``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, SecretStr

from guard.errors import CredentialsError, StateError
from guard.record.redact import secrets_registry

__all__ = ["DEFAULT_API_URL", "Credentials", "load_credentials", "resolve_state_dir"]

DEFAULT_API_URL = "https://api.ssi.com.vn"
_REQUIRED = ("SSI_CLIENT_ID", "SSI_API_KEY", "SSI_API_SECRET", "SSI_PRIVATE_KEY")


class Credentials(BaseModel):
    """What the SDK needs to log in and sign. Secrets are ``SecretStr``: their repr is masked."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    api_url: str
    client_id: str
    api_key: str
    api_secret: SecretStr
    private_key: SecretStr
    otp: SecretStr | None = None


def _lookup(name: str, env: Mapping[str, str]) -> str | None:
    value = env.get(name)
    if value:
        return value.strip()
    candidates: list[Path] = []
    if env.get(f"{name}_FILE"):
        candidates.append(Path(env[f"{name}_FILE"]))
    if env.get("CREDENTIALS_DIRECTORY"):
        candidates.append(Path(env["CREDENTIALS_DIRECTORY"]) / name)
    for path in candidates:
        try:
            return path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            continue
        except (OSError, UnicodeDecodeError) as exc:
            why = type(exc).__name__
            raise CredentialsError(f"cannot read {name} from {path}: {why}") from None
    return None


def load_credentials(env: Mapping[str, str] | None = None) -> Credentials:
    """Read credentials; a missing one is named (never its value) in one clear error."""
    source = os.environ if env is None else env
    values = {name: _lookup(name, source) for name in (*_REQUIRED, "SSI_OTP", "SSI_API_URL")}
    missing = [name for name in _REQUIRED if not values[name]]
    if missing:
        raise CredentialsError(
            "missing credentials: "
            + ", ".join(missing)
            + " (set them in the environment, a <NAME>_FILE, or systemd LoadCredential=)"
        )
    secrets_registry.add(values["SSI_API_SECRET"], values["SSI_PRIVATE_KEY"], values["SSI_OTP"])
    return Credentials(
        api_url=values["SSI_API_URL"] or DEFAULT_API_URL,
        client_id=values["SSI_CLIENT_ID"] or "",
        api_key=values["SSI_API_KEY"] or "",
        api_secret=SecretStr(values["SSI_API_SECRET"] or ""),
        private_key=SecretStr(values["SSI_PRIVATE_KEY"] or ""),
        otp=SecretStr(values["SSI_OTP"]) if values["SSI_OTP"] else None,
    )


def resolve_state_dir(env: Mapping[str, str] | None = None, create: bool = True) -> Path:
    """``SSI_GUARD_STATE_DIR``, else systemd's ``$STATE_DIRECTORY``, else
    ``~/.local/state/ssi-guard``; created 0700 and refused if others can read it."""
    source = os.environ if env is None else env
    raw = source.get("SSI_GUARD_STATE_DIR") or source.get("STATE_DIRECTORY", "").split(":")[0]
    path = Path(raw) if raw else Path.home() / ".local" / "state" / "ssi-guard"
    if not create:
        return path
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            path.chmod(0o700)
    except OSError as exc:
        raise StateError(f"state directory {path} is unusable: {exc.strerror}") from None
    return path
