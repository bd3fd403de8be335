"""The ``ssi-guard`` command line: the only place that prints, and the map from errors to
exit codes. Each subcommand is a small function; the work happens in the pipeline modules.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from guard import __version__
from guard.clock import EXCHANGE_TZ
from guard.errors import ConfigError, GuardError

__all__ = ["main"]

Command = Callable[[argparse.Namespace], int]


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
    url = sim.start(port=args.port)
    if args.env_file:
        sim.write_env_file(Path(args.env_file))
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


# ---- parser -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ssi-guard",
        description="Risk guard for SSI FastConnect: cancels stale orders by YAML rules.",
    )
    parser.add_argument("--version", action="version", version=f"ssi-guard {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("simulator", help="run the SSI FastConnect-compatible simulator")
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 picks a free one)")
    p.add_argument("--scenario", choices=["demo"], help="seed a realistic order book")
    p.add_argument("--env-file", help="write SSI_* client settings here (mode 0600)")
    p.add_argument("--at", type=_instant, help="freeze the market clock at this instant")
    p.add_argument("--rate-limit", type=int, default=10, help="requests per second per API key")
    p.set_defaults(func=cmd_simulator)

    p = sub.add_parser("validate", help="check a rules.yaml file")
    p.add_argument("path", nargs="?", default="rules.yaml")
    p.set_defaults(func=cmd_validate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Command = args.func
    try:
        return func(args)
    except ConfigError as exc:
        for line in exc.messages:
            print(line, file=sys.stderr)
        return exc.exit_code
    except GuardError as exc:
        print(f"ssi-guard: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
