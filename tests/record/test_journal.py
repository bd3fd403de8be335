"""The journal: append-only SQLite, private, with open intents for reconciliation."""

from __future__ import annotations

import ast
import inspect
import re
import stat
import threading
from datetime import datetime
from pathlib import Path

import pytest

import guard.record.journal as journal_module
from guard.clock import EXCHANGE_TZ
from guard.record.journal import Journal

WALL = datetime(2026, 11, 23, 10, 0, 1, 234567, tzinfo=EXCHANGE_TZ)
MARKET = datetime(2026, 11, 23, 10, 0, tzinfo=EXCHANGE_TZ)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def sql_strings() -> list[str]:
    """Every string literal in journal.py that is not a docstring."""
    tree = ast.parse(inspect.getsource(journal_module))
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = ast.get_docstring(node, clean=False)
            if doc is not None:
                docstrings.add(doc)
    return [n.value for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and n.value not in docstrings]


def test_source_never_updates_or_deletes() -> None:
    strings = sql_strings()
    assert any("INSERT INTO outcomes" in s for s in strings)  # it does read the SQL
    forbidden = re.compile(r"\b(UPDATE|DELETE|DROP|ALTER|REPLACE|TRUNCATE|UPSERT)\b|ON\s+CONFLICT",
                           re.IGNORECASE)
    assert [s for s in strings if forbidden.search(s)] == []


def test_query_only_reads(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite3")
    try:
        for sql in ("DELETE FROM intents", "UPDATE outcomes SET outcome='x'", "DROP TABLE sweeps",
                    "  insert into sweeps VALUES (1)"):
            with pytest.raises(ValueError, match="append-only"):
                j.query(sql)
        assert j.query("  select 1") == [(1,)]
    finally:
        j.close()


def test_files_are_private(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    j = Journal(path)
    j.start_sweep(WALL, "t", MARKET, False)
    j.close()
    assert mode(path) == 0o600
    for side in tmp_path.glob("j.sqlite3-*"):
        assert mode(side) == 0o600, side.name


def test_an_existing_journal_with_loose_mode_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    Journal(path).close()
    path.chmod(0o644)
    Journal(path).close()
    assert mode(path) == 0o600


def test_a_full_round_and_open_intents(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    j = Journal(path)
    sweep = j.start_sweep(WALL, "poll", MARKET, False)
    j.decisions(sweep, [("0001234", "1", "SSI", "QU", 100, "stale", "age 20m", None, "cancel")])
    ids = j.intents(sweep, WALL, "k1", [
        ("0001234", "1", "stale", "27000", "B", "LO", 100, 0),
        ("0001234", "2", "stale", None, "B", "ATC", 50, 10),
    ])
    assert ids == [1, 2]
    j.request(sweep, WALL, "k1", "batch", ["1", "2"], {"results": [{"accepted": True}]})
    j.outcome(ids[0], WALL, "0001234", "1", "cancelled", 100, "CL", "cancelled 100")
    [open_] = j.open_intents()
    assert (open_.intent_id, open_.order_id, open_.price, open_.cancelled_before) == (
        2, "2", None, 10)
    assert (open_.side, open_.order_type, open_.sweep_id) == ("B", "ATC", sweep)
    assert open_.market_time == "2026-11-23T10:00:00.000+07:00"
    assert open_.created_at == "2026-11-23T10:00:01.234+07:00"
    j.finish_sweep(sweep, WALL, "incomplete", {"cancelled": 1})
    j.close()

    again = Journal(path)  # every write was committed
    try:
        assert [i.intent_id for i in again.open_intents()] == [2]
        assert again.query("SELECT result, summary FROM sweep_results") == [
            ("incomplete", '{"cancelled": 1}')]
        assert again.query("SELECT kind, items FROM requests") == [("batch", '["1", "2"]')]
        assert again.integrity_ok()
    finally:
        again.close()


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite3")
    sweep = j.start_sweep(WALL, "t", MARKET, False)

    def write(n: int) -> None:
        for k in range(25):
            [intent] = j.intents(sweep, WALL, f"k{n}", [("0001234", f"{n}-{k}", "r", None, "S",
                                                         "LO", 1, 0)])
            j.outcome(intent, WALL, "0001234", f"{n}-{k}", "cancelled", 1, "CL", "")

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert j.query("SELECT COUNT(*) FROM intents") == [(100,)]
        assert j.query("SELECT COUNT(DISTINCT intent_id) FROM outcomes") == [(100,)]
        assert j.open_intents() == [] and j.integrity_ok()
    finally:
        j.close()


def test_a_failed_transaction_leaves_nothing_behind(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite3")
    sweep = j.start_sweep(WALL, "t", MARKET, False)
    with pytest.raises(Exception, match="NOT NULL"):
        j.intents(sweep, WALL, "k", [("0001234", "1", "r", None, "B", "LO", 1, 0),
                                     ("0001234", "2", "r", None, None, "LO", 1, 0)])
    try:
        assert j.query("SELECT COUNT(*) FROM intents") == [(0,)]  # all or nothing
    finally:
        j.close()
