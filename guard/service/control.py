"""The daemon's control socket: how ``ssi-guard cancel-all`` asks a running daemon to act.

A second process must not log in beside the daemon (one SSI login ends the other's session),
so a command that needs the broker while a daemon holds the state directory sends its request
here instead: ``$STATE_DIR/control.sock``, a Unix socket of mode 0600 in the 0700 state
directory, so only the guard's own user can reach it. One JSON line in, one JSON line out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import structlog

from guard.errors import GuardError, StateError
from guard.record.log import Log
from guard.service.panic import CancelAll, PanicResult

__all__ = ["ControlServer", "TryAgain", "ask_daemon", "listening", "socket_path"]

MAX_LINE = 64 * 1024  # a request
MAX_REPLY = 256 * 1024 * 1024  # a result: one row per selected order, however many


class TryAgain(StateError):
    """Nobody can act on the state directory this instant (a daemon starting or stopping, a
    guard that serves no socket holding the lock): ``cancel-all`` tries again until its
    ``--wait`` runs out, and then reports this."""
Handler = Callable[[CancelAll, bool], Awaitable[PanicResult]]


def socket_path(state_dir: Path) -> Path:
    return state_dir / "control.sock"


# A Unix socket's address holds 107 bytes; a deeper state directory is reached through an
# open descriptor of it instead (Linux resolves /proc/self/fd/N like the directory itself).
_SUN_PATH = 100


@contextlib.contextmanager
def _short(path: Path) -> Iterator[str]:
    """An address for ``path`` short enough to bind or connect to, for as long as needed."""
    if len(os.fsencode(path)) <= _SUN_PATH:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


def listening(state_dir: Path) -> bool:
    """Whether a daemon answers on ``state_dir``'s control socket (a connect, nothing sent)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with _short(socket_path(state_dir)) as address:
            probe.connect(address)
    except OSError:
        return False
    finally:
        probe.close()
    return True


class ControlServer:
    """Serves ``cancel-all`` requests with ``handler(request, preview)``; one at a time is
    the handler's business (the daemon runs them under its sweep lock)."""

    def __init__(self, state_dir: Path, handler: Handler, log: Log | None = None) -> None:
        self.path = socket_path(state_dir)
        self._handler = handler
        self._log = log or structlog.get_logger("guard")
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        """Bind the socket. The caller holds the state lock, so a socket file left there is
        a dead daemon's and is replaced. Not being able to bind is logged, never fatal: the
        guard's own sweeps do not need it."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        try:
            # Bound here, not by asyncio from a path: the socket file is ours to remove (stop).
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                with _short(self.path) as address:
                    sock.bind(address)
                os.chmod(self.path, 0o600)
                self._server = await asyncio.start_unix_server(self._serve, sock=sock,
                                                               limit=MAX_LINE)
            except BaseException:
                sock.close()
                raise
        except OSError as exc:
            self._log.error("control.unavailable", path=str(self.path),
                            error=exc.strerror or type(exc).__name__,
                            effect="cancel-all cannot reach this daemon")
            await self.stop()
            return
        self._log.info("control.listening", path=str(self.path))

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(OSError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            reply = await self._answer(reader)
            writer.write(json.dumps(reply).encode() + b"\n")
            with contextlib.suppress(ConnectionError):
                await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader) -> dict[str, Any]:
        try:
            line = await reader.readline()
            raw = json.loads(line)
            if not isinstance(raw, dict) or raw.get("op") != "cancel-all":
                raise StateError("control: unknown request")
            request = CancelAll.from_json(raw.get("filters"))
            preview = raw.get("preview")
            if not isinstance(preview, bool):
                raise StateError("control: preview is not true or false")
        except (ValueError, asyncio.LimitOverrunError, GuardError) as exc:
            why = str(exc) if isinstance(exc, GuardError) else "unreadable request"
            self._log.warning("control.refused", error=why)
            return {"ok": False, "error": why, "exit": 1}
        self._log.info("control.received", op="cancel-all", preview=preview,
                       **request.as_json())
        try:
            result = await self._handler(request, preview)
        except TryAgain as exc:
            return {"ok": False, "error": str(exc), "exit": exc.exit_code, "retry": True}
        except GuardError as exc:
            return {"ok": False, "error": str(exc), "exit": exc.exit_code}
        except Exception as exc:
            self._log.error("control.crashed", error=type(exc).__name__, exc_info=exc)
            return {"ok": False, "error": f"internal error ({type(exc).__name__}) in the daemon",
                    "exit": 70}
        return {"ok": True, "result": result.as_json()}


class DaemonError(GuardError):
    """The daemon answered with an error: its own exit code, its own one line."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


async def ask_daemon(state_dir: Path, request: CancelAll, *, preview: bool,
                     timeout_s: float) -> PanicResult:
    """Send one ``cancel-all`` to the daemon that holds ``state_dir`` and wait for its result
    (``timeout_s`` covers a sweep already running, the operator's, and its confirmation)."""
    path = socket_path(state_dir)
    try:
        with _short(path) as address:
            reader, writer = await asyncio.open_unix_connection(address, limit=MAX_REPLY)
    except OSError as exc:
        raise TryAgain(f"another ssi-guard holds {state_dir} but does not answer on {path} "
                       f"({exc.strerror or type(exc).__name__})") from None
    try:
        message = {"op": "cancel-all", "preview": preview, "filters": request.as_json()}
        writer.write(json.dumps(message).encode() + b"\n")
        await writer.drain()
        try:
            line = await asyncio.wait_for(reader.readline(), timeout_s)
        except TimeoutError:
            raise StateError(f"the daemon did not answer within {timeout_s:.0f}s; its log "
                             "says what it did") from None
        except ConnectionError:
            line = b""  # reset before any reply: as a close (below)
        except ValueError:  # a reply past MAX_REPLY
            raise StateError("the daemon's answer could not be read; its log says what it "
                             "did") from None
        if not line:
            # It hung up without a word (it stopped, or died): whatever it did is in its
            # journal, and the next try (the daemon again, or this process once the state
            # directory is free) reconciles that before it sends anything.
            raise TryAgain("the daemon closed the connection without answering")
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    try:
        reply = json.loads(line)
        if reply.get("ok") is True:
            return PanicResult.from_json(reply["result"])
        error, code = str(reply["error"]), int(reply["exit"])
        retry = reply.get("retry") is True
    except (ValueError, KeyError, TypeError, AttributeError):
        raise StateError("the daemon's answer was unreadable; its log says what it did"
                         ) from None
    if retry:
        raise TryAgain(error)
    raise DaemonError(error, code)
