"""rules.yaml accepts futures in both code forms: ``41I1F*``-style globs, KRX-form symbols in
``boards:``, and ``boards: [DER]``; a glob still matches only the text it spells."""

from __future__ import annotations

import pytest

from guard.config.loader import load_rules_text
from guard.errors import ConfigError
from guard.model import Board


def rules(match: str, boards: str = "") -> str:
    return f"""
version: 1
accounts: ["0005678"]
{boards}
rules:
  - name: futures
    max_age: 15m
    match:
{match}
"""


def test_both_code_forms_load_as_globs_boards_and_overrides() -> None:
    rf = load_rules_text(rules('      symbols: ["VN30F*", "41I1F*", "41I1FC000", "41I1F?C00"]\n'
                               "      boards: [DER]",
                               boards="boards: {41I1FC000: DER, VN30F2612: DER}"),
                         "rules.yaml")
    [rule] = rf.rules
    assert rule.match.symbols == ("VN30F*", "41I1F*", "41I1FC000", "41I1F?C00")
    assert rule.match.boards == (Board.DER,)
    assert rf.boards == {"41I1FC000": Board.DER, "VN30F2612": Board.DER}


@pytest.mark.parametrize("glob", ["41i1f*", "41I1F*.", "VN30F 2612"])
def test_what_is_no_code_is_still_refused(glob: str) -> None:
    with pytest.raises(ConfigError, match="symbol"):
        load_rules_text(rules(f'      symbols: ["{glob}"]'), "rules.yaml")
