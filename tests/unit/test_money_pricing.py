"""Money and pricing: integer micro-dollars, one rounding rule, unknown models never free."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spendgate.core.config_providers import PriceUSD, PricingSettings
from spendgate.domain.errors import ConfigError, UnknownModelError
from spendgate.domain.money import format_usd, usd_str, usd_to_micros
from spendgate.domain.pricing import SHIPPED_PRICES, ModelPrice, PriceTable, cost_micros


def test_usd_parsing_is_exact() -> None:
    """Dollar strings become exact micro-dollars; floats are refused."""
    assert usd_to_micros("12.50") == 12_500_000
    assert usd_to_micros("$0.000001") == 1
    assert usd_to_micros(40) == 40_000_000
    assert usd_to_micros(Decimal("0.0000005")) == 1  # half-up
    with pytest.raises(TypeError):
        usd_to_micros(0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        usd_to_micros("twelve")


def test_formatting() -> None:
    """Human and machine formats round-trip the sign and the cents."""
    assert format_usd(1_234_567_891) == "$1,234.57"
    assert format_usd(-500_000) == "-$0.50"
    assert usd_str(12_345) == "0.012345"
    assert usd_str(-1_000_001) == "-1.000001"


@pytest.mark.parametrize(("micros", "shown"), [
    (0, "$0.00"), (1, "$0.000001"), (8, "$0.000008"), (15, "$0.000015"), (999, "$0.001"), (1_234, "$0.0012"),
    (4_000, "$0.004"), (8_000, "$0.008"), (9_999, "$0.01"), (10_000, "$0.01"), (11_500, "$0.01"),
    (13_800, "$0.01"), (15_000, "$0.02"), (1_000_000, "$1.00"), (-4_000, "-$0.004"), (-10_000, "-$0.01"),
    (123_456_789_012, "$123,456.79"),
])
def test_one_money_format_shows_cents_or_enough_digits_below_a_cent(micros: int, shown: str) -> None:
    """A cent or more shows cents; under a cent shows two significant digits, never a misleading $0.00."""
    assert format_usd(micros) == shown


def test_fixed_places_when_asked() -> None:
    """Per-request costs can ask for a fixed six decimals."""
    assert format_usd(1_234, places=6) == "$0.001234"
    assert format_usd(12_345_678, places=6) == "$12.345678"


def test_shipped_table_covers_required_models() -> None:
    """Every model the issue names has a shipped price."""
    required = ["gpt-5.1", "gpt-5.1-mini", "gpt-5.1-codex", "gpt-5.1-codex-mini", "gpt-5", "gpt-5-mini",
                "gpt-5-nano", "gpt-4.1", "gpt-4.1-mini", "gpt-4o", "gpt-4o-mini", "o3", "o4-mini"]
    assert all(m in SHIPPED_PRICES for m in required)


def test_cost_formula_matches_codex_usage_block() -> None:
    """(input − cached) × input + cached × cached + output × output, rounded once, half-up."""
    price = PriceTable().lookup("gpt-5.1").price
    # 5200 input of which 4096 cached, 40 output: 1104×1.25 + 4096×0.125 + 40×10 per 1M tokens
    assert cost_micros(price, input_tokens=5200, cached_tokens=4096, output_tokens=40) == 1380 + 512 + 400
    half = ModelPrice(1, 1, 1)
    assert cost_micros(half, input_tokens=500_000, cached_tokens=0, output_tokens=0) == 1  # 0.5 rounds up
    assert cost_micros(half, input_tokens=499_999, cached_tokens=0, output_tokens=0) == 0


def test_cached_clamped_and_negative_refused() -> None:
    """Cached tokens above input cannot make a cost negative; negative counts are an error."""
    price = PriceTable().lookup("gpt-4o").price
    assert cost_micros(price, input_tokens=10, cached_tokens=50, output_tokens=0) >= 0
    with pytest.raises(ValueError):
        cost_micros(price, input_tokens=-1, cached_tokens=0, output_tokens=0)


def test_unknown_model_is_an_error_unless_fallback() -> None:
    """An unpriced model raises; with a fallback it is priced and flagged."""
    with pytest.raises(UnknownModelError, match="gpt-9-turbo"):
        PriceTable().lookup("gpt-9-turbo")
    table = PricingSettings(fallback=PriceUSD(input="2", cached_input="1", output="8")).table()
    found = table.lookup("gpt-9-turbo")
    assert found.fallback and found.price.input_micros == 2_000_000


def test_snapshots_and_overrides() -> None:
    """Dated snapshots use their family's price; operator overrides win over the shipped table."""
    assert PriceTable().lookup("gpt-4o-2024-08-06").model == "gpt-4o"
    table = PricingSettings(models={"gpt-4o": PriceUSD(input="1", cached_input="0.5", output="4"),
                                    "my-model": PriceUSD(input="3", cached_input="3", output="3")}).table()
    assert table.lookup("gpt-4o").price.input_micros == 1_000_000
    assert table.lookup("my-model").price.output_micros == 3_000_000
    with pytest.raises(ConfigError, match="nope"):
        table.require(["gpt-4o", "nope"], what="cascade")


def test_cache_write_prices_can_be_set_per_model() -> None:
    """An operator pricing a model Anthropic released after the shipped table sets its cache-write prices
    too; unset ones follow Anthropic's rule (1.25x and 2x input)."""
    table = PricingSettings(models={
        "claude-opus-4-8": PriceUSD(input="5", cached_input="0.5", output="25", cache_write_5m="6.5",
                                    cache_write_1h="11"),
        "claude-plain": PriceUSD(input="4", cached_input="0.4", output="20"),
    }).table()
    priced = table.lookup("claude-opus-4-8").price
    assert (priced.write_5m_micros, priced.write_1h_micros) == (6_500_000, 11_000_000)
    assert cost_micros(priced, input_tokens=3_000_000, cached_tokens=0, output_tokens=0,
                       cache_write_5m_tokens=1_000_000, cache_write_1h_tokens=1_000_000) == 22_500_000
    plain = table.lookup("claude-plain").price
    assert (plain.write_5m_micros, plain.write_1h_micros) == (5_000_000, 8_000_000)
    with pytest.raises(ValueError, match="strings"):
        PriceUSD(input="1", cached_input="0.1", output="1", cache_write_5m=1.25)  # type: ignore[arg-type]


def test_price_config_refuses_floats() -> None:
    """Prices written as YAML floats are rejected with a hint."""
    with pytest.raises(ValueError, match="strings"):
        PriceUSD(input=1.25, cached_input="0.1", output="1")  # type: ignore[arg-type]


@given(st.integers(0, 10**12), st.integers(0, 10**12), st.integers(0, 10**12),
       st.integers(0, 10**9), st.integers(0, 10**9), st.integers(0, 10**9))
def test_cost_is_the_exact_quotient_rounded_half_up(input_tokens: int, cached_tokens: int, output_tokens: int,
                                                   input_micros: int, cached_micros: int, output_micros: int) -> None:
    """cost_micros is the exact rational cost rounded half up, in integers, however large the counts."""
    price = ModelPrice(input_micros, cached_micros, output_micros)
    cached = min(cached_tokens, input_tokens)
    exact = Fraction((input_tokens - cached) * input_micros + cached * cached_micros + output_tokens * output_micros,
                     1_000_000)
    want = int(exact) + (1 if exact - int(exact) >= Fraction(1, 2) else 0)
    assert cost_micros(price, input_tokens=input_tokens, cached_tokens=cached_tokens,
                       output_tokens=output_tokens) == want
