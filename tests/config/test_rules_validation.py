"""Issue "Hardening", findings 6 and 14b: what `ssi-guard validate` must refuse up front.

A webhook URL that validates but cannot be sent to, a rule that can never match
or never cancel, a filter whose value is missing (it would widen the rule to everything), and
rule names that are blank or hold control characters. Each refusal is one line
naming file:line and field, and never echoes the URL's secret parts.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guard.cli import main
from guard.config.durations import DurationError, parse_duration
from guard.config.loader import load_rules_text
from guard.config.schema import RulesFile
from guard.errors import ConfigError

BASE = """\
version: 1
accounts: ["0001234"]
rules:
  - name: stale
    max_age: 15m
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_rules_text(textwrap.dedent(text), "rules.yaml")
    for message in info.value.messages:
        assert "\n" not in message and message.startswith("rules.yaml:")
    return info.value.messages


def loads(text: str) -> RulesFile:
    return load_rules_text(textwrap.dedent(text), "rules.yaml")


# ---- the webhook URL is parsed fully at load -------------------------------------

SECRET = "s3cr3t-T0KEN-abcdef"


@pytest.mark.parametrize(
    ("url", "why"),
    [
        (f"http://127.0.0.1:18o99/hook/{SECRET}", "the port is not a whole number from 1 to "
         "65535"),
        (f"http://127.0.0.1:0/{SECRET}", "the port is not a whole number from 1 to 65535"),
        (f"http://127.0.0.1:65536/{SECRET}", "the port is not a whole number from 1 to 65535"),
        (f"http://h:+80/{SECRET}", "the port is not a whole number from 1 to 65535"),
        (f"http://h:80:80/{SECRET}", "the port is not a whole number from 1 to 65535"),
        (f"http:///{SECRET}", "the URL has no host"),
        (f"https://:443/{SECRET}", "the URL has no host"),
        (f"http:/h/{SECRET}", "the URL has no host"),
        (f"http://[::1/{SECRET}", "the host is not a valid name or IP address"),
        (f"http://[zz]/{SECRET}", "the host is not a valid name or IP address"),
        (f"http://xn--/{SECRET}", "the host is not a valid name or IP address"),
        (f"http://a..b/{SECRET}", "the host is not a valid name or IP address"),
        (f"http://h%20x/{SECRET}", "the host is not a valid name or IP address"),
        (f"http://exa mple.com/{SECRET}", "the URL contains a space or a control character"),
        (f"http://h/{SECRET}\t", "the URL contains a space or a control character"),
        (f"ftp://user:{SECRET}@host/x", "must be an http:// or https:// URL"),
    ],
)
def test_webhook_that_cannot_be_sent_to_is_refused_at_load(url: str, why: str) -> None:
    found = problems(BASE + f"alerts:\n  webhook: {json.dumps(url)}\n")
    assert found == [f"rules.yaml:7: alerts.webhook: {why}"]
    assert not any(SECRET in m or "18o99" in m for m in found)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:18099/hook",
        "https://hooks.slack.com/services/T0000/B0000/XXXXXXXXXXXXXXXXXXXXXXXX",
        "https://api.telegram.org/bot123456789:AAH-x/sendMessage?chat_id=-1001234567890",
        "http://[::1]:8080/x",
        "http://user:pw@alerts.internal_net.example:65535/x",
        "https://héllo.example/x",  # an IDN: httpx sends it as punycode
        "HTTPS://EXAMPLE.COM/x#frag",
        "http://localhost/",
    ],
)
def test_webhooks_that_httpx_can_send_to_still_load(url: str) -> None:
    rf = loads(BASE + f"alerts:\n  webhook: {json.dumps(url)}\n")
    assert rf.alerts is not None and rf.alerts.webhook == url
    httpx.Request("POST", url)  # what the alerter does with it: must not raise


