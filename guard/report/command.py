"""``ssi-guard report [--rules PATH] [--day YYYY-MM-DD]``: the day's report, from the journal.

The journal is opened read-only, so the report runs beside a daemon that is writing it. The
language is rules.yaml's ``alerts.language``; the day defaults to today in exchange time.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import TextIO

from guard.clock import EXCHANGE_TZ, Clock, system_clock
from guard.config.loader import load_rules
from guard.record.journal import Journal
from guard.report.i18n import Language
from guard.report.summary import render, summarise
from guard.settings import resolve_state_dir

__all__ = ["day_arg", "day_report", "run_report"]


def day_arg(text: str) -> date:
    """argparse type of ``--day``: an exchange day, ``YYYY-MM-DD``."""
    try:
        if len(text) != 10:
            raise ValueError
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a day (use YYYY-MM-DD, e.g. 2026-11-23)") from None


def day_report(journal: Journal, day: date, language: Language) -> str:
    """The report of exchange day ``day`` as text, from ``journal``."""
    return render(summarise(day, journal.cancels_on(day), journal.events_on(day)), language)


def run_report(rules_path: str, day: date | None, out: TextIO, *, clock: Clock = system_clock,
               env: Mapping[str, str] | None = None) -> int:
    """Print the report of ``day`` (default: today, exchange time) to ``out``; 0.

    rules.yaml is read for the language (a bad file: ``ConfigError``, exit 1). A missing or
    unreadable journal is a ``JournalError`` (exit 5), one line naming the file.
    """
    rules = load_rules(rules_path)
    language: Language = rules.alerts.language if rules.alerts else "en"
    when = day or clock().astimezone(EXCHANGE_TZ).date()
    path = Path(resolve_state_dir(env, create=False)) / "journal.sqlite3"
    journal = Journal(path, read_only=True)
    try:
        text = day_report(journal, when, language)
    finally:
        journal.close()
    out.write(text)
    return 0
