"""Model prices and the one cost function. Pure: no I/O.

Prices are integer micro-dollars per one million tokens, so every published price (down to
$0.005 / 1M) is exact; the arithmetic below runs in ``Decimal`` and rounds once, half-up, to
whole micro-dollars.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from spendgate.domain.errors import ConfigError, UnknownModelError
from spendgate.domain.money import Micros, usd_to_micros

PRICES_AS_OF = "2025-11-13"
"""The date the shipped table was copied from OpenAI's public price list."""

TOKENS_PER_PRICE_UNIT = 1_000_000


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """Unit prices of one model, in micro-dollars per 1M tokens."""

    input_micros: Micros
    cached_input_micros: Micros
    output_micros: Micros
    cache_write_5m_micros: Micros | None = None
    """Writing a 5-minute prompt-cache entry (Anthropic); unset: 1.25 × input, Anthropic's rule."""
    cache_write_1h_micros: Micros | None = None
    """Writing a 1-hour prompt-cache entry (Anthropic); unset: 2 × input."""

    @property
    def write_5m_micros(self) -> Micros:
        if self.cache_write_5m_micros is not None:
            return self.cache_write_5m_micros
        return round_half_up(self.input_micros * 5, 4)

    @property
    def write_1h_micros(self) -> Micros:
        return self.cache_write_1h_micros if self.cache_write_1h_micros is not None else self.input_micros * 2

    @classmethod
    def from_usd(cls, input_usd: str, cached_usd: str, output_usd: str) -> ModelPrice:
        return cls(usd_to_micros(input_usd), usd_to_micros(cached_usd), usd_to_micros(output_usd))


def _p(i: str, c: str, o: str) -> ModelPrice:
    return ModelPrice.from_usd(i, c, o)


# USD per 1M tokens: input, cached input, output (OpenAI standard tier, as of PRICES_AS_OF).
SHIPPED_PRICES: Mapping[str, ModelPrice] = {
    "gpt-5.1": _p("1.25", "0.125", "10.00"),
    "gpt-5.1-mini": _p("0.25", "0.025", "2.00"),
    "gpt-5.1-codex": _p("1.25", "0.125", "10.00"),
    "gpt-5.1-codex-mini": _p("0.25", "0.025", "2.00"),
    "gpt-5.1-codex-max": _p("1.25", "0.125", "10.00"),
    "gpt-5": _p("1.25", "0.125", "10.00"),
    "gpt-5-codex": _p("1.25", "0.125", "10.00"),
    "gpt-5-mini": _p("0.25", "0.025", "2.00"),
    "gpt-5-nano": _p("0.05", "0.005", "0.40"),
    "gpt-4.1": _p("2.00", "0.50", "8.00"),
    "gpt-4.1-mini": _p("0.40", "0.10", "1.60"),
    "gpt-4.1-nano": _p("0.10", "0.025", "0.40"),
    "gpt-4o": _p("2.50", "1.25", "10.00"),
    "gpt-4o-mini": _p("0.15", "0.075", "0.60"),
    "o3": _p("2.00", "0.50", "8.00"),
    "o4-mini": _p("1.10", "0.275", "4.40"),
    # Anthropic (as of ANTHROPIC_PRICES_AS_OF): input, cache read (0.1 × input), output; cache writes
    # are derived (5 minutes 1.25 × input, 1 hour 2 × input), as Anthropic prices them.
    "claude-opus-4-5": _p("5.00", "0.50", "25.00"),
    "claude-opus-4-1": _p("15.00", "1.50", "75.00"),
    "claude-opus-4": _p("15.00", "1.50", "75.00"),
    "claude-sonnet-4-5": _p("3.00", "0.30", "15.00"),
    "claude-sonnet-4": _p("3.00", "0.30", "15.00"),
    "claude-haiku-4-5": _p("1.00", "0.10", "5.00"),
    "claude-3-5-haiku": _p("0.80", "0.08", "4.00"),
}
ANTHROPIC_PRICES_AS_OF = "2025-11-24"
"""The date the Claude rows were copied from Anthropic's public price list."""

# USD per generated image (1024x1024; standard quality for DALL-E 3, medium for gpt-image-1), as of
# PRICES_AS_OF. Images of other sizes or qualities cost more or less; operators override per model.
SHIPPED_IMAGE_PRICES: Mapping[str, Micros] = {
    "dall-e-2": usd_to_micros("0.020"),
    "dall-e-3": usd_to_micros("0.040"),
    "gpt-image-1": usd_to_micros("0.042"),
    "gpt-image-1-mini": usd_to_micros("0.011"),
}

# USD per second of audio transcribed or translated ($ per minute / 60), as of PRICES_AS_OF.
SHIPPED_AUDIO_SECOND_PRICES: Mapping[str, Micros] = {
    "whisper-1": usd_to_micros("0.0001"),
    "gpt-4o-transcribe": usd_to_micros("0.0001"),
    "gpt-4o-mini-transcribe": usd_to_micros("0.00005"),
}

_SNAPSHOT_SUFFIX = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|20\d{6})$")
"""A dated snapshot: OpenAI's ``gpt-4o-2024-08-06``, Anthropic's ``claude-haiku-4-5-20251001``."""


@dataclass(frozen=True, slots=True)
class PriceLookup:
    """The price a request was metered with, and whether it came from the operator's fallback."""

    model: str
    price: ModelPrice
    fallback: bool


