"""A month-end forecast as the forecaster produces it and the forecasts store records it. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date


@dataclass(frozen=True, slots=True)
class BandPoint:
    """Cumulative month-to-date spend quantiles at the end of one future day."""

    day: date
    p10_micros: int
    p50_micros: int
    p90_micros: int


@dataclass(frozen=True, slots=True)
class Forecast:
    month: date
    as_of: date
    actual_micros: int
    p10_micros: int
    p50_micros: int
    p90_micros: int
    budget_micros: int | None
    p10_crosses_on: date | None
    p50_crosses_on: date | None
    p90_crosses_on: date | None
    model: str
    band: tuple[BandPoint, ...]
    inputs: dict[str, float | int | str] = field(default_factory=dict)