def test_validate_cli_refuses_the_bad_port_with_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(BASE + "alerts:\n  webhook: http://127.0.0.1:18o99/hook\n")
    assert main(["validate", str(path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"{path}:7: alerts.webhook: the port is not a whole number from 1 to 65535"]


# ---- rules that can never match or never cancel --------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            BASE + "    match:\n      statuses: [PF]\n      partially_filled: skip\n",
            ["rules.yaml:8: rules[0].match.partially_filled: skip leaves out every PF order "
             "and statuses allows only PF: the rule can never match"],
        ),
        (
            BASE + "    match: {statuses: [PF], partially_filled: skip}\n",
            ["rules.yaml:6: rules[0].match.partially_filled: skip leaves out every PF order "
             "and statuses allows only PF: the rule can never match"],
        ),
        (
            BASE.replace("rules:\n", "cancellable: [PF]\nrules:\n")
            + "    match:\n      partially_filled: skip\n",
            ["rules.yaml:8: rules[0].match.partially_filled: skip leaves out every PF order "
             "and cancellable allows only PF: the rule can never cancel an order"],
        ),
        (
            # statuses none of which is cancellable: each one is named (already refused)
            BASE.replace("rules:\n", "cancellable: [QU]\nrules:\n")
            + "    match:\n      statuses: [PF, WA]\n",
            ["rules.yaml:8: rules[0].match.statuses[0]: status 'PF' is not in cancellable",
             "rules.yaml:8: rules[0].match.statuses[1]: status 'WA' is not in cancellable"],
        ),
        (
            # every symbol is pinned by `boards:` to a board the rule leaves out
            BASE.replace("rules:\n", "boards: {SSI: UPCOM, E1VFVN30: HOSE}\nrules:\n")
            + "    match:\n      symbols: [SSI, E1VFVN30]\n      boards: [HNX]\n",
            ["rules.yaml:8: rules[0].match.symbols: every symbol listed is pinned by `boards:` "
             "to a board this rule's `boards` leaves out (SSI: UPCOM, E1VFVN30: HOSE): the "
             "rule can never match"],
        ),
    ],
)
def test_rules_that_can_never_match_are_refused(text: str, expected: list[str]) -> None:
    assert sorted(problems(text)) == sorted(expected)


@pytest.mark.parametrize(
    "match",
    [
        "{statuses: [PF, QU], partially_filled: skip}",  # QU orders can match
        "{statuses: [PF]}",  # cancel_rest: PF orders match
        "{partially_filled: skip}",  # default cancellable has more than PF
        "{symbols: [SSI, VNM], boards: [HNX]}",  # VNM is not pinned: master data decides
        "{symbols: ['S*'], boards: [HNX]}",  # a glob: other symbols may match
        "{symbols: [SSI], boards: [UPCOM, HNX]}",  # SSI's pinned board is allowed
        "{symbols: [SSI]}",  # no board filter
        "{min_remaining_qty: 1000000000}",  # large, but not impossible
    ],
)
def test_rules_that_can_match_still_load(match: str) -> None:
    text = BASE.replace("rules:\n", "boards: {SSI: UPCOM}\nrules:\n") + f"    match: {match}\n"
    assert len(loads(text).rules) == 1


@pytest.mark.parametrize("key", ["accounts", "boards", "symbols", "sides", "order_types",
                                 "statuses"])
def test_a_filter_with_no_value_is_refused_not_read_as_any(key: str) -> None:
    # `accounts:` with nothing after it is YAML null: read as "absent", it would widen the
    # rule to every account, the opposite of what a half-written filter means.
    found = problems(BASE + f"    match:\n      {key}:\n")
    assert found == [f"rules.yaml:7: rules[0].match.{key}: has no value: list at least one, "
                     "or remove the key to match any"]


def test_alerts_with_no_value_is_refused() -> None:
    assert problems(BASE + "alerts:\n") == [
        "rules.yaml:6: alerts: has no value: give a webhook, or remove the key to send no "
        "alerts"]


