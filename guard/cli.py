"""The ``ssi-guard`` command line: the only place that prints, and the map from errors to
exit codes. Each subcommand is a small function; the work happens in the pipeline modules.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from guard import __version__
from guard.clock import EXCHANGE_TZ, Clock
from guard.errors import ConfigError, GuardError, ReauthRequired, StateError
from guard.record.redact import Redactor

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

    from guard.service.lock import StateLock
    from guard.service.panic import CancelAll, PanicResult
    from guard.sweep import SweepContext, SweepReport

__all__ = ["main"]

Command = Callable[[argparse.Namespace], int]

EXIT_INTERNAL = 70  # sysexits' EX_SOFTWARE: not a user's mistake, a bug in ssi-guard
ONCE_FLUSH_S = 10.0  # run --once / check: how long alerts raised by the sweep get to go out
CELL_MAX = 120  # characters of one table cell
LINE_MAX = 500  # characters of one error line


def _safe(value: object, limit: int = CELL_MAX) -> str:
    """Text that may come from a broker reply or the journal, fit for a terminal: control and
    format characters (escape sequences, newlines, bidi overrides) shown as ``?``, secrets
    masked by the log pipeline's redactor, and cut to ``limit`` characters. In that order:
    what is masked is exactly what is shown, and a cut never halves a secret into view."""
    text = "".join(c if c.isprintable() else "?" for c in str(value))
    text = Redactor().scrub(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _say(message: str) -> None:
    """One line on stderr, for a person (the log has the structured event)."""
    print(_safe(message, LINE_MAX), file=sys.stderr, flush=True)


def _port(text: str) -> int:
    """A TCP port for argparse: 0 (pick a free one) to 65535."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (0-65535; 0 picks a free one)")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


