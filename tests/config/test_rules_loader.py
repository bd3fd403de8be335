"""rules.yaml: what loads, what does not, and that every problem names file, line and field."""

from __future__ import annotations

import textwrap
from datetime import date, time, timedelta
from pathlib import Path

import pytest
from kit import REPO
from ssi_sdk.enums import OrderType

from guard.config.loader import MAX_BYTES, load_rules, load_rules_text
from guard.config.schema import DEFAULT_CANCELLABLE, ORDER_TYPES, RulesFile
from guard.errors import ConfigError
from guard.market.calendar import Board

MINIMAL = """\
version: 1
accounts: ["0001234"]
rules:
  - name: stale
    max_age: 15m
"""

FULL = """\
version: 1
timezone: Asia/Ho_Chi_Minh
accounts: ["0001234", "0001238"]
poll_every: 10s
dry_run: false
cancellable: [WA, RS, SD, QU, PF]
limits:
  max_cancels_per_sweep: 50
  confirm_timeout: 1m
protect:
  client_request_id_prefixes: ["keep-", "manual-"]
holidays: ["2026-11-24", 2026-12-31]
boards: {"E1VFVN30": HOSE, VN30F2612: DER}
alerts:
  webhook: https://example.com/hook
  format: slack
rules:
  - name: stale-limit-orders
    max_age: 15m
    match:
      accounts: ["0001234"]
      boards: [HOSE, HNX, UPCOM, DER]
      symbols: ["SSI", "VN*"]
      sides: [B, S]
      order_types: [LO]
      statuses: [QU, PF]
      partially_filled: cancel_rest
      min_remaining_qty: 100
  - name: pre-close-sweep
    before_close: 5m
    match: {order_types: [LO, MTL]}
  - name: lunch-sweep
    at: [11:25, "14:00:30"]
    at_window: 30s
"""


def load(text: str) -> RulesFile:
    return load_rules_text(textwrap.dedent(text), "rules.yaml")


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(text)
    for message in info.value.messages:
        assert "\n" not in message
        assert message.startswith("rules.yaml")
    return info.value.messages


def test_shipped_rules_yaml_is_valid_and_safe() -> None:
    rf = load_rules(REPO / "rules.yaml")
    assert rf.dry_run is True
    assert rf.accounts == ("0001234", "0001238", "0005678")
    triggers = {r.name: r.describe_trigger() for r in rf.rules}
    assert triggers == {
        "stale-limit-orders": "max_age 15m",
        "pre-close-sweep": "before_close 5m",
        "lunch-sweep": "at 11:25",
    }
    assert rf.rules[0].match.order_types == ("LO",)


def test_minimal_file_gets_documented_defaults() -> None:
    rf = load(MINIMAL)
    assert rf.dry_run is True
    assert rf.timezone == "Asia/Ho_Chi_Minh"
    assert rf.poll_every == timedelta(seconds=30)
    assert rf.cancellable == DEFAULT_CANCELLABLE == ("WA", "RS", "SD", "QU", "PF")
    assert rf.limits.max_cancels_per_sweep == 200
    assert rf.limits.confirm_timeout == timedelta(seconds=30)
    assert rf.protect.client_request_id_prefixes == ("keep-",)
    assert rf.holidays == ()
    assert rf.boards == {}
    assert rf.alerts is None
    rule = rf.rules[0]
    assert rule.max_age == timedelta(minutes=15)
    assert rule.at_window == timedelta(seconds=60)
    assert rule.match.partially_filled == "cancel_rest"
    assert rule.match.min_remaining_qty == 0


def test_full_example_loads() -> None:
    rf = load(FULL)
    assert rf.dry_run is False
    assert rf.poll_every == timedelta(seconds=10)
    assert rf.limits.confirm_timeout == timedelta(minutes=1)
    assert rf.holidays == (date(2026, 11, 24), date(2026, 12, 31))
    assert rf.boards == {"E1VFVN30": Board.HOSE, "VN30F2612": Board.DER}
    assert rf.alerts is not None
    assert rf.alerts.format == "slack"
    assert rf.rules[0].match.symbols == ("SSI", "VN*")
    assert rf.rules[2].at == (time(11, 25), time(14, 0, 30))
    assert rf.rules[2].at_window == timedelta(seconds=30)
    assert [r.trigger for r in rf.rules] == ["max_age", "before_close", "at"]


def test_models_are_frozen() -> None:
    rf = load(MINIMAL)
    with pytest.raises(ValueError, match="frozen"):
        rf.dry_run = False  # type: ignore[misc]


