"""Fuzz the loader: any input either loads or raises ConfigError, never anything else.

Three sources of input: raw bytes, mutations of the shipped rules.yaml (near-valid text is where
a parser's odd corners are), and random YAML documents built from the schema's own keys.
"""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kit import REPO

from guard.config.loader import load_rules_text
from guard.config.schema import RulesFile
from guard.errors import ConfigError

SHIPPED = (REPO / "rules.yaml").read_text(encoding="utf-8")
LINES = SHIPPED.splitlines()

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TOKENS = [
    "", "~", "yes", "no", "on", "null", "[", "]", "{", "}", ":", "- ", "? ", "&a ", "*a", "|",
    ">", "'", '"', "!!python/object:os.system", "!!binary", "!x", "11:25", "0001234", "1e9",
    "-1", "0x1F", ".inf", "2026-02-30", "2026-11-24", "15m", "0s", "5x", "\t", "\x00", "\ufeff",
    "\u2028", "#", "%YAML 1.1", "---", "...", "<<: {a: 1}", "=", "max_agee: 1m", "  ", "\\",
]


def must_load_or_config_error(data: str | bytes) -> None:
    try:
        result = load_rules_text(data, "fuzz.yaml")
    except ConfigError as exc:
        assert exc.messages
        for message in exc.messages:
            assert message.startswith("fuzz.yaml")
            assert "\n" not in message
            assert len(message) < 400
        return
    assert isinstance(result, RulesFile)


@FUZZ
@given(st.binary(max_size=3000))
def test_any_bytes(data: bytes) -> None:
    must_load_or_config_error(data)


@FUZZ
@given(st.text(max_size=1000))
def test_any_text(text: str) -> None:
    must_load_or_config_error(text)


@st.composite
def mutated(draw: st.DrawFn) -> str:
    lines = list(LINES)
    for _ in range(draw(st.integers(1, 6))):
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["delete", "duplicate", "insert", "replace", "indent"]))
        token = draw(st.sampled_from(TOKENS))
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "indent":
            lines[i] = " " * draw(st.integers(1, 4)) + lines[i]
        else:
            line = lines[i]
            at = draw(st.integers(0, len(line)))
            end = at if op == "insert" else draw(st.integers(at, len(line)))
            lines[i] = line[:at] + token + line[end:]
        if not lines:
            lines = [""]
    return "\n".join(lines) + "\n"


@FUZZ
@given(mutated())
def test_mutations_of_the_shipped_file(text: str) -> None:
    must_load_or_config_error(text)
    must_load_or_config_error(text.encode("utf-8", "surrogatepass"))


KEYS = [
    "version", "timezone", "accounts", "poll_every", "dry_run", "cancellable", "limits",
    "max_cancels_per_sweep", "confirm_timeout", "protect", "client_request_id_prefixes",
    "holidays", "boards", "alerts", "webhook", "format", "rules", "name", "max_age",
    "before_close", "at", "at_window", "match", "symbols", "sides", "order_types", "statuses",
    "partially_filled", "min_remaining_qty", "SSI", "x",
]
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**20), 10**20), st.floats(allow_nan=True),
    st.sampled_from(["1", "15m", "HOSE", "LO", "QU", "0001234", "11:25", "https://h/x",
                     "Asia/Ho_Chi_Minh", "cancel_rest", "keep-"]),
    st.text(max_size=10),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(KEYS), inner, max_size=5),
    ),
    max_leaves=25,
)


@FUZZ
@given(st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=8))
def test_random_documents_from_schema_keys(document: dict[str, Any]) -> None:
    must_load_or_config_error(yaml.safe_dump(document, allow_unicode=True))
