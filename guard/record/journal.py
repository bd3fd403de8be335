"""The append-only journal: SQLite in the state directory, mode 0600.

One row per sweep, per decision, per request and response, per cancel intent and per outcome.
Rows are only ever inserted (no UPDATE, no DELETE), so the file is an audit trail. The intent
of a cancel is committed before the cancel is sent and its outcome after it is known; an intent
with no outcome after a crash is reconciled against the order book on the next start.

The ``events`` table keeps what the day's report needs beyond cancels (breaker trips, missed
sweeps, heartbeat losses, cash released, orders given up on): ``EventRecorder`` copies those log
events into it. ``Journal(path, read_only=True)`` reads a journal beside the daemon writing it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator, MutableMapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import structlog

from guard.clock import EXCHANGE_TZ, Clock, system_clock
from guard.errors import JournalError
from guard.record.log import Observer
from guard.record.redact import Redactor

__all__ = ["RECORDED_EVENTS", "CancelRow", "EventRecorder", "EventRow", "Journal",
           "OpenIntent"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS sweeps (
    id INTEGER PRIMARY KEY, started_at TEXT NOT NULL, trigger TEXT NOT NULL,
    market_time TEXT NOT NULL, dry_run INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sweep_results (
    sweep_id INTEGER NOT NULL REFERENCES sweeps(id), finished_at TEXT NOT NULL,
    result TEXT NOT NULL, summary TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY, sweep_id INTEGER NOT NULL REFERENCES sweeps(id),
    account TEXT NOT NULL, order_id TEXT NOT NULL, symbol TEXT NOT NULL, status TEXT NOT NULL,
    remaining INTEGER NOT NULL, rules TEXT NOT NULL, reason TEXT NOT NULL, held TEXT,
    action TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS intents (
    id INTEGER PRIMARY KEY, sweep_id INTEGER NOT NULL REFERENCES sweeps(id),
    created_at TEXT NOT NULL, account TEXT NOT NULL, order_id TEXT NOT NULL,
    request_key TEXT NOT NULL, rules TEXT NOT NULL, price TEXT, side TEXT NOT NULL,
    order_type TEXT NOT NULL, remaining INTEGER NOT NULL, cancelled_before INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY, sweep_id INTEGER, at TEXT NOT NULL, request_key TEXT NOT NULL,
    kind TEXT NOT NULL, items TEXT NOT NULL, response TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outcomes (
    id INTEGER PRIMARY KEY, intent_id INTEGER NOT NULL REFERENCES intents(id),
    at TEXT NOT NULL, account TEXT NOT NULL, order_id TEXT NOT NULL, outcome TEXT NOT NULL,
    cancelled_qty INTEGER NOT NULL, final_status TEXT NOT NULL, detail TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS outcomes_intent ON outcomes(intent_id);
CREATE INDEX IF NOT EXISTS intents_order ON intents(account, order_id);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY, at TEXT NOT NULL, market_time TEXT NOT NULL, kind TEXT NOT NULL,
    account TEXT, rule TEXT, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_market ON events(market_time);
"""

# The log events the day's report reads from the ``events`` table.
RECORDED_EVENTS: Final = frozenset({"breaker.tripped", "schedule.missed", "heartbeat.lost",
                                    "heartbeat.resumed", "cancel.given_up", "cash.released"})
# Fields every structlog event carries, not worth keeping per row.
_ENVELOPE: Final = frozenset({"event", "level", "timestamp", "logger", "logger_name"})


@dataclass(frozen=True)
class CancelRow:
    """One cancel intent of a day with its latest outcome (None: none written yet)."""

    account: str
    order_id: str
    symbol: str
    rules: tuple[str, ...]
    outcome: str | None
    cancelled_qty: int
    detail: str


@dataclass(frozen=True)
class EventRow:
    """One recorded log event: ``market_time`` in exchange time, ``data`` its fields."""

    kind: str
    market_time: datetime
    account: str | None
    rule: str | None
    data: dict[str, Any]