def test_yaml_12_scalars_account_and_time_unquoted() -> None:
    rf = load(MINIMAL.replace('["0001234"]', "[0001234]") + "  - name: t\n    at: [11:25]\n")
    assert rf.accounts == ("0001234",)
    assert rf.rules[1].at == (time(11, 25),)


def test_yaml_no_is_false_but_the_text_no_is_refused() -> None:
    assert load(MINIMAL + "dry_run: no\n").dry_run is False
    assert problems(MINIMAL + 'dry_run: "no"\n') == [
        "rules.yaml:6: dry_run: expected true or false (got the text 'no')"
    ]


def test_crlf_and_bom_are_fine() -> None:
    text = ("\ufeff" + MINIMAL).replace("\n", "\r\n").encode()
    assert load_rules_text(text, "rules.yaml").rules[0].name == "stale"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            MINIMAL.replace("max_age", "max_agee"),
            # (the "needs a trigger" check runs only once every key is known)
            ["rules.yaml:5: rules[0].max_agee: unknown key 'max_agee' (did you mean 'max_age'?)"],
        ),
        (
            MINIMAL + "dryrun: false\n",
            ["rules.yaml:6: dryrun: unknown key 'dryrun' (did you mean 'dry_run'?)"],
        ),
        (
            MINIMAL + "limits: {max_cancel_per_sweep: 5}\n",
            ["rules.yaml:6: limits.max_cancel_per_sweep: unknown key 'max_cancel_per_sweep' "
             "(did you mean 'max_cancels_per_sweep'?)"],
        ),
        (
            MINIMAL + "    match:\n      order_type: [LO]\n",
            ["rules.yaml:7: rules[0].match.order_type: unknown key 'order_type' "
             "(did you mean 'order_types'?)"],
        ),
        (
            MINIMAL + "protect: {prefixes: [x]}\n",
            ["rules.yaml:6: protect.prefixes: unknown key 'prefixes'"],
        ),
        (
            MINIMAL.replace("15m", "5x"),
            ["rules.yaml:5: rules[0].max_age: '5x' is not a duration (use 30s, 15m, 1h30m)"],
        ),
        (
            MINIMAL.replace("15m", "15"),
            ["rules.yaml:5: rules[0].max_age: 15 has no unit (use 30s, 15m, 1h30m)"],
        ),
        (
            MINIMAL.replace("15m", "0m"),
            ["rules.yaml:5: rules[0].max_age: '0m' is zero: a duration must be positive "
             "(use 30s, 15m, 1h30m)"],
        ),
        (
            MINIMAL.replace("version: 1", 'version: "1"'),
            ["rules.yaml:1: version: expected a whole number (got the text '1')"],
        ),
        (
            MINIMAL.replace("version: 1", "version: 2"),
            ["rules.yaml:1: version: unsupported schema version 2: this ssi-guard reads "
             "version 1"],
        ),
        (
            MINIMAL.replace("version: 1", "version: true"),
            ["rules.yaml:1: version: expected a whole number (YAML reads true as the boolean "
             "true)"],
        ),
        (
            MINIMAL.replace('["0001234"]', "[1234]"),
            ['rules.yaml:2: accounts[0]: expected text (YAML reads 1234 as a number; to mean '
             'the text, quote it: "1234")'],
        ),
        (
            MINIMAL.replace('["0001234"]', "[]"),
            ["rules.yaml:2: accounts: must not be empty"],
        ),
        (
            MINIMAL.replace('["0001234"]', '["0001234", "0001234"]'),
            ["rules.yaml:2: accounts: listed twice: 0001234"],
        ),
        (
            MINIMAL + "timezone: UTC\n",
            ["rules.yaml:6: timezone: Input should be 'Asia/Ho_Chi_Minh' (got the text 'UTC')"],
        ),
        (
            MINIMAL + "poll_every: 30\n",
            ["rules.yaml:6: poll_every: 30 has no unit (use 30s, 15m, 1h30m)"],
        ),
        (
            MINIMAL + "limits: {max_cancels_per_sweep: '200'}\n",
            ["rules.yaml:6: limits.max_cancels_per_sweep: expected a whole number (got the "
             "text '200')"],
        ),
        (
            MINIMAL + "limits: {max_cancels_per_sweep: 0}\n",
            ["rules.yaml:6: limits.max_cancels_per_sweep: Input should be greater than or "
             "equal to 1"],
        ),
        (
            MINIMAL + "cancellable: [QU, FF, WC, XX]\n",
            ["rules.yaml:6: cancellable[1]: 'FF' is a final status: there is nothing left to "
             "cancel",
             "rules.yaml:6: cancellable[2]: 'WC' is a pending cancel/modify: the broker is "
             "already on it",
             "rules.yaml:6: cancellable[3]: unknown status 'XX' (choose from PD, WA, RS, SD, "
             "QU, PF, IAV)"],
        ),
        (
            MINIMAL + "holidays: [2026-11-24 10:00:00]\n",
            ["rules.yaml:6: holidays[0]: a holiday is a date (YYYY-MM-DD), not a date and "
             "time"],
        ),
        (
            MINIMAL + "holidays: [2026-02-30]\n",
            ["rules.yaml:6: holidays[0]: '2026-02-30' is not a valid date"],
        ),
        (
            MINIMAL + "boards: {SSI: HSX}\n",
            ["rules.yaml:6: boards.SSI: Input should be 'HOSE', 'HNX', 'UPCOM' or 'DER' (got "
             "the text 'HSX')"],
        ),
        (
            MINIMAL + "alerts: {webhook: 'ftp://user:s3cret@host/x'}\n",
            ["rules.yaml:6: alerts.webhook: must be an http:// or https:// URL"],
        ),
        (
            MINIMAL + "alerts: {webhook: 'https://h/x', format: discord}\n",
            ["rules.yaml:6: alerts.format: Input should be 'generic', 'slack' or 'telegram'"],
        ),
        (
            MINIMAL + "    before_close: 5m\n",
            ["rules.yaml:4: rules[0]: a rule needs exactly one trigger (max_age, before_close, "
             "at or heartbeat); found max_age and before_close"],
        ),
        (
            MINIMAL + "    at_window: 10s\n",
            ["rules.yaml:4: rules[0]: at_window only applies to an `at` trigger"],
        ),
        (
            MINIMAL + "  - name: t\n    at: ['11:25', '25:00']\n",
            ["rules.yaml:7: rules[1].at[1]: '25:00' is not a time of day (use HH:MM or "
             'HH:MM:SS, e.g. "11:25")'],
        ),
        (
            MINIMAL + "  - name: stale\n    at: ['11:25']\n",
            ["rules.yaml:6: rules[1].name: rule name 'stale' is already used by rules[0]"],
        ),
        (
            MINIMAL + "  - name: ''\n    at: ['11:25']\n",
            ["rules.yaml:6: rules[1].name: must not be empty"],
        ),
        (
            MINIMAL + "  - at: ['11:25']\n",
            ["rules.yaml:6: rules[1].name: missing (required)"],
        ),
        (
            MINIMAL + "    match:\n      symbols: [ssi]\n",
            ["rules.yaml:7: rules[0].match.symbols[0]: 'ssi' is not a symbol or glob "
             "(upper-case letters, digits, * ? [ ])"],
        ),
        (
            MINIMAL + "    match:\n      symbols: []\n",
            ["rules.yaml:7: rules[0].match.symbols: must not be empty"],
        ),
        (
            MINIMAL + "    match:\n      accounts: ['0009999']\n",
            ["rules.yaml:7: rules[0].match.accounts[0]: account '0009999' is not in the "
             "top-level accounts"],
        ),
        (
            MINIMAL + "    match:\n      statuses: [PD]\n",
            ["rules.yaml:7: rules[0].match.statuses[0]: status 'PD' is not in cancellable"],
        ),
        (
            MINIMAL + "    match:\n      order_types: [PLO]\n",
            ["rules.yaml:7: rules[0].match.order_types[0]: PLO orders can never be cancelled"],
        ),
        (
            MINIMAL + "    match:\n      order_types: [LIMIT]\n",
            ["rules.yaml:7: rules[0].match.order_types[0]: Input should be 'ATO', 'ATC', 'LO', "
             "'MTL', 'MP', 'MOK', 'MAK' or 'PLO' (got the text 'LIMIT')"],
        ),
        (
            MINIMAL + "    match:\n      partially_filled: yes\n",
            ["rules.yaml:7: rules[0].match.partially_filled: Input should be 'cancel_rest' or "
             "'skip' (YAML reads yes as the boolean true)"],
        ),
        (
            MINIMAL + "    match:\n      min_remaining_qty: 1.5\n",
            ["rules.yaml:7: rules[0].match.min_remaining_qty: expected a whole number (YAML "
             'reads 1.5 as a number; to mean the text, quote it: "1.5")'],
        ),
        (
            MINIMAL + "    match:\n",
            ["rules.yaml:6: rules[0].match: expected a mapping of keys (the key has no value)"],
        ),
        (
            "version: 1\naccounts: ['1']\nrules:\n",
            ["rules.yaml:3: rules: expected a list (the key has no value)"],
        ),
        (
            "version: 1\n",
            ["rules.yaml:1: accounts: missing (required)", "rules.yaml:1: rules: missing "
             "(required)"],
        ),
    ],
)
def test_problems_name_line_and_field(text: str, expected: list[str]) -> None:
    assert sorted(problems(text)) == sorted(expected)


