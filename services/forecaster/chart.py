"""The burndown chart of one scope as a PNG: actual cumulative spend, the P10-P90 band and the P50
line to month-end, and the budget. matplotlib's object API on the Agg canvas: no pyplot state."""

from __future__ import annotations

import io

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from spendgate.domain.forecast import Forecast
from spendgate.domain.money import MICROS_PER_USD
from spendgate.forecaster.model import ScopeSeries, month_bounds


def month_to_date(series: ScopeSeries) -> list[float]:
    """Cumulative actual spend in dollars for each day of the month up to the as-of day."""
    month_start, _ = month_bounds(series.as_of)
    offset = max((month_start - series.start).days, 0)
    return [float(v) / MICROS_PER_USD for v in np.cumsum(series.daily_micros[offset:])]


def burndown_png(title: str, series: ScopeSeries, fc: Forecast, *, dpi: int = 80) -> bytes:
    month_start, month_end = month_bounds(fc.as_of)
    actual = month_to_date(series)
    actual_days = list(range(1, len(actual) + 1))
    fig = Figure(figsize=(7.0, 3.2), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(actual_days, actual, color="#1f4e79", linewidth=2, label="actual")
    if fc.band:
        start_day = actual_days[-1] if actual_days else 0
        start_usd = actual[-1] if actual else 0.0
        days = [start_day, *(p.day.day for p in fc.band)]
        p10 = [start_usd, *(p.p10_micros / MICROS_PER_USD for p in fc.band)]
        p50 = [start_usd, *(p.p50_micros / MICROS_PER_USD for p in fc.band)]
        p90 = [start_usd, *(p.p90_micros / MICROS_PER_USD for p in fc.band)]
        ax.fill_between(days, p10, p90, color="#f4a261", alpha=0.35, label="P10-P90")
        ax.plot(days, p50, color="#e76f51", linestyle="--", linewidth=1.8, label="P50")
    if fc.budget_micros is not None:
        ax.axhline(fc.budget_micros / MICROS_PER_USD, color="#c1121f", linewidth=1.2, label="budget")
    ax.set_xlim(1, month_end.day)
    ax.set_xlabel(f"day of {month_start:%B %Y}")
    ax.set_ylim(bottom=0)
    ax.set_title(title, fontsize=11)
    ax.set_ylabel("USD, month to date")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