@dataclass(frozen=True)
class OpenIntent:
    """An intent whose outcome was never written (a crash, a kill, a lost session)."""

    intent_id: int
    sweep_id: int
    account: str
    order_id: str
    created_at: str
    cancelled_before: int
    price: str | None
    side: str
    order_type: str
    market_time: str  # the sweep's market instant: its date is the book the order is in
    last_request_at: str | None = None  # the last request journaled for its batch, if any
    sweep_closed: bool = False  # its sweep has a result row: no request was left on the wire

    @property
    def last_activity(self) -> datetime:
        """When this intent's batch last did anything the journal knows of: a request that
        was in flight when the guard died was sent after this instant."""
        stamps = [datetime.fromisoformat(self.created_at)]
        if self.last_request_at:
            stamps.append(datetime.fromisoformat(self.last_request_at))
        return max(stamps)


def _why(exc: BaseException) -> str:
    """The cause in a few words: SQLite's own message ("database or disk is full") or the
    OS error's ("No space left on device"), never a traceback."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _since(instant: datetime | None) -> str:
    """A lower bound comparable with the stored stamps: they are ISO text in exchange time, so
    ``--since ...Z`` must be converted first, or it would compare as text against "+07:00"."""
    return "" if instant is None else _iso(instant.astimezone(EXCHANGE_TZ))


def _iso(instant: datetime) -> str:
    return instant.isoformat(timespec="milliseconds")


def _on_day(stamp: str, day: date) -> bool:
    return datetime.fromisoformat(stamp).astimezone(EXCHANGE_TZ).date() == day


def _day_bounds(day: date) -> tuple[str, str]:
    """A text range wide enough for stamps of ``day`` written in any offset."""
    return (day - timedelta(days=1)).isoformat(), (day + timedelta(days=2)).isoformat()


class Journal:
    """A thread-safe handle on ``journal.sqlite3``; every write is its own transaction.

    ``read_only`` opens an existing journal for reading only (``ssi-guard report``): nothing
    is created, migrated or written, and a daemon may be writing it at the same time.
    """

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        try:
            if read_only:
                self._open_read_only(path)
            else:
                self._open(path)
        except (OSError, sqlite3.Error) as exc:
            raise JournalError(f"cannot open the journal {path}: {_why(exc)}") from None

    def _open_read_only(self, path: Path) -> None:
        if not path.is_file():
            raise OSError(f"no journal at {path}" if not path.exists()
                          else f"{path.name} is not a file")
        uri = f"file:{quote(str(path.resolve()))}?mode=ro"
        self._db = sqlite3.connect(uri, uri=True, check_same_thread=False,
                                   isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            # Not a database (or a damaged header) fails here, not halfway through a report.
            tables = {str(r[0]) for r in self._db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()}
        if "intents" not in tables:
            raise sqlite3.DatabaseError("it is not an ssi-guard journal (no intents table)")

    def _open(self, path: Path) -> None:
        if path.exists() and not path.is_file():
            raise OSError(f"{path.name} is not a file")
        fresh = not path.exists()
        if fresh:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.close(fd)
        os.chmod(path, 0o600)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
            # A file that is not a journal (or a damaged one) must stop the guard here, not
            # on the first cancel: the quick check reads every page.
            if self._db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise sqlite3.DatabaseError("the file is damaged (quick_check failed)")
        for suffix in ("-wal", "-shm"):
            side = Path(str(path) + suffix)
            if side.exists():
                os.chmod(side, 0o600)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Cursor]:
        """One write transaction; any SQLite failure (a full disk, an unwritable file) is a
        ``JournalError`` and nothing of the transaction is kept."""
        with self._lock:
            try:
                cur = self._db.cursor()
                cur.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise JournalError(f"cannot write the journal {self.path}: {_why(exc)}") from None
            try:
                yield cur
                cur.execute("COMMIT")
            except sqlite3.Error as exc:
                with suppress(sqlite3.Error):
                    cur.execute("ROLLBACK")
                raise JournalError(f"cannot write the journal {self.path}: {_why(exc)}") from None
            except BaseException:
                with suppress(sqlite3.Error):
                    cur.execute("ROLLBACK")
                raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._db
            except sqlite3.Error as exc:
                raise JournalError(f"cannot read the journal {self.path}: {_why(exc)}") from None

    # ---- writes -------------------------------------------------------------------------

    def start_sweep(self, started: datetime, trigger: str, market_time: datetime,
                    dry_run: bool) -> int:
        with self._tx() as cur:
            cur.execute(
                "INSERT INTO sweeps (started_at, trigger, market_time, dry_run) "
                "VALUES (?,?,?,?)",
                (_iso(started), trigger, _iso(market_time), int(dry_run)),
            )
            return int(cur.lastrowid or 0)

    def finish_sweep(self, sweep_id: int, finished: datetime, result: str,
                     summary: dict[str, Any]) -> None:
        with self._tx() as cur:
            cur.execute(
                "INSERT INTO sweep_results (sweep_id, finished_at, result, summary) "
                "VALUES (?,?,?,?)",
                (sweep_id, _iso(finished), result,
                 json.dumps(summary, sort_keys=True, default=str)),
            )

    def decisions(self, sweep_id: int, rows: Sequence[tuple[Any, ...]]) -> None:
        """Rows of (account, order_id, symbol, status, remaining, rules, reason, held, action)."""
        with self._tx() as cur:
            cur.executemany(
                "INSERT INTO decisions (sweep_id, account, order_id, symbol, status, remaining, "
                "rules, reason, held, action) VALUES (?,?,?,?,?,?,?,?,?,?)",
                [(sweep_id, *row) for row in rows],
            )

    def intents(self, sweep_id: int, at: datetime, request_key: str,
                rows: Sequence[tuple[Any, ...]]) -> list[int]:
        """Record cancel intents before sending; rows of (account, order_id, rules, price,
        side, order_type, remaining, cancelled_before). Returns the intent ids."""
        ids = []
        with self._tx() as cur:
            for row in rows:
                cur.execute(
                    "INSERT INTO intents (sweep_id, created_at, account, order_id, request_key, "
                    "rules, price, side, order_type, remaining, cancelled_before) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (sweep_id, _iso(at), row[0], row[1], request_key, *row[2:]),
                )
                ids.append(int(cur.lastrowid or 0))
        return ids

    def request(self, sweep_id: int | None, at: datetime, request_key: str, kind: str,
                items: Sequence[str], response: dict[str, Any]) -> None:
        with self._tx() as cur:
            cur.execute(
                "INSERT INTO requests (sweep_id, at, request_key, kind, items, response) "
                "VALUES (?,?,?,?,?,?)",
                (sweep_id, _iso(at), request_key, kind, json.dumps(list(items)),
                 json.dumps(response, sort_keys=True, default=str)),
            )

    def outcome(self, intent_id: int, at: datetime, account: str, order_id: str, outcome: str,
                cancelled_qty: int, final_status: str, detail: str) -> None:
        with self._tx() as cur:
            cur.execute(
                "INSERT INTO outcomes (intent_id, at, account, order_id, outcome, cancelled_qty, "
                "final_status, detail) VALUES (?,?,?,?,?,?,?,?)",
                (intent_id, _iso(at), account, order_id, outcome, cancelled_qty, final_status,
                 detail),
            )

    def event(self, at: datetime, market_time: datetime, kind: str, account: str | None,
              rule: str | None, data: dict[str, Any]) -> None:
        """One log event the report needs (``RECORDED_EVENTS``), with its fields."""
        with self._tx() as cur:
            cur.execute(
                "INSERT INTO events (at, market_time, kind, account, rule, data) "
                "VALUES (?,?,?,?,?,?)",
                (_iso(at), _iso(market_time), kind, account, rule,
                 json.dumps(data, sort_keys=True, default=str)),
            )

    # ---- reads --------------------------------------------------------------------------

    def open_intents(self) -> list[OpenIntent]:
        with self._read() as db:
            rows = db.execute(
                "SELECT i.id, i.sweep_id, i.account, i.order_id, i.created_at, "
                "i.cancelled_before, i.price, i.side, i.order_type, s.market_time, "
                "(SELECT MAX(r.at) FROM requests r WHERE r.request_key = i.request_key), "
                "EXISTS (SELECT 1 FROM sweep_results x WHERE x.sweep_id = i.sweep_id) "
                "FROM intents i JOIN sweeps s ON s.id = i.sweep_id "
                "WHERE NOT EXISTS (SELECT 1 FROM outcomes o WHERE o.intent_id = i.id) "
                "ORDER BY i.id"
            ).fetchall()
        return [
            OpenIntent(intent_id=r[0], sweep_id=r[1], account=r[2], order_id=r[3],
                       created_at=r[4], cancelled_before=r[5], price=r[6], side=r[7],
                       order_type=r[8], market_time=r[9], last_request_at=r[10],
                       sweep_closed=bool(r[11]))
            for r in rows
        ]

    def sweeps_since(self, since: datetime) -> list[tuple[str, datetime]]:
        """(trigger, market time) of every sweep whose market time is at or after ``since``."""
        # Stored times keep the zone they were taken in: compare them as instants, after a
        # text pre-filter wide enough for any offset.
        with self._read() as db:
            rows = db.execute("SELECT trigger, market_time FROM sweeps WHERE market_time >= ?",
                              ((since - timedelta(days=1)).isoformat(),)).fetchall()
        sweeps = [(str(t), datetime.fromisoformat(m)) for t, m in rows]
        return [(t, m) for t, m in sweeps if m >= since]

    def unconfirmed_counts(self, since: datetime) -> dict[tuple[str, str], int]:
        """How many cancels of each (account, order id) ended ``unconfirmed`` in sweeps whose
        market time is at or after ``since``: a broker that accepts cancels and never
        applies them is not asked forever."""
        with self._read() as db:
            rows = db.execute(
                "SELECT i.account, i.order_id, s.market_time FROM outcomes o "
                "JOIN intents i ON i.id = o.intent_id JOIN sweeps s ON s.id = i.sweep_id "
                "WHERE o.outcome = 'unconfirmed' AND s.market_time >= ?",
                ((since - timedelta(days=1)).isoformat(),)).fetchall()
        counts: dict[tuple[str, str], int] = {}
        for account, order_id, market_time in rows:
            if datetime.fromisoformat(market_time) >= since:
                key = (str(account), str(order_id))
                counts[key] = counts.get(key, 0) + 1
        return counts

    def history(self, since: datetime | None = None,
                account: str | None = None) -> list[tuple[Any, ...]]:
        """Every cancel intent (optionally since ``since``, of ``account``) with its outcome:
        (created_at, account, order_id, rules, outcome or PENDING, cancelled_qty,
        final_status, detail), oldest first."""
        sql = ("SELECT i.created_at, i.account, i.order_id, i.rules, "
               "COALESCE(o.outcome, 'PENDING'), COALESCE(o.cancelled_qty, ''), "
               "COALESCE(o.final_status, ''), COALESCE(o.detail, '') FROM intents i "
               "LEFT JOIN outcomes o ON o.intent_id = i.id WHERE i.created_at >= ?")
        params: list[object] = [_since(since)]
        if account:
            sql += " AND i.account = ?"
            params.append(account)
        with self._read() as db:
            return list(db.execute(sql + " ORDER BY i.id", params).fetchall())

    def sweep_results(self, since: datetime | None = None) -> list[str]:
        """The result of every sweep started since ``since`` (UNFINISHED if it has none)."""
        with self._read() as db:
            rows = db.execute(
                "SELECT COALESCE(r.result, 'UNFINISHED') FROM sweeps s "
                "LEFT JOIN sweep_results r ON r.sweep_id = s.id WHERE s.started_at >= ? "
                "ORDER BY s.id", (_since(since),)).fetchall()
        return [str(r[0]) for r in rows]

    def cancels_on(self, day: date) -> list[CancelRow]:
        """Every cancel intent of sweeps whose market time falls on exchange day ``day``, with
        its latest outcome, oldest first."""
        low, high = _day_bounds(day)
        with self._read() as db:
            rows = db.execute(
                "SELECT s.market_time, i.account, i.order_id, i.rules, o.outcome, "
                "COALESCE(o.cancelled_qty, 0), COALESCE(o.detail, ''), "
                "(SELECT d.symbol FROM decisions d WHERE d.sweep_id = i.sweep_id "
                " AND d.account = i.account AND d.order_id = i.order_id LIMIT 1) "
                "FROM intents i JOIN sweeps s ON s.id = i.sweep_id "
                "LEFT JOIN outcomes o ON o.id = "
                " (SELECT MAX(x.id) FROM outcomes x WHERE x.intent_id = i.id) "
                "WHERE s.market_time >= ? AND s.market_time < ? ORDER BY i.id",
                (low, high)).fetchall()
        return [CancelRow(account=str(r[1]), order_id=str(r[2]), symbol=str(r[7] or ""),
                          rules=tuple(x for x in str(r[3]).split(",") if x),
                          outcome=None if r[4] is None else str(r[4]),
                          cancelled_qty=int(r[5]), detail=str(r[6]))
                for r in rows if _on_day(str(r[0]), day)]

    def events_on(self, day: date) -> list[EventRow]:
        """The recorded events of exchange day ``day``, oldest first (none in a journal made
        before the table existed)."""
        low, high = _day_bounds(day)
        with self._read() as db:
            if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                          "AND name = 'events'").fetchone() is None:
                return []
            rows = db.execute(
                "SELECT kind, market_time, account, rule, data FROM events "
                "WHERE market_time >= ? AND market_time < ? ORDER BY id", (low, high)).fetchall()
        out = []
        for kind, market_time, account, rule, data in rows:
            if not _on_day(str(market_time), day):
                continue
            try:
                fields = json.loads(data)
            except ValueError:
                fields = {}
            out.append(EventRow(str(kind),
                                datetime.fromisoformat(market_time).astimezone(EXCHANGE_TZ),
                                account, rule, fields if isinstance(fields, dict) else {}))
        return out

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Read-only access for ``history`` and tests."""
        if not sql.lstrip().upper().startswith("SELECT"):
            raise ValueError("the journal is append-only; query() only reads")
        with self._read() as db:
            return list(db.execute(sql, params).fetchall())

    def integrity_ok(self) -> bool:
        with self._read() as db:
            return bool(db.execute("PRAGMA integrity_check").fetchone()[0] == "ok")