def _instant(text: str) -> datetime:
    """An ISO-8601 instant; a naive one is taken as exchange time (Asia/Ho_Chi_Minh)."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO-8601 time (e.g. 2026-11-23T14:25:00)"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=EXCHANGE_TZ)


# ---- simulator --------------------------------------------------------------------------


def cmd_simulator(args: argparse.Namespace) -> int:
    from guard.clock import FakeClock
    from guard.simulator.control import Simulator
    from guard.simulator.scenario import DEMO_ACCOUNTS, SCENARIOS

    clock = FakeClock(args.at) if args.at else None
    sim = Simulator(clock=clock, accounts=DEMO_ACCOUNTS, rate_limit=args.rate_limit)
    if args.scenario:
        SCENARIOS[args.scenario](sim)
    try:
        url = sim.start(port=args.port)
    except OSError as exc:
        why = os.strerror(exc.errno) if exc.errno else str(exc)
        _say(f"ssi-guard simulator: cannot listen on 127.0.0.1:{args.port}: {why}")
        return 1
    if args.env_file:
        try:
            sim.write_env_file(Path(args.env_file))
        except OSError as exc:
            sim.stop()
            _say(f"ssi-guard simulator: cannot write --env-file {args.env_file}: "
                 f"{exc.strerror or exc}")
            return 1
    print(f"SSI FastConnect simulator listening on {url}", flush=True)
    if args.env_file:
        print(f"client settings written to {args.env_file} (mode 0600)", flush=True)
    else:
        print("pass --env-file PATH to get the credentials a client needs", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    sim.stop()
    print("simulator stopped", flush=True)
    return 0


# ---- validate ---------------------------------------------------------------------------


def cmd_validate(args: argparse.Namespace) -> int:
    from guard.config.loader import load_rules

    rules = load_rules(args.path)
    mode = "dry run (no cancel is ever sent)" if rules.dry_run else "LIVE: cancels will be sent"
    print(f"{args.path}: valid, {len(rules.rules)} rule(s), "
          f"{len(rules.accounts)} account(s), {mode}")
    return 0


# ---- sweeping ---------------------------------------------------------------------------


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain fixed-width table: readable in a terminal and in journalctl. Every cell goes
    through ``_safe``: order ids, symbols and outcome details come from broker replies."""
    cells = [[_safe(c) for c in headers]] + [["" if c is None else _safe(c) for c in r]
                                            for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _market_clock(at: datetime | None) -> Clock:
    from guard.clock import FakeClock, system_clock

    return FakeClock(at) if at else system_clock


def _setup_logging(args: argparse.Namespace) -> None:
    from guard.record.log import configure_logging

    configure_logging(level=getattr(args, "log_level", "INFO"),
                      fmt=getattr(args, "log_format", "auto"))


def _one_shot_alerts(ctx: SweepContext) -> AbstractAsyncContextManager[object]:
    """The daemon's alert path for a command that sweeps once (``run --once``, ``check``,
    ``cancel-all``): rules.yaml's webhook, format and language, and ``ONCE_FLUSH_S`` for what
    is still on its way out when the command ends."""
    from guard.service.ops import alerting

    alerts = ctx.rules.alerts
    return alerting(alerts.webhook if alerts else None,
                    alerts.format if alerts else "generic",
                    language=alerts.language if alerts else "en",
                    has_holiday_data=ctx.calendar.has_holiday_data, flush_s=ONCE_FLUSH_S)


async def _sweep_once(args: argparse.Namespace, trigger: str, *, dry: bool,
                      lock: bool) -> SweepReport:
    """One sweep (``run --once``, ``check``) inside the daemon's alert path.

    The same log events alert as under the daemon (a breaker trip, an unconfirmed cancel, an
    incomplete sweep, no holiday data, a lost session), and the process waits up to
    ``ONCE_FLUSH_S`` for them to be delivered before it exits: a cron job that trips the
    breaker says so on the webhook. Delivery never changes the exit status.
    """
    import structlog

    from guard.service.runtime import check_holiday_data, open_guard
    from guard.sweep import run_sweep

    log = structlog.get_logger("guard")
    async with open_guard(args.rules, force_dry_run=dry, clock=_market_clock(args.at),
                          lock=lock, log=log) as ctx, _one_shot_alerts(ctx):
        year = check_holiday_data(ctx.calendar, ctx.clock(), log)
        if year is not None:
            _say(f"ssi-guard: no exchange holiday list for {year}: every weekday counts "
                 "as a trading day; add the year's holidays to rules.yaml `holidays:`")
        try:
            report = await run_sweep(ctx, trigger)
        except ReauthRequired as exc:
            log.error("auth.reauth_required", reason=str(exc),
                      action="run `ssi-guard login` on the host")
            raise
        except GuardError as exc:
            log.error("sweep.failed", job=trigger, error=str(exc))
            raise
        except Exception as exc:
            log.error("sweep.crashed", job=trigger, error=type(exc).__name__,
                      exc_info=exc)
            raise
        if ctx.broker.token_unsaved:
            # The session was refreshed (its refresh token rotated) but not cached: the
            # next run would present the old one, and the broker would revoke the session.
            raise StateError(f"the refreshed SSI session could not be saved "
                             f"({ctx.broker.token_unsaved}); free the state directory "
                             "before the next run, or it will need ssi-guard login")
        return report


def cmd_run_once(args: argparse.Namespace) -> int:
    async def go() -> int:
        report = await _sweep_once(args, "once", dry=args.dry_run, lock=True)
        counts = report.counts()
        print(f"sweep {report.sweep_id}: {report.result}; "
              + ", ".join(f"{k}={v}" for k, v in counts.items() if v), file=sys.stderr)
        return 0 if report.complete else 6

    _setup_logging(args)
    return asyncio.run(go())


def cmd_check(args: argparse.Namespace) -> int:
    async def go() -> int:
        report = await _sweep_once(args, "check", dry=True, lock=False)
        targets = {t.key for t in report.plan.targets}
        rows = []
        for d in report.decisions:
            o = d.order
            verdict = ("CANCEL" if (o.account, o.order_id) in targets
                       else "hold" if d.held else "-")
            rows.append((o.account, o.order_id, o.symbol, d.board or "?", o.side, o.status,
                         o.remaining, verdict, ",".join(d.rules) or "-",
                         d.held or d.reason or "no rule matched"))
        print(f"as of {report.market_time.isoformat(timespec='seconds')} (always dry: "
              "nothing is sent)")
        print(_table(("account", "order", "symbol", "board", "side", "status", "left",
                      "verdict", "rule", "reason / held because"), rows))
        for account, why in report.unread_accounts:
            print(f"account {_safe(account)}: NOT READ: {_safe(why, LINE_MAX)}")
        if report.plan.tripped:
            print(f"circuit breaker: {_safe(report.plan.blocked, LINE_MAX)}")
        return 0 if not report.unread_accounts else 6

    _setup_logging(args)
    return asyncio.run(go())


# ---- the panic button -------------------------------------------------------------------


def _print_panic(result: PanicResult) -> None:
    from guard.service.panic import HEADERS

    what = "would do" if result.preview else "did"
    print(f"cancel-all as of {result.market_time} (sweep {result.sweep_id}; what it {what}): "
          f"{result.result}")
    if result.rows:
        print(_table(HEADERS, result.rows))
    else:
        print("no open order passes the filters")
    for account, why in result.unread:
        print(f"account {_safe(account)}: NOT READ: {_safe(why, LINE_MAX)}")
    for account, delta in result.cash:
        print(f"account {_safe(account)}: cash released {_safe(delta)}")
    if result.paused_overridden:
        print("note: the pause file is set; cancel-all is an operator command and acted anyway")
    actions = Counter(r[6] for r in result.rows)
    if actions:
        print(", ".join(f"{n} {a}" for a, n in sorted(actions.items())))


PROMPT_S = 120.0  # how long cancel-all waits for "yes" (it may hold the state lock meanwhile)


class _Answered:
    """When the operator last answered a question: ``--wait`` counts from there, not from
    a start that may be minutes of reading the table ago."""

    def __init__(self) -> None:
        self.at: float | None = None


def _confirm(result: PanicResult, answered: _Answered) -> bool:
    """Ask on the terminal; only ``yes`` goes on, and no answer within ``PROMPT_S`` is no
    (a prompt left open would hold the state directory, keeping a daemon from starting)."""
    import select

    print(f"Cancel these {result.would_cancel} order(s) now? Type yes to confirm: ", end="",
          flush=True)
    try:
        ready, _, _ = select.select([sys.stdin], [], [], PROMPT_S)
        answer = sys.stdin.readline() if ready else ""
    finally:
        answered.at = time.monotonic()
    if not ready:
        print()
        _say(f"cancel-all: no answer within {PROMPT_S:.0f}s")
    return answer.strip().lower() == "yes"


def cmd_cancel_all(args: argparse.Namespace) -> int:
    """The panic button: standalone when no daemon holds the state directory, else through
    the daemon (a login from here would end its session)."""
    from guard.config.loader import load_rules
    from guard.service.control import TryAgain, listening
    from guard.service.lock import StateLock
    from guard.service.panic import CancelAll, operator_rules
    from guard.settings import resolve_state_dir

    request = CancelAll(tuple(args.account or ()), tuple(args.symbol or ()),
                        tuple(args.client_request_id or ()))
    interactive = sys.stdin.isatty()
    if not args.yes and not interactive:
        raise ConfigError("cancel-all: no terminal to confirm on: pass --yes to cancel "
                          "without asking (nothing was done)")
    rules = load_rules(args.rules)
    operator_rules(rules, request)  # a bad filter is exit 1 before any request
    state_dir = resolve_state_dir()
    _setup_logging(args)
    confirm_s = rules.limits.confirm_timeout.total_seconds()
    answered = _Answered()
    deadline: float | None = None  # set by the first "try again" after the last answer
    waiting_said = False
    while True:
        # Whoever holds the state directory acts: this process, keeping the lock it took
        # from looking to acting, or the daemon that holds it. Anyone else (a daemon starting
        # or stopping, run --once, another cancel-all) is waited for, up to --wait.
        lock = StateLock(state_dir)
        if lock.try_acquire():
            try:
                return asyncio.run(_cancel_all_here(args, request, lock, answered))
            finally:
                lock.release()
        try:
            if args.at is not None:
                if listening(state_dir):
                    raise ConfigError("cancel-all: --at is for rehearsals and cannot be used "
                                      f"while a daemon holds {state_dir}")
                raise TryAgain(f"another ssi-guard holds {state_dir}")
            return asyncio.run(_cancel_all_in_daemon(state_dir, confirm_s, request, args.yes,
                                                     answered))
        except TryAgain as exc:
            now = time.monotonic()
            if deadline is None or answered.at is not None:  # first wait, or an answer since
                deadline, answered.at = now + args.wait, None
            if now >= deadline:
                raise StateError(f"cancel-all: {exc}; gave up after --wait {args.wait}s "
                                 "(nothing was cancelled by this command)") from None
            if not waiting_said:
                _say(f"cancel-all: {exc}; waiting up to {args.wait}s")
                waiting_said = True
            time.sleep(0.3)


def _asked(preview: PanicResult, answered: _Answered) -> int | None:
    """Show the preview and ask; the exit status if it ends here (nothing to cancel: 0 or 6,
    not confirmed: 1), None to go on and cancel."""
    _print_panic(preview)
    if not preview.would_cancel:
        return 0 if preview.complete else 6
    if not _confirm(preview, answered):
        _say("cancel-all: not confirmed; nothing was cancelled")
        return 1
    return None


def _finish(result: PanicResult) -> int:
    _print_panic(result)
    return 0 if result.complete else 6


async def _cancel_all_here(args: argparse.Namespace, request: CancelAll,
                           lock: StateLock, answered: _Answered) -> int:
    import structlog

    from guard.service.panic import press
    from guard.service.runtime import open_guard

    log = structlog.get_logger("guard")
    async with open_guard(args.rules, clock=_market_clock(args.at), log=log,
                          held_lock=lock) as ctx, _one_shot_alerts(ctx):
        if not args.yes:
            stop = _asked(await press(ctx, request, preview=True), answered)
            if stop is not None:
                return stop
        return _finish(await press(ctx, request))


async def _cancel_all_in_daemon(state_dir: Path, confirm_s: float, request: CancelAll,
                                yes: bool, answered: _Answered) -> int:
    from guard.service.control import ask_daemon

    # A sweep already running, then the operator's own, each within its confirmation bound.
    timeout = 2 * confirm_s + 120
    said = f"cancel-all: done by the running daemon that holds {state_dir} (no second login)"
    if not yes:
        preview = await ask_daemon(state_dir, request, preview=True, timeout_s=timeout)
        _say(said.replace("done by", "asked"))
        stop = _asked(preview, answered)
        if stop is not None:
            return stop
    result = await ask_daemon(state_dir, request, preview=False, timeout_s=timeout)
    _say(said)
    return _finish(result)


def cmd_report(args: argparse.Namespace) -> int:
    from guard.report.command import run_report

    return run_report(args.rules, args.day, sys.stdout)


def cmd_history(args: argparse.Namespace) -> int:
    from guard.record.journal import Journal
    from guard.settings import resolve_state_dir

    path = resolve_state_dir() / "journal.sqlite3"
    if not path.exists():
        print(f"no journal yet at {path}")
        return 0
    journal = Journal(path)
    try:
        rows = journal.history(args.since, args.account)
        print(_table(("intent at", "account", "order", "rules", "outcome", "qty", "status",
                      "detail"), rows))
        results = journal.sweep_results(args.since)
        print(f"\n{len(results)} sweep(s); "
              + ", ".join(f"{k}={v}" for k, v in Counter(results).items()))
    finally:
        journal.close()
    return 0


def _has_terminal() -> bool:
    """Whether a person can be prompted (getpass reads /dev/tty, else stdin)."""
    try:
        with open("/dev/tty", "rb"):
            return True
    except OSError:
        return sys.stdin.isatty()


def cmd_login(args: argparse.Namespace) -> int:
    import getpass

    from guard.broker.client import Broker
    from guard.broker.tokens import TokenCache
    from guard.settings import load_credentials, resolve_state_dir

    creds = load_credentials()
    cache = TokenCache(resolve_state_dir())

    otp = creds.otp.get_secret_value() if creds.otp else None
    if otp is None and not args.smart_otp:
        try:
            if not _has_terminal():
                raise EOFError
            otp = getpass.getpass("OTP (leave empty for a Smart OTP push): ").strip() or None
        except EOFError:
            # No one to type a code (no terminal, or end of input): say what to do instead
            # of a traceback, or of a Smart OTP push no one will approve.
            print("ssi-guard: no OTP given: run `ssi-guard login` in a terminal, set SSI_OTP, "
                  "or pass --smart-otp", file=sys.stderr)
            return 2

    async def go() -> int:
        async with Broker(creds, cache) as broker:
            if otp:
                await broker.login(otp=otp)
            else:
                transaction = await broker.request_smart_otp()
                print("Smart OTP sent: approve the request on your phone...", flush=True)
                await broker.login(transaction_id=transaction)
            if broker.token_unsaved:
                raise StateError(f"logged in, but the session could not be saved "
                                 f"({broker.token_unsaved}); the guard cannot use it")
            expires = datetime.fromtimestamp(broker.token_expires_at, EXCHANGE_TZ)
        print(f"logged in; token cached in {cache.path} (mode 0600), access token valid until "
              f"{expires.isoformat(timespec='seconds')}")
        return 0

    return asyncio.run(go())


def cmd_run(args: argparse.Namespace) -> int:
    if args.once:
        return cmd_run_once(args)
    from guard.service.daemon import run_daemon

    _setup_logging(args)
    # ``--at`` without ``--once`` is a rehearsal: the daemon's market clock starts at that
    # instant and runs in real time (see guard/schedule/scheduler.py).
    return run_daemon(args.rules, force_dry_run=args.dry_run, metrics_port=args.metrics_port,
                      start_at=args.at)


def _ago(seconds: float) -> str:
    """``59m``, ``3h05m``, ``2d4h``: a duration for a person."""
    s = int(abs(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600}h"


def cmd_status(args: argparse.Namespace) -> int:
    """What the daemon last said about itself ($STATE_DIR/status.json), for a person.

    Exit 0 only when a live daemon says it is healthy; 1 when it is degraded, starting or
    stopped, or when there is no daemon status at all."""
    import time as _time

    from guard.service.health import pid_alive, read_status
    from guard.settings import resolve_state_dir

    state_dir = resolve_state_dir(create=False)
    raw = read_status(state_dir)
    if raw is None:
        print(f"ssi-guard: no daemon status at {state_dir / 'status.json'} "
              "(is `ssi-guard run` running with this state directory?)")
        return 1
    state = str(raw.get("state", "unknown"))
    reason = str(raw.get("reason") or "")
    pid = raw.get("pid")
    alive = pid_alive(pid)
    if not alive:
        headline = f"ssi-guard is NOT RUNNING (pid {pid} is gone; its last state: {state})"
    elif state == "healthy":
        headline = f"ssi-guard is healthy (pid {pid})"
    else:
        headline = f"ssi-guard is {state.upper()} (pid {pid})" + (f": {reason}" if reason else "")
    # status.json is the daemon's, but its reason may quote a broker's error: print it safe.
    print(_safe(headline, LINE_MAX))

    def row(label: str, value: str) -> None:
        print(f"  {label:<14} {_safe(value, LINE_MAX)}".rstrip())

    row("state", state + (f" ({reason})" if reason else ""))
    last = raw.get("last_sweep_at")
    row("last sweep", f"{last} ({raw.get('last_sweep_result') or '?'})" if last else "none yet")
    row("last ok sweep", str(raw.get("last_ok_sweep_at") or "none yet"))
    expires = raw.get("token_expires_at") or 0
    if isinstance(expires, int | float) and expires > 0:
        left = expires - _time.time()
        when = datetime.fromtimestamp(expires, EXCHANGE_TZ).isoformat(timespec="seconds")
        row("token expires", f"{when} ({'in ' + _ago(left) if left > 0 else 'EXPIRED'})")
    else:
        row("token expires", "no token")
    nexts = raw.get("next_sweeps") or {}
    if isinstance(nexts, dict) and nexts:
        for i, (job, when) in enumerate(sorted(nexts.items(), key=lambda kv: str(kv[1]))):
            row("next sweeps" if i == 0 else "", f"{when}  {job}")
    else:
        row("next sweeps", "none scheduled")
    stale = raw.get("stale_heartbeats") or {}
    if isinstance(stale, dict) and stale:
        for i, (rule, why) in enumerate(sorted(stale.items())):
            row("HEARTBEAT" if i == 0 else "", f"STALE {rule}: {why}")
    offset = raw.get("market_offset_s") or 0
    if isinstance(offset, int | float) and offset:
        sign = "+" if offset > 0 else "-"
        row("clock", f"REHEARSAL: market time is real time {sign} {_ago(offset)}")
    row("written at", str(raw.get("updated_at") or "?"))
    if alive and reason.startswith("re-auth"):
        print("  -> run `ssi-guard login` on this host; the guard resumes by itself")
    return 0 if alive and state == "healthy" else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from guard.service.demo import run_demo

    state_dir = Path(args.state_dir) if args.state_dir else None
    if state_dir is not None:
        try:
            state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(f"--state-dir {state_dir} is unusable: {exc.strerror or exc}"
                             ) from None
    return run_demo(Path(args.rules), sys.stdout, state_dir)


# ---- parser -----------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit 1 (a configuration error): argparse's
    own exit 2 is the documented code for a credentials problem."""

    def error(self, message: str) -> NoReturn:
        self.exit(1, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ssi-guard",
        description="Risk guard for SSI FastConnect: cancels stale orders by YAML rules.",
    )
    parser.add_argument("--version", action="version", version=f"ssi-guard {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="one trading day on the embedded simulator (no account)")
    p.add_argument("--rules", default="rules.yaml", help="rules file (default: rules.yaml)")
    p.add_argument("--state-dir", help="keep the demo's journal here (default: a temp dir)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("simulator", help="run the SSI FastConnect-compatible simulator")
    p.add_argument("--port", type=_port, default=0,
                   help="port on 127.0.0.1 (0 picks a free one)")
    p.add_argument("--scenario", choices=["demo"], help="seed a realistic order book")
    p.add_argument("--env-file", help="write SSI_* client settings here (mode 0600)")
    p.add_argument("--at", type=_instant, help="freeze the market clock at this instant")
    p.add_argument("--rate-limit", type=_positive, default=10,
                   help="requests per second per API key")
    p.set_defaults(func=cmd_simulator)

    p = sub.add_parser("run", help="run the guard (use --once for a single sweep)")
    p.add_argument("--rules", default="rules.yaml", help="rules file (default: rules.yaml)")
    p.add_argument("--once", action="store_true", help="one full sweep, then exit")
    p.add_argument("--dry-run", action="store_true", help="decide and log, never cancel")
    p.add_argument("--at", type=_instant,
                   help="with --once: evaluate as of this instant. Without --once (rehearsals "
                        "only): the daemon's market clock starts at this instant and runs in "
                        "real time")
    p.add_argument("--metrics-port", type=_port, default=None,
                   help="serve /metrics and /healthz on 127.0.0.1:PORT (0 picks one)")
    p.add_argument("--log-format", choices=["auto", "json", "console"], default="auto")
    p.add_argument("--log-level", default="INFO")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("status", help="the running daemon's health (exit 0 only if healthy)")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("check", help="show what the rules would do now (always dry)")
    p.add_argument("--rules", default="rules.yaml")
    p.add_argument("--at", type=_instant, help="evaluate as of this instant")
    p.add_argument("--log-format", choices=["auto", "json", "console"], default="auto")
    p.add_argument("--log-level", default="WARNING")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("cancel-all", help="the panic button: cancel every open order that "
                                          "passes the filters, now (live, asks first)")
    p.add_argument("--rules", default="rules.yaml", help="rules file (default: rules.yaml)")
    p.add_argument("--account", action="append", help="only this account (repeatable)")
    p.add_argument("--symbol", action="append", metavar="GLOB",
                   help="only symbols matching this glob (repeatable)")
    p.add_argument("--client-request-id", action="append", metavar="GLOB",
                   help="only client request ids matching this glob (repeatable)")
    p.add_argument("--yes", action="store_true", help="do not ask (required without a terminal)")
    p.add_argument("--wait", type=_positive, default=60, metavar="SECONDS",
                   help="how long to wait for a guard that is starting, stopping or sweeping "
                        "once to let go of the state directory (default 60)")
    p.add_argument("--at", type=_instant,
                   help="rehearsal: evaluate the bans as of this instant (not beside a daemon)")
    p.add_argument("--log-format", choices=["auto", "json", "console"], default="auto")
    p.add_argument("--log-level", default="WARNING")
    p.set_defaults(func=cmd_cancel_all)

    from guard.report.command import day_arg

    p = sub.add_parser("report", help="the day's report from the journal (en or vi)")
    p.add_argument("--rules", default="rules.yaml", help="rules file (default: rules.yaml)")
    p.add_argument("--day", type=day_arg, help="exchange day, YYYY-MM-DD (default: today)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("history", help="print the journal of cancels")
    p.add_argument("--since", type=_instant, help="only intents from this instant on")
    p.add_argument("--account", help="only this account")
    p.set_defaults(func=cmd_history)

    p = sub.add_parser("login", help="log in with an OTP and cache the token (interactive)")
    p.add_argument("--smart-otp", action="store_true", help="use a Smart OTP push, not a code")
    p.set_defaults(func=cmd_login)

    p = sub.add_parser("validate", help="check a rules.yaml file")
    p.add_argument("path", nargs="?", default="rules.yaml")
    p.set_defaults(func=cmd_validate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; every way it can end is an exit status and at most one line per
    problem on stderr, never a traceback (see the README's "Errors")."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Command = args.func
    try:
        return func(args)
    except ConfigError as exc:
        for line in exc.messages:
            _say(line)
        return exc.exit_code
    except GuardError as exc:
        _say(f"ssi-guard: {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Output piped into `head`: not an error; keep the interpreter's flush quiet too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except Exception as exc:
        _crashed(exc)
        return EXIT_INTERNAL


def _crashed(exc: BaseException) -> None:
    """A bug, not a user's mistake: one line on stderr; the traceback goes to the log (whose
    redactor masks secrets) when the guard's own logging is set up: never through a chain
    without the redactor, which would print a secret the message quotes."""
    import structlog

    from guard.record.log import is_guard_logging

    if is_guard_logging():
        structlog.get_logger("guard").error("cli.crashed", error=type(exc).__name__,
                                            exc_info=exc)
    detail = str(exc)
    _say(f"ssi-guard: internal error ({type(exc).__name__}"
         + (f": {detail}" if detail else "") + "); please report it with the log")


if __name__ == "__main__":
    sys.exit(main())
