"""Logging as an operator gets it: JSON lines when stdout is not a terminal, a console view on
a terminal, the stdlib logs of ``ssi_sdk`` and ``apscheduler`` through the same pipeline, and no
secret in any of it (event values, library messages, exception text, traceback frames)."""

from __future__ import annotations

import io
import json
import logging
import os
import pty
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from ssi_sdk import Auth, Config

from guard.record.log import configure_logging
from guard.record.redact import secrets_registry

SECRET = "sk-live-" + "7f3a9c" * 4  # an API secret, registered as load_credentials does
LONG_SECRET = "rt-" + "Yx81" * 40  # 163 characters: longer than a traceback local is shown


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """configure_logging is process-wide: put structlog and the stdlib back afterwards."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    libs = {name: (list(logging.getLogger(name).handlers), logging.getLogger(name).level)
            for name in ("ssi_sdk", "apscheduler", "httpx", "httpcore", "aiohttp.access")}
    secrets_registry.add(SECRET, LONG_SECRET)
    try:
        yield
    finally:
        structlog.configure(**saved)
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, (hs, lvl) in libs.items():
            logging.getLogger(name).handlers[:] = hs
            logging.getLogger(name).setLevel(lvl)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def json_lines(buf: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buf.getvalue().splitlines()]


def test_json_lines_when_not_a_tty_and_console_on_a_tty() -> None:
    pipe = io.StringIO()
    configure_logging(stream=pipe)  # fmt="auto"
    structlog.get_logger("guard").info("sweep.finished", result="ok", targets=2)
    [event] = json_lines(pipe)
    assert event["event"] == "sweep.finished" and event["result"] == "ok"
    assert event["targets"] == 2 and event["level"] == "info" and event["logger"] == "guard"
    assert event["timestamp"].endswith("Z")

    tty = Terminal()
    configure_logging(stream=tty)
    structlog.get_logger("guard").info("sweep.finished", result="ok")
    text = tty.getvalue()
    assert "sweep.finished" in text and "result" in text
    with pytest.raises(ValueError):
        json.loads(text)


def test_auto_format_in_a_real_subprocess_pipe_and_pty() -> None:
    code = ("from guard.record.log import configure_logging; import structlog; "
            "configure_logging(); structlog.get_logger('guard').info('daemon.ready', state='ok')")
    piped = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True, timeout=30)
    assert json.loads(piped.stdout)["event"] == "daemon.ready"

    leader, follower = pty.openpty()
    try:
        proc = subprocess.run([sys.executable, "-c", code], stdout=follower,
                              stderr=subprocess.PIPE, check=True, timeout=30)
        assert proc.returncode == 0
        os.close(follower)
        follower = -1
        out = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(leader)
        if follower != -1:
            os.close(follower)
    text = out.decode()
    assert "daemon.ready" in text and not text.lstrip().startswith("{")


def test_sdk_and_apscheduler_stdlib_logs_go_through_structlog(
    capsys: pytest.CaptureFixture[str]
) -> None:
    buf = io.StringIO()
    configure_logging(stream=buf)
    # The SDK attaches its own stdout handler on every Auth() unless "ssi_sdk" has one.
    auth = Auth(Config(client_id="c", api_key="k", api_secret="s", private_key="p",
                       api_url="http://127.0.0.1:9"))
    auth.close()
    logging.getLogger("ssi_sdk.transport.rest").warning("Retrying GET after %s", "ReadTimeout")
    logging.getLogger("ssi_sdk.services.token_manager").info("Token refreshed successfully")
    logging.getLogger("apscheduler.scheduler").warning(
        'Run time of job "poll" was missed by %s', "0:00:05")
    logging.getLogger("apscheduler.scheduler").info("Added job %r", "poll")

    events = json_lines(buf)
    assert [(e["logger"], e["level"], e["event"]) for e in events] == [
        ("ssi_sdk.transport.rest", "warning", "Retrying GET after ReadTimeout"),
        ("apscheduler.scheduler", "warning", 'Run time of job "poll" was missed by 0:00:05'),
    ]  # library INFO chatter is dropped; warnings keep their logger name
    assert all("timestamp" in e for e in events)
    assert capsys.readouterr().out == ""  # nothing printed by the SDK's own handler


def test_secrets_are_masked_in_values_and_library_messages() -> None:
    buf = io.StringIO()
    configure_logging(stream=buf)
    log = structlog.get_logger("guard")
    log.warning("broker.call", detail=f"sent apiSecret={SECRET}", nested={"x": [SECRET]},
                api_secret="plain", refresh_token="anything", expiry_note="none")
    logging.getLogger("ssi_sdk.transport.rest").warning(
        "401 with Authorization: Bearer %s", "abc.def-ghi")
    out = buf.getvalue()
    assert SECRET not in out and "abc.def-ghi" not in out
    first, second = json_lines(buf)
    assert first["detail"] == "sent apiSecret=***" and first["nested"] == {"x": ["***"]}
    assert first["api_secret"] == first["refresh_token"] == "***"
    assert first["expiry_note"] == "none"
    assert second["event"] == "401 with Authorization: Bearer ***"


def _fail_with_secrets() -> None:
    refresh = LONG_SECRET  # a local longer than structlog's 80-character cut
    key = SECRET
    raise RuntimeError(f"refresh with {key} failed ({len(refresh)})")


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_exception_text_and_traceback_frames_carry_no_secret(fmt: str) -> None:
    buf = io.StringIO()
    configure_logging(stream=buf, fmt=fmt)  # type: ignore[arg-type]
    try:
        _fail_with_secrets()
    except RuntimeError:
        structlog.get_logger("guard").exception("sweep.crashed")
    try:
        _fail_with_secrets()
    except RuntimeError:
        logging.getLogger("apscheduler.executors.default").exception("Job raised")
    out = buf.getvalue()
    assert "_fail_with_secrets" in out  # the traceback is there...
    assert SECRET not in out and LONG_SECRET[:20] not in out  # ...without the secrets
    assert "Yx81Yx81" not in out
    if fmt == "json":
        crashed, job = json_lines(buf)
        assert crashed["exception"][0]["exc_value"] == "refresh with *** failed (163)"
        assert job["logger"] == "apscheduler.executors.default"
        assert "locals" not in json.dumps(crashed["exception"])