@dataclass(frozen=True)
class PriceTable:
    """The shipped table with operator overrides and additions, plus an optional fallback."""

    models: Mapping[str, ModelPrice] = field(default_factory=lambda: dict(SHIPPED_PRICES))
    fallback: ModelPrice | None = None
    image_micros: Mapping[str, Micros] = field(default_factory=lambda: dict(SHIPPED_IMAGE_PRICES))
    """Micro-dollars per generated image, by model."""
    audio_second_micros: Mapping[str, Micros] = field(default_factory=lambda: dict(SHIPPED_AUDIO_SECOND_PRICES))
    """Micro-dollars per second of audio, by model."""

    @classmethod
    def with_overrides(
        cls, overrides: Mapping[str, ModelPrice], fallback: ModelPrice | None = None, *,
        images: Mapping[str, Micros] | None = None, audio_seconds: Mapping[str, Micros] | None = None,
    ) -> PriceTable:
        return cls(models={**SHIPPED_PRICES, **overrides}, fallback=fallback,
                   image_micros={**SHIPPED_IMAGE_PRICES, **(images or {})},
                   audio_second_micros={**SHIPPED_AUDIO_SECOND_PRICES, **(audio_seconds or {})})

    def per_image(self, model: str) -> Micros:
        """Price of one image of ``model``; :class:`UnknownModelError` when the table has none (no
        fallback: a token price says nothing about an image)."""
        return self._unit(self.image_micros, model)

    def per_audio_second(self, model: str) -> Micros:
        """Price of one second of audio through ``model``; :class:`UnknownModelError` when unpriced."""
        return self._unit(self.audio_second_micros, model)

    @staticmethod
    def _unit(prices: Mapping[str, Micros], model: str) -> Micros:
        if model in prices:
            return prices[model]
        base = _SNAPSHOT_SUFFIX.sub("", model)
        if base in prices:
            return prices[base]
        raise UnknownModelError(model)

    def knows(self, model: str) -> bool:
        return self._canonical(model) is not None

    def lookup(self, model: str) -> PriceLookup:
        """Price of ``model`` (dated snapshots such as ``gpt-4o-2024-08-06`` use their family's price).

        Raises :class:`UnknownModelError` when neither the table nor a fallback prices it: an unknown
        model is never silently free.
        """
        name = self._canonical(model)
        if name is not None:
            return PriceLookup(name, self.models[name], fallback=False)
        if self.fallback is not None:
            return PriceLookup(model, self.fallback, fallback=True)
        raise UnknownModelError(model)

    def require(self, models: list[str], *, what: str) -> None:
        """Fail at start-up when configuration names a model the table cannot price."""
        missing = [m for m in models if not self.knows(m)]
        if missing:
            raise ConfigError(f"{what} names models with no price: {', '.join(missing)}")

    def _canonical(self, model: str) -> str | None:
        if model in self.models:
            return model
        base = _SNAPSHOT_SUFFIX.sub("", model)
        return base if base in self.models else None


BATCH_PERCENT = 50
"""OpenAI's Batch API bills half the standard token prices."""


def batch_price(price: ModelPrice, percent: int = BATCH_PERCENT) -> ModelPrice:
    """``price`` at ``percent`` % (rounded half-up to whole micro-dollars per 1M tokens)."""
    def part(micros: Micros) -> Micros:
        return (micros * percent * 2 + 100) // 200
    def maybe(micros: Micros | None) -> Micros | None:
        return None if micros is None else part(micros)
    return ModelPrice(part(price.input_micros), part(price.cached_input_micros), part(price.output_micros),
                      maybe(price.cache_write_5m_micros), maybe(price.cache_write_1h_micros))


def cost_micros(price: ModelPrice, *, input_tokens: int, cached_tokens: int, output_tokens: int,
                cache_write_5m_tokens: int = 0, cache_write_1h_tokens: int = 0) -> Micros:
    """Cost of one request: (input − cached − written) × input + cached × cached_input
    + written for 5 minutes × write_5m + written for 1 hour × write_1h + output × output.

    ``input_tokens`` counts every input token, cache reads and writes included (OpenAI's convention;
    Anthropic's usage is normalised to it). Reasoning tokens are part of ``output_tokens`` and are not
    added again. Cached and written tokens are clamped to the input count so a malformed usage block
    cannot produce a negative cost.
    """
    if min(input_tokens, cached_tokens, output_tokens, cache_write_5m_tokens, cache_write_1h_tokens) < 0:
        raise ValueError("token counts cannot be negative")
    cached = min(cached_tokens, input_tokens)
    write_5m = min(cache_write_5m_tokens, input_tokens - cached)
    write_1h = min(cache_write_1h_tokens, input_tokens - cached - write_5m)
    numerator = ((input_tokens - cached - write_5m - write_1h) * price.input_micros
                 + cached * price.cached_input_micros + output_tokens * price.output_micros)
    if write_5m or write_1h:
        numerator += write_5m * price.write_5m_micros + write_1h * price.write_1h_micros
    return round_half_up(numerator, TOKENS_PER_PRICE_UNIT)


def round_half_up(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` rounded half up, in integers (both non-negative; no Decimal on the
    request path: it cost each request two ~10 µs conversions)."""
    whole, rest = divmod(numerator, denominator)
    return whole + (1 if 2 * rest >= denominator else 0)
