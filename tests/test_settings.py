"""Credentials from the environment, ``<NAME>_FILE`` and systemd's ``$CREDENTIALS_DIRECTORY``;
the state directory. A missing credential is named, never its value (nor any other value)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from guard.errors import CredentialsError
from guard.record.redact import secrets_registry
from guard.settings import DEFAULT_API_URL, load_credentials, resolve_state_dir

FULL = {
    "SSI_CLIENT_ID": "C123",
    "SSI_API_KEY": "AK-visible-key",
    "SSI_API_SECRET": "AS-very-secret-value",
    "SSI_PRIVATE_KEY": "PFJTQUtleVZhbHVlPi4uLg==",
    "SSI_OTP": "246810",
}


def test_from_the_environment() -> None:
    creds = load_credentials({**FULL, "SSI_API_URL": "http://127.0.0.1:9999",
                              "SSI_API_SECRET": "  AS-very-secret-value\n"})
    assert creds.api_url == "http://127.0.0.1:9999"
    assert (creds.client_id, creds.api_key) == ("C123", "AK-visible-key")
    assert creds.api_secret.get_secret_value() == "AS-very-secret-value"  # stripped
    assert creds.private_key.get_secret_value() == FULL["SSI_PRIVATE_KEY"]
    assert creds.otp is not None and creds.otp.get_secret_value() == "246810"


def test_defaults_and_optional_otp() -> None:
    creds = load_credentials({k: v for k, v in FULL.items() if k != "SSI_OTP"})
    assert creds.api_url == DEFAULT_API_URL and creds.otp is None


def test_repr_and_str_mask_the_secrets() -> None:
    creds = load_credentials(FULL)
    for text in (repr(creds), str(creds)):
        assert "AS-very-secret-value" not in text and FULL["SSI_PRIVATE_KEY"] not in text
        assert "246810" not in text


def test_secrets_are_registered_for_the_log_redactor() -> None:
    load_credentials(FULL)
    known = secrets_registry.snapshot()
    assert {"AS-very-secret-value", FULL["SSI_PRIVATE_KEY"], "246810"} <= set(known)


def test_from_name_file(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("from-file-secret\n")
    env = {**FULL, "SSI_API_SECRET": "", "SSI_API_SECRET_FILE": str(tmp_path / "secret")}
    assert load_credentials(env).api_secret.get_secret_value() == "from-file-secret"


def test_from_the_systemd_credentials_directory(tmp_path: Path) -> None:
    (tmp_path / "SSI_PRIVATE_KEY").write_text("key-from-systemd")
    (tmp_path / "SSI_OTP").write_text("135790")
    env = {k: v for k, v in FULL.items() if k not in ("SSI_PRIVATE_KEY", "SSI_OTP")}
    creds = load_credentials({**env, "CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert creds.private_key.get_secret_value() == "key-from-systemd"
    assert creds.otp is not None and creds.otp.get_secret_value() == "135790"


def test_precedence_env_then_file_then_credentials_directory(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("from-file")
    creds_dir = tmp_path / "creds"
    creds_dir.mkdir()
    (creds_dir / "SSI_API_SECRET").write_text("from-systemd")
    env = {**FULL, "SSI_API_SECRET_FILE": str(tmp_path / "f"),
           "CREDENTIALS_DIRECTORY": str(creds_dir)}
    assert load_credentials(env).api_secret.get_secret_value() == "AS-very-secret-value"
    env["SSI_API_SECRET"] = ""
    assert load_credentials(env).api_secret.get_secret_value() == "from-file"
    env["SSI_API_SECRET_FILE"] = str(tmp_path / "absent")
    assert load_credentials(env).api_secret.get_secret_value() == "from-systemd"


def test_missing_names_every_missing_variable_and_no_value() -> None:
    env = {"SSI_CLIENT_ID": "C123", "SSI_API_SECRET": "AS-very-secret-value",
           "SSI_OTP": "246810", "SSI_PRIVATE_KEY": "   "}
    with pytest.raises(CredentialsError) as caught:
        load_credentials(env)
    message = str(caught.value)
    assert message.startswith("missing credentials: SSI_API_KEY, SSI_PRIVATE_KEY ")
    assert "SSI_CLIENT_ID" not in message and "SSI_API_SECRET" not in message
    for value in ("C123", "AS-very-secret-value", "246810"):
        assert value not in message
    assert caught.value.exit_code == 2


def test_empty_file_counts_as_missing(tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("\n")
    env = {**FULL, "SSI_API_KEY": "", "SSI_API_KEY_FILE": str(tmp_path / "empty")}
    with pytest.raises(CredentialsError, match="missing credentials: SSI_API_KEY "):
        load_credentials(env)


def test_unreadable_file_is_named_without_its_content(tmp_path: Path) -> None:
    folder = tmp_path / "not-a-file"
    folder.mkdir()
    env = {**FULL, "SSI_API_SECRET": "", "SSI_API_SECRET_FILE": str(folder)}
    with pytest.raises(CredentialsError) as caught:
        load_credentials(env)
    assert str(caught.value).startswith(f"cannot read SSI_API_SECRET from {folder}: ")


def test_state_dir_from_env_is_created_private(tmp_path: Path) -> None:
    path = resolve_state_dir({"SSI_GUARD_STATE_DIR": str(tmp_path / "a" / "b")})
    assert path == tmp_path / "a" / "b" and stat.S_IMODE(path.stat().st_mode) == 0o700


def test_state_dir_with_loose_mode_is_tightened(tmp_path: Path) -> None:
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    resolve_state_dir({"SSI_GUARD_STATE_DIR": str(loose)})
    assert stat.S_IMODE(loose.stat().st_mode) == 0o700


def test_state_dir_from_systemd_and_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = tmp_path / "s1", tmp_path / "s2"
    assert resolve_state_dir({"STATE_DIRECTORY": f"{first}:{second}"}) == first
    assert resolve_state_dir({"SSI_GUARD_STATE_DIR": str(second),
                              "STATE_DIRECTORY": str(first)}) == second
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    expected = tmp_path / "home" / ".local" / "state" / "ssi-guard"
    assert resolve_state_dir({}, create=False) == expected and not expected.exists()
    assert resolve_state_dir({}) == expected and expected.is_dir()