def test_all_problems_reported_at_once() -> None:
    text = textwrap.dedent("""\
        version: 1
        accounts: [1234]
        dry_run: "false"
        poll_every: 5x
        rules:
          - name: a
            max_agee: 15m
          - name: b
            before_close: 5m
            match: {sides: [X]}
        """)
    found = problems(text)
    assert [m.split(":")[1] for m in found] == ["2", "3", "4", "7", "10"]


def test_webhook_secret_is_never_echoed() -> None:
    found = problems(MINIMAL + "alerts: {webhook: 'hxxp://t0ken-abc@host', extra: 1}\n")
    assert not any("t0ken" in m for m in found)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "rules.yaml: the file is empty"),
        (b"# only a comment\n", "rules.yaml: the file is empty"),
        (b"- a\n- b\n", "rules.yaml:1: the top level must be a mapping"),
        (b"just text\n", "rules.yaml:1: the top level must be a mapping"),
        (b"\xff\xfe\x00 junk", "rules.yaml:1: not UTF-8 text (byte 0xff)"),
        (b"version: 1\n\xc3\x28\n", "rules.yaml:2: not UTF-8 text (byte 0xc3)"),
        (b"a: \x00\n", "rules.yaml:1: character #x0000 is not allowed"),
        (b"a: 1\n---\nb: 2\n", "rules.yaml:2: only one YAML document is allowed"),
        (b"a: &x [1]\nb: *x\n", "rules.yaml:2: YAML aliases (*x) are not allowed"),
        (b"!!python/object/apply:os.system ['true']\n", "rules.yaml:1: YAML tag "
         "!!python/object/apply:os.system is not allowed"),
        (b"version: !!python/name:os.system ''\n", "rules.yaml:1: YAML tag !!python/name:"),
        (b"version: !custom 1\n", "rules.yaml:1: YAML tag !custom is not allowed"),
        (b"a: !!binary aGk=\n", "rules.yaml:1: YAML tag !!binary is not allowed"),
        (b"version: 1\nversion: 1\n", "rules.yaml:2: version: duplicate key 'version' (first "
         "at line 1)"),
        (b"version: 1\n  bad: [\n", "rules.yaml:2: YAML syntax:"),
        (b"{a: 1", "rules.yaml:1: YAML syntax:"),
        (b"? [a, b]\n: 1\n", "rules.yaml:1: a key must be a plain word"),
        (b"1: x\n", "rules.yaml:1: key '1' is not text to YAML; quote it"),
        (b"[" * 50_000, "rules.yaml:1: nested too deeply (at most 20 levels)"),
        (b"{a: " * 30 + b"1" + b"}" * 30, "rules.yaml:1: nested too deeply"),
    ],
)
def test_hostile_or_broken_input(data: bytes, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_rules_text(data, "rules.yaml")
    assert any(m.startswith(expected) for m in info.value.messages), info.value.messages


def test_billion_laughs_is_refused_quickly() -> None:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    with pytest.raises(ConfigError, match="aliases"):
        load_rules_text("\n".join(lines), "bomb.yaml")


def test_block_style_deep_nesting() -> None:
    text = "a:\n" + "".join(" " * i + "-\n" for i in range(1, 200))
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_rules_text(text, "rules.yaml")


def test_too_large_text_and_bytes() -> None:
    big = "#" * (MAX_BYTES + 1)
    with pytest.raises(ConfigError, match="too large"):
        load_rules_text(big, "rules.yaml")
    with pytest.raises(ConfigError, match="too large"):
        load_rules_text(big.encode(), "rules.yaml")


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.yaml: no such file"):
        load_rules(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="is a directory"):
        load_rules(tmp_path)
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (MAX_BYTES + 1))
    with pytest.raises(ConfigError, match="too large"):
        load_rules(big)
    with pytest.raises(ConfigError, match="not a regular file"):
        load_rules("/dev/null")
    with pytest.raises(ConfigError, match="cannot read"):
        load_rules("bad\0name.yaml")


def test_load_rules_names_the_file_in_messages(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(MINIMAL.replace("15m", "5x"))
    with pytest.raises(ConfigError) as info:
        load_rules(str(path))
    assert info.value.messages == [
        f"{path}:5: rules[0].max_age: '5x' is not a duration (use 30s, 15m, 1h30m)"
    ]
    path.write_text(MINIMAL)
    assert load_rules(path).rules[0].name == "stale"


def test_order_types_are_the_sdks() -> None:
    assert set(ORDER_TYPES) == {m.value for m in OrderType}
