"""A policy proposal is input from a file, the console's form or the admin API: every hostile one is a
ConfigError with a short message, found quickly, never a traceback, a 500 or a value that would not fit
the database (found trying `policy dry-run` as an attacker would)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from spendgate.admin.policy import parse_proposal
from spendgate.core.yamltext import MAX_DEPTH, parse_yaml
from spendgate.domain.enforcement import policy_from_document
from spendgate.domain.enforcement.settings import EnforcementSettings
from spendgate.domain.errors import MAX_MESSAGE_CHARS, ConfigError, shown
from spendgate.domain.money import MAX_USD, usd_to_micros

BIG = "x" * 1_000_000
RAISE = {"scope": "team:a", "from": "2026-11-01T00:00:00Z", "until": "2026-12-01T00:00:00Z", "reason": "x"}


def budget(**fields: Any) -> dict[str, Any]:
    return {"budgets": [{"scope": "team:a", "monthly": "10", **fields}]}


def rule(**fields: Any) -> dict[str, Any]:
    return {"routing_rules": [{"name": "r", "scope": "team:a", "model": "gpt-5.1-mini", **fields}]}


@pytest.mark.parametrize(("doc", "words"), [
    (budget(monthly="abc"), "not a dollar amount: 'abc'"),
    (budget(monthly="NaN"), "not a dollar amount"),
    (budget(monthly="1e30"), "more than $1,000,000,000,000"),
    (budget(monthly="1e999999999"), "more than $1,000,000,000,000"),
    (budget(monthly=10**30), "more than $1,000,000,000,000"),
    (budget(monthly=True), "never true or false"),
    (budget(monthly=BIG), "not a dollar amount: 'xxx"),
    (budget(thresholds=[80, 95, 10**30]), "up to 1000"),
    (budget(thresholds=[True, 95, 110]), "thresholds.0: Input should be a valid integer"),
    (budget(retry_cap=10**30), "retry_cap: a whole number from 0 to 1000"),
    (budget(retry_cap=-1), "retry_cap: a whole number from 0 to 1000"),
    (budget(timezone=BIG), "unknown timezone 'xxx"),
    (budget(at_pause=BIG), "at_pause"),
    ({"budgets": [{"scope": "team:" + BIG, "monthly": "10"}]}, "bad scope 'team:xxx"),
    ({"retry_cap": 10**30}, "retry_cap"),
    ({"retry_cap": -3}, "retry_cap"),
    ({"downgrade_max_input_tokens": -3}, "downgrade_max_input_tokens"),
    ({"downgrade_max_input_tokens": 10**30}, "downgrade_max_input_tokens"),
    ({"cascades": {"gpt-5.1": ["gpt-5.1"]}}, "names a model twice"),
    ({"cascades": {f"m{i}": ["x"] for i in range(1000)}}, "at most 64 cascades"),
    ({"raises": [{**RAISE, "by": "1e30"}], **budget()}, "more than $1,000,000,000,000"),
    ({"raises": [{**RAISE, "by": "-5"}], **budget()}, "a raise adds a positive amount"),
    ({"raises": [{**RAISE, "by": "5", "reason": BIG}], **budget()}, "raises.0.reason"),
    (rule(name=BIG), "not 'xxx"),
    (rule(hours=BIG, max_input_tokens=8000), "hours must look like"),
    (rule(), "max_input_tokens is required"),
    ({"routing_rules": [{"name": "r", BIG: 1}]}, "unknown field 'xxx"),
    ({BIG: 1}, "invalid policy"),
    ({"exploration": {"share_pct": 5, "teams": ["a"]}}, "exploration.max_input_tokens: required"),
    ({"exploration": {"share_pct": 5, "teams": [[[BIG]]], "max_input_tokens": 10}}, "is not a team name"),
])
def test_a_hostile_document_is_one_short_config_error(doc: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        policy_from_document(doc, EnforcementSettings())
    assert words in caught.value.message
    assert len(caught.value.message) < 400, caught.value.message[:500]


def bomb(levels: int = 9) -> str:
    """The "billion laughs": nine aliases of nine, 9**9 strings to anything that walks the document."""
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + f"\nexploration: {{share_pct: 5, teams: [*a{levels - 1}], max_input_tokens: 10}}\n"


@pytest.mark.parametrize(("text", "words"), [
    (bomb(), "uses a YAML alias (*a0)"),
    ("budgets: " + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), f"nests deeper than {MAX_DEPTH} levels"),
    ("a: " + "[" * 5000, "is not YAML"),
    ("{{{", "is not YAML"),
    ("- just a list", "must be a mapping"),
    ("", "is empty"),  # applied, an empty file deleted every budget
    ("# only a comment\n", "is empty"),
    ("null\n", "is empty"),
    ("~", "is empty"),
])
def test_a_hostile_proposal_text_is_refused_before_it_is_built(text: str, words: str) -> None:
    started = time.perf_counter()
    with pytest.raises(ConfigError) as caught:
        parse_proposal(text, source="p.yaml")
    assert words in caught.value.message and caught.value.message.startswith("p.yaml")
    assert time.perf_counter() - started < 5  # a bound on a hang, not a speed target


def test_config_files_may_use_aliases_but_not_nest_without_end() -> None:
    """Operators' own files (config, alert routes, secrets) keep YAML's anchors; depth is bounded for all."""
    assert parse_yaml("a: &x {b: 1}\nc: *x\n", source="f", aliases=True) == {"a": {"b": 1}, "c": {"b": 1}}
    with pytest.raises(ConfigError, match="nests deeper"):
        parse_yaml("a: " + "[" * 40 + "]" * 40, source="f", aliases=True)


@pytest.mark.parametrize(("amount", "micros"), [
    ("12.50", 12_500_000), ("$3", 3_000_000), (40, 40_000_000), (str(MAX_USD), MAX_USD * 1_000_000),
    ("-5", -5_000_000), ("0.0000005", 1),
])
def test_dollar_amounts_parse_exactly(amount: str | int, micros: int) -> None:
    assert usd_to_micros(amount) == micros


@pytest.mark.parametrize("amount", ["1e30", "abc", "NaN", "-inf", "1e999999999", 10**30, "x" * 100,
                                    str(MAX_USD) + ".000001", "$$3"])
def test_anything_else_is_a_value_error_quoting_it_short(amount: str | int) -> None:
    with pytest.raises(ValueError) as caught:
        usd_to_micros(amount)
    assert len(str(caught.value)) < 100


def test_errors_quote_values_cut_short_and_never_carry_more_than_the_cap() -> None:
    assert len(shown(BIG)) < 80 and len(shown([[[[[BIG]]]]])) < 80
    assert len(ConfigError("x" * 10 * MAX_MESSAGE_CHARS).message) < MAX_MESSAGE_CHARS + 50
