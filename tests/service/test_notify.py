"""sd_notify against a real bound datagram socket: a path and the abstract ``@`` form."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from guard.service.notify import Notifier


@pytest.fixture
def path_socket() -> Iterator[tuple[socket.socket, str]]:
    directory = tempfile.mkdtemp(prefix="sdn", dir="/tmp")  # sun_path holds 108 bytes
    address = os.path.join(directory, "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(2)
    try:
        yield sock, address
    finally:
        sock.close()
        os.unlink(address)
        os.rmdir(directory)


@pytest.fixture
def abstract_socket() -> Iterator[tuple[socket.socket, str]]:
    name = f"ssi-guard-notify-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    try:
        yield sock, "@" + name
    finally:
        sock.close()


def test_ready_status_watchdog_stopping_as_datagrams(
    path_socket: tuple[socket.socket, str]
) -> None:
    sock, address = path_socket
    notifier = Notifier({"NOTIFY_SOCKET": address})
    assert notifier.enabled
    assert notifier.ready("healthy; next poll 09:00:00")
    assert sock.recv(4096) == b"READY=1\nSTATUS=healthy; next poll 09:00:00"
    assert notifier.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"
    assert notifier.status("degraded (re-auth)\nrun ssi-guard login")  # one line per key
    assert sock.recv(4096) == b"STATUS=degraded (re-auth) run ssi-guard login"
    assert notifier.stopping()
    assert sock.recv(4096) == b"STOPPING=1\nSTATUS=stopping"


def test_abstract_socket_address(abstract_socket: tuple[socket.socket, str]) -> None:
    sock, address = abstract_socket
    assert address.startswith("@")
    notifier = Notifier({"NOTIFY_SOCKET": address})
    assert notifier.ready("healthy")
    assert sock.recv(4096) == b"READY=1\nSTATUS=healthy"


def test_no_socket_is_a_quiet_no_op(tmp_path: Path) -> None:
    assert not Notifier({}).enabled
    assert Notifier({}).ready("x") is False
    # Named but nobody listening (systemd went away): False, never an exception.
    gone = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert gone.enabled and gone.watchdog() is False
    assert Notifier({"NOTIFY_SOCKET": "@ssi-guard-nobody-listens"}).stopping() is False


@pytest.mark.parametrize(
    ("env", "interval"),
    [({"WATCHDOG_USEC": "1000000"}, 0.5),  # ping every WATCHDOG_USEC / 2
     ({"WATCHDOG_USEC": "60000000"}, 30.0),
     ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": str(os.getpid())}, 30.0),
     ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
     ({"WATCHDOG_USEC": "0"}, None),
     ({"WATCHDOG_USEC": "soon"}, None),
     ({}, None)],
)
def test_watchdog_interval(env: dict[str, str], interval: float | None) -> None:
    assert Notifier(env).watchdog_interval_s == interval


def test_reads_the_process_environment_by_default(
    abstract_socket: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, address = abstract_socket
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    notifier = Notifier()
    assert notifier.watchdog_interval_s == 1.0
    assert notifier.watchdog() and sock.recv(4096) == b"WATCHDOG=1"