class EventRecorder(Observer):
    """Copies the log events the day's report needs (``RECORDED_EVENTS``) into the journal's
    ``events`` table, stamped with the market clock (the report's day) and the wall clock.

    It rides on the log call of whoever logged the event: a journal that cannot be written
    is said once per run of failures (``journal.write_failed``, step ``event``), and never
    raised into that caller. Fields are stored redacted, like the log line.
    """

    def __init__(self, journal: Journal, clock: Clock, wall: Clock = system_clock) -> None:
        self.journal = journal
        self.clock = clock
        self.wall = wall
        self.failing = False
        self._log = structlog.get_logger("guard.journal")

    def observe(self, event: MutableMapping[str, Any]) -> None:
        kind = event.get("event")
        if kind not in RECORDED_EVENTS:
            return
        try:
            data = dict(Redactor()(None, "", {k: v for k, v in event.items()
                                              if k not in _ENVELOPE}))
            account, rule = data.get("account"), data.get("rule")
            self.journal.event(self.wall(), self.clock(), str(kind),
                               None if account is None else str(account),
                               None if rule is None else str(rule), data)
        except Exception as exc:
            if not self.failing:
                self.failing = True
                self._log.error("journal.write_failed", step="event", event_kind=kind,
                                path=str(self.journal.path),
                                error=str(exc) if isinstance(exc, JournalError)
                                else type(exc).__name__)
            return
        self.failing = False
