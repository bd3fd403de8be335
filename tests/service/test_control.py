"""The control socket between ``cancel-all`` and a running daemon: the request and the result
cross intact, the daemon's errors come back as its exit codes, the socket is 0600, and a state
directory too deep for a socket address still works."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

import pytest

from guard.errors import GuardError, ReauthRequired, StateError
from guard.service.control import (
    ControlServer,
    Handler,
    TryAgain,
    ask_daemon,
    listening,
    socket_path,
)
from guard.service.panic import CancelAll, PanicResult

RESULT = PanicResult(False, "2026-11-23T10:00:00+07:00", 7, "ok",
                     (("0001234", "1", "SSI", "B", "QU", "100", "cancel", "operator cancel-all",
                       "cancelled"),), (), (("0001234", "2700000"),), False)


async def serve(state_dir: Path, handler):  # type: ignore[no-untyped-def]
    server = ControlServer(state_dir, handler)
    await server.start()
    return server


EVERYTHING = CancelAll()


def round_trip(state_dir: Path, handler: Handler, request: CancelAll = EVERYTHING, *,
               preview: bool = False, timeout_s: float = 5) -> PanicResult:
    """Serve ``handler`` on ``state_dir`` and send it one request, as cancel-all does."""
    async def go() -> PanicResult:
        server = await serve(state_dir, handler)
        try:
            return await ask_daemon(state_dir, request, preview=preview, timeout_s=timeout_s)
        finally:
            await server.stop()
    return asyncio.run(go())


def test_a_request_reaches_the_handler_and_its_result_comes_back(tmp_path: Path) -> None:
    seen: list[tuple[CancelAll, bool]] = []

    async def handler(request: CancelAll, preview: bool) -> PanicResult:
        seen.append((request, preview))
        return RESULT

    async def go() -> PanicResult:
        server = await serve(tmp_path, handler)
        try:
            mode = stat.S_IMODE(socket_path(tmp_path).stat().st_mode)
            assert mode == 0o600
            return await ask_daemon(tmp_path, CancelAll(("0001234",), ("S*",), ("sa-*",)),
                                    preview=True, timeout_s=5)
        finally:
            await server.stop()

    assert asyncio.run(go()) == RESULT
    assert seen == [(CancelAll(("0001234",), ("S*",), ("sa-*",)), True)]
    assert not socket_path(tmp_path).exists()  # stop removes it


def test_a_state_directory_deeper_than_a_socket_address_holds(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    assert len(str(socket_path(deep))) > 108

    async def handler(request: CancelAll, preview: bool) -> PanicResult:
        return RESULT

    assert round_trip(deep, handler) == RESULT


def test_the_daemons_error_comes_back_with_its_exit_code(tmp_path: Path) -> None:
    async def handler(request: CancelAll, preview: bool) -> PanicResult:
        raise ReauthRequired("the session is gone: run `ssi-guard login`")

    with pytest.raises(GuardError) as caught:
        round_trip(tmp_path, handler)
    assert caught.value.exit_code == 3
    assert "ssi-guard login" in str(caught.value)


def test_a_crash_in_the_daemon_is_exit_70_without_its_text(tmp_path: Path) -> None:
    async def handler(request: CancelAll, preview: bool) -> PanicResult:
        raise RuntimeError("secret-ish detail")

    with pytest.raises(GuardError) as caught:
        round_trip(tmp_path, handler)
    assert getattr(caught.value, "exit_code", None) == 70
    assert "secret-ish" not in str(caught.value)


@pytest.mark.parametrize("line", [b"not json\n", b"[1]\n", b'{"op": "rm -rf"}\n',
                                  b'{"op": "cancel-all", "filters": {"accounts": "0001234"}}\n',
                                  b'{"op": "cancel-all", "preview": "true", "filters": {}}\n',
                                  b'{"op": "cancel-all", "preview": 1, "filters": {}}\n',
                                  b'{"op": "cancel-all", "filters": {}}\n',
                                  b"x" * 70_000 + b"\n"])
def test_a_malformed_request_is_refused_and_nothing_runs(tmp_path: Path, line: bytes) -> None:
    ran: list[bool] = []

    async def handler(request: CancelAll, preview: bool) -> PanicResult:
        ran.append(True)
        return RESULT

    async def go() -> dict[str, object]:
        server = await serve(tmp_path, handler)
        try:
            reader, writer = await asyncio.open_unix_connection(str(socket_path(tmp_path)))
            writer.write(line)
            await writer.drain()
            reply = json.loads(await asyncio.wait_for(reader.readline(), 5))
            writer.close()
            return reply  # type: ignore[no-any-return]
        finally:
            await server.stop()

    reply = asyncio.run(go())
    assert reply["ok"] is False and reply["exit"] == 1
    assert ran == []


def test_no_daemon_on_the_socket_is_one_clear_state_error(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="does not answer on"):
        asyncio.run(ask_daemon(tmp_path, CancelAll(), preview=False, timeout_s=1))


def test_a_socket_file_left_by_a_dead_daemon_is_replaced(tmp_path: Path) -> None:
    socket_path(tmp_path).write_text("stale")

    async def handler(request: CancelAll, preview: bool) -> PanicResult:
        return RESULT

    assert round_trip(tmp_path, handler) == RESULT


def test_a_daemon_that_cannot_act_yet_says_try_again(tmp_path: Path) -> None:
    async def handler(request: CancelAll, preview: bool) -> PanicResult:
        raise TryAgain("the daemon is starting")

    with pytest.raises(TryAgain, match="starting"):
        round_trip(tmp_path, handler)


def test_no_socket_is_try_again_and_not_listening(tmp_path: Path) -> None:
    assert not listening(tmp_path)
    with pytest.raises(TryAgain):
        asyncio.run(ask_daemon(tmp_path, CancelAll(), preview=False, timeout_s=1))


def test_a_result_of_many_thousand_rows_crosses_intact(tmp_path: Path) -> None:
    row = ("0001234", "00000001", "SSI", "B", "QU", "100", "cancel", "operator cancel-all",
           "cancelled")
    big = PanicResult(False, RESULT.market_time, 1, "ok",
                      tuple((*row[:1], f"{i:08d}", *row[2:]) for i in range(20_000)), (), (),
                      False)

    async def handler(request: CancelAll, preview: bool) -> PanicResult:
        return big

    async def go() -> PanicResult:
        server = await serve(tmp_path, handler)
        try:
            assert listening(tmp_path)
            return await ask_daemon(tmp_path, CancelAll(), preview=False, timeout_s=10)
        finally:
            await server.stop()

    got = asyncio.run(go())
    assert len(got.rows) == 20_000 and got == big