# ---- rule names ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ('""', "must not be empty"),
        ('"   "', "must not be blank"),
        ('" stale"', "must not start or end with a space"),
        ('"stale\\t"', "must not start or end with a space"),
        ('"a\\tb"', "'a\\tb' contains a control or invisible character ('\\t')"),
        ('"bell\\a"', "'bell\\x07' contains a control or invisible character ('\\x07')"),
        ('"esc\\e[31mred"', "'esc\\x1b[31mred' contains a control or invisible character "
         "('\\x1b')"),
        ('"rtl\\u202eexe.gpj"', "'rtl\\u202eexe.gpj' contains a control or invisible character "
         "('\\u202e')"),
        ('"a\\u2028b"', "'a\\u2028b' contains a control or invisible character ('\\u2028')"),
        ('"zero\\u200bwidth"', "'zero\\u200bwidth' contains a control or invisible character "
         "('\\u200b')"),
        ('"' + "x" * 81 + '"', "at most 80 characters (got 81)"),
    ],
)
def test_rule_names_must_be_plain_printable_text(name: str, why: str) -> None:
    found = problems(BASE.replace("name: stale", f"name: {name}"))
    assert found == [f"rules.yaml:4: rules[0].name: {why}"]


@pytest.mark.parametrize("name", ["stale", "Lệnh treo 15 phút", "pre-close sweep", "x" * 80])
def test_ordinary_rule_names_load(name: str) -> None:
    assert loads(BASE.replace("name: stale", f"name: {name!r}")).rules[0].name == name


# ---- durations.py: a huge number is "too long", not a Python int-conversion error ----------


def test_a_duration_with_thousands_of_digits_is_too_long() -> None:
    with pytest.raises(DurationError, match="too long: at most 366 days"):
        parse_duration("9" * 5000 + "s")
    found = problems(BASE.replace("15m", "9" * 5000 + "m"))
    assert len(found) == 1 and found[0].endswith("is too long: at most 366 days")
    assert found[0].startswith("rules.yaml:5: rules[0].max_age: ")


# ---- the webhook's token never reaches a message, however the YAML is mangled --------------


@pytest.mark.parametrize(
    ("alerts", "expected"),
    [
        (f"{{webhook: !!int 'https://h/{SECRET}'}}",
         ["rules.yaml:6: alerts.webhook: the value is not a valid number"]),
        # PyYAML raises KeyError for an unknown boolean word: still one line, with its line
        (f"{{webhook: !!bool 'https://h/{SECRET}'}}",
         ["rules.yaml:6: alerts.webhook: the value is not a valid boolean"]),
        # the URL pasted as a key (a forgotten `webhook:`), once or twice
        (f"\n  https://hooks.example/services/{SECRET}: slack",
         ["rules.yaml:7: alerts: unknown key (not shown: it looks like a URL; the keys are "
          "webhook, format, language, daily_report_at)"]),
        (f"{{'https://h/{SECRET}': 1, 'https://h/{SECRET}': 2}}",
         ["rules.yaml:6: alerts.(key not shown): duplicate key (not shown) (first at line 6)"]),
    ],
)
def test_mangled_alerts_never_echo_the_token(alerts: str, expected: list[str]) -> None:
    found = problems(BASE + f"alerts: {alerts}\n")
    assert sorted(found) == sorted(expected)
    assert not any(SECRET in m for m in found)


def test_an_unknown_boolean_word_elsewhere_is_one_line_too() -> None:
    assert problems(BASE + "dry_run: !!bool maybe\n") == [
        "rules.yaml:6: dry_run: 'maybe' is not a valid boolean"]


# The schema checks webhook URLs without importing httpx (the rules model is read by the pure
# core); this holds it to httpx's own parser: whatever loads, httpx can build a request for.
_URL_PART = st.text(alphabet=st.sampled_from("aZ09-._~:@[]%/?#é ü\t"), max_size=12)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(scheme=st.sampled_from(["http", "https", "HTTP", "ftp"]), host=_URL_PART,
       port=st.one_of(st.none(), st.text(alphabet="0123456789o+-", max_size=6)),
       rest=_URL_PART)
def test_whatever_the_schema_accepts_httpx_can_send_to(scheme: str, host: str,
                                                        port: str | None, rest: str) -> None:
    url = f"{scheme}://{host}" + (f":{port}" if port is not None else "") + f"/{rest}"
    try:
        rf = loads(BASE + f"alerts:\n  webhook: {json.dumps(url)}\n")
    except ConfigError:
        return
    assert rf.alerts is not None
    request = httpx.Request("POST", url)
    assert request.url.host and (request.url.port is None or 1 <= request.url.port <= 65535)
