"""Reconciliation's pure part: day ranges, the comparison per (day, model, upstream), capture rates, gap days;
and the settings that configure it."""

from __future__ import annotations

from datetime import date

import pytest

from spendgate.core.config import load_settings
from spendgate.domain.errors import ConfigError
from spendgate.domain.reconcile import (
    PPM,
    RangeError,
    Threshold,
    Usage,
    capture_ppm,
    check_range,
    compare,
    day_gaps,
    default_range,
    document,
    format_rate,
    provider_kind,
)

D1, D2 = date(2026, 11, 25), date(2026, 11, 26)


def test_ranges_are_checked_against_today() -> None:
    """--from after --to, a --to after today and more than 366 days are refused; today itself is allowed."""
    today = date(2026, 11, 27)
    check_range(date(2025, 11, 27), today, today)
    for start, end, says in ((D2, D1, "is after"), (D1, date(2026, 11, 28), "in the future"),
                             (date(2025, 11, 26), today, "at most 366")):
        with pytest.raises(RangeError, match=says):
            check_range(start, end, today)
    assert default_range(today, 3) == (date(2026, 11, 24), D2)


def test_capture_rate_is_integer_parts_per_million() -> None:
    """ledger / provider in ppm, rounded half up; nothing billed is no rate; 1.000 shows as such."""
    assert capture_ppm(1, 3) == 333_333 and capture_ppm(2, 3) == 666_667 and capture_ppm(5, 5) == PPM
    assert capture_ppm(7, 0) is None
    assert [format_rate(p) for p in (PPM, 999_500, 999_499, 0, 1_234_567, None)] == \
        ["1.000", "1.000", "0.999", "0.000", "1.235", "-"]


def test_lines_pair_per_day_and_model_until_the_ledger_names_upstreams() -> None:
    """Provider key lines and cost lines fold into (day, model) while the ledger has no upstream; a key only
    one side knows compares with zero."""
    ledger = [Usage(D1, "gpt-5.1", None, 2, 1000, 100, 5_000)]
    billed = [Usage(D1, "gpt-5.1", "openai-main", 2, 600, 60, None),
              Usage(D1, "gpt-5.1", "unmapped:key_x", 1, 400, 40, None),
              Usage(D1, "gpt-5.1", None, cost_micros=7_500),
              Usage(D2, "gpt-5.1-mini", "openai-main", 1, 10, 1, None), Usage(D2, "gpt-5.1-mini", None, cost_micros=30)]
    first, second = compare("openai", ledger, billed)
    assert (first.day, first.model, first.upstream) == (D1, "gpt-5.1", None)
    assert (first.billed.requests, first.billed.input_tokens, first.billed.cost_micros) == (3, 1000, 7_500)
    assert first.tokens_capture_ppm == 1_000_000 and first.cost_capture_ppm == 666_667
    assert first.cost_gap_micros == 2_500
    assert (second.ledger.cost_micros, second.billed.cost_micros, second.cost_capture_ppm) == (0, 30, 0)


def test_with_upstreams_in_the_ledger_the_comparison_is_per_upstream() -> None:
    """Per upstream, an unmapped provider key is a line of its own; cost stays per (day, model), on the line
    without an upstream, since the providers' cost reports have no key."""
    ledger = [Usage(D1, "gpt-5.1", "openai-main", 1, 600, 60, 100)]
    billed = [Usage(D1, "gpt-5.1", "openai-main", 1, 600, 60, None),
              Usage(D1, "gpt-5.1", "unmapped:key_x", 1, 5, 5, None), Usage(D1, "gpt-5.1", None, cost_micros=109)]
    lines = compare("openai", ledger, billed, by_upstream=True)
    assert [(x.upstream, x.tokens_capture_ppm, x.ledger.cost_micros, x.billed.cost_micros) for x in lines] == [
        (None, None, 100, 109), ("openai-main", PPM, None, None), ("unmapped:key_x", 0, 0, None)]
    assert day_gaps(lines, Threshold(pct=5, min_micros=1))[0].gap_micros == 9


def test_a_gap_day_needs_both_the_percentage_and_the_minimum() -> None:
    """Over 2 % and over $1 short: a gap naming the short models; $0.50 short or 1 % short is not."""
    def day(ours: int, theirs: int, d: date = D1) -> tuple[list[Usage], list[Usage]]:
        return [Usage(d, "gpt-5.1", None, cost_micros=ours)], [Usage(d, "gpt-5.1", None, cost_micros=theirs)]

    threshold = Threshold(pct=2, min_micros=1_000_000)
    assert day_gaps(compare("openai", *day(90_000_000, 100_000_000)), threshold)[0].gap_micros == 10_000_000
    assert day_gaps(compare("openai", *day(500_000, 1_000_000)), threshold) == []
    assert day_gaps(compare("openai", *day(198_000_000, 200_000_000)), threshold) == []  # $2 short but 1 %
    assert day_gaps(compare("openai", *day(120_000_000, 100_000_000)), threshold) == []  # the ledger counted more
    [gap] = day_gaps(compare("openai", [], [Usage(D2, "a", None, cost_micros=3_000_000),
                                            Usage(D2, "b", None, cost_micros=5_000_000)]), threshold)
    assert (gap.day, gap.models, gap.capture_ppm) == (D2, ("b", "a"), 0)


def test_document_totals_each_provider_day() -> None:
    """The document's days add up the day's lines and carry the gap flag."""
    lines = compare("anthropic", [Usage(D1, "m", None, 0, 10, 0, 50)],
                    [Usage(D1, "m", None, 0, 20, 0, None), Usage(D1, "m", None, cost_micros=100)])
    doc = document(D1, D2, lines, [("anthropic", D1)])
    [d] = doc.days
    assert (d.ledger_tokens, d.provider_tokens, d.cost_capture_ppm, d.gap) == (10, 20, 500_000, True)
    assert provider_kind("/v1/messages") == "anthropic" and provider_kind("/v1/responses") == "openai"


def test_settings_validate_providers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unknown kinds, duplicate names, two accounts of one provider, a bad URL and a bad dollar amount are
    named in one configuration error; a good provider has its default URL."""
    monkeypatch.delenv("SPENDGATE_CONFIG", raising=False)
    good = load_settings(reconcile={"providers": [{"name": "openai", "kind": "openai", "admin_key": "sk-admin-x"}]})
    assert good.reconcile.providers[0].url == "https://api.openai.com/v1"
    assert good.reconcile.gap_min_micros == 1_000_000
    for bad, says in (
            ({"providers": [{"name": "x", "kind": "azure", "admin_key": "k"}]}, "kind"),
            ({"providers": [{"name": "x", "kind": "openai", "admin_key": "k"},
                            {"name": "x", "kind": "anthropic", "admin_key": "k"}]}, "appears more than once"),
            ({"providers": [{"name": "a", "kind": "openai", "admin_key": "k"},
                            {"name": "b", "kind": "openai", "admin_key": "k"}]}, "each needs api_key_ids"),
            ({"providers": [{"name": "a", "kind": "openai", "admin_key": "k", "api_key_ids": {"key_1": "main"}},
                            {"name": "b", "kind": "openai", "admin_key": "k", "api_key_ids": {"key_2": "main"}}]},
             "the same upstream name"),
            ({"providers": [{"name": "a", "kind": "openai", "admin_key": "k", "base_url": "ftp://x"}]}, "http"),
            ({"gap_min_usd": "lots"}, "dollar amount")):
        with pytest.raises(ConfigError, match=says) as caught:
            load_settings(reconcile=bad)
        assert "Traceback" not in caught.value.message


def test_several_providers_of_a_kind_split_the_ledger_by_upstream() -> None:
    """Each account takes the ledger lines of the upstreams it maps; without upstreams in the ledger that
    split is impossible and says so."""
    from spendgate.core.config_providers import ReconcileProvider
    from spendgate.reconcile.run import ledger_side

    main = ReconcileProvider(name="a", kind="openai", admin_key="k", api_key_ids={"key_1": "main"})  # type: ignore[arg-type]
    lines = [Usage(D1, "gpt-5.1", "main", 1, 10, 1, 5), Usage(D1, "gpt-5.1", "backup", 1, 20, 2, 9)]
    assert ledger_side(main, lines, shared=True) == ([lines[0]], True)
    assert ledger_side(main, lines, shared=False) == (lines, True)
    unnamed = [Usage(D1, "gpt-5.1", None, 1, 10, 1, 5)]
    assert ledger_side(main, unnamed, shared=False) == (unnamed, False)
    with pytest.raises(ConfigError, match="do not name the upstream"):
        ledger_side(main, unnamed, shared=True)
