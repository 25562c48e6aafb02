"""The burndown chart of one scope: month-to-date spend, the forecast fan to month end, the budget.

One time axis for all of it: x counts days since the scope's month began, so the end of day d sits
at x = d. The actual line runs from (0, 0) to the end of the last closed day, and on to the elapsed
share of an unfinished as-of day (``ScopeSeries.day_fraction``); the forecast's band points are
end-of-day quantiles, so the fan opens where the actual line ends and widens to month end.
(The partial as-of day used to be drawn at x = d as if it had closed, with the band's first point,
the end of that same day, right above it: the forecast started with a jump above the actual line.)

:func:`burndown_geometry` is that geometry (pure); :func:`burndown` draws it with matplotlib's object
API on the Agg canvas (no pyplot state; imported only when drawing) as a PNG, for mail, and as an inline
SVG, for the HTML page.
In the SVG the drawn parts carry ids (``<chart id>-<part>``, parts in :data:`PARTS`; the phone-sized
copy's chart id ends in ``-narrow``) that a browser test reads back to check the picture against the
numbers.
"""

from __future__ import annotations

import io
import re
import zlib
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, timedelta
from html import escape
from itertools import pairwise
from typing import TYPE_CHECKING, Literal

import numpy as np

from spendgate.domain.forecast import Forecast
from spendgate.domain.money import MICROS_PER_USD, format_usd
from spendgate.forecaster.model import ScopeSeries, month_bounds

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

PNG_DPI = 150
"""One and a half times the layout size: crisp text on most screens at 1,050 px, and a mail of many
charts stays a few megabytes."""
PARTS = ("actual", "band", "p50", "budget", "zero", "crossing")
"""The SVG ids (after the chart id) of the parts a reader can locate: ``zero`` is the x axis at $0,
spanning the month from its start (x = 0) to its end."""

ACTUAL, FAN, P50, BUDGET, MUTED = "#1f4e79", "#f4a261", "#d1495b", "#8d0801", "#555555"
LABEL_BOX = {"boxstyle": "square,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.85}
"""Behind labels drawn over lines, so they stay legible."""


@dataclass(frozen=True, slots=True)
class Burndown:
    """Points of one chart in (days since month start, dollars)."""

    month_start: date
    days_in_month: int
    actual: tuple[tuple[float, float], ...]
    """From the month's start to now; its last point is where the fan opens."""
    fan_x: tuple[float, ...]
    p10: tuple[float, ...]
    p50: tuple[float, ...]
    p90: tuple[float, ...]
    """Empty when the month has closed; otherwise each starts at the actual line's last point."""
    budget_usd: float | None
    crossing_x: float | None
    """Where P50 (the actual line, then the P50 path) first reaches the budget, if it does."""


def _end_of(day: date, month_start: date) -> float:
    return float((day - month_start).days + 1)


def burndown_geometry(series: ScopeSeries, fc: Forecast) -> Burndown:
    """Where every line of the chart goes; the fan starts at today's actual cumulative spend."""
    month_start, month_end = month_bounds(fc.as_of)
    first = max(month_start, series.start)
    daily = series.daily_micros[(first - series.start).days:(fc.as_of - series.start).days + 1]
    cumulative = np.cumsum(daily) / MICROS_PER_USD
    xs = [_end_of(first + timedelta(days=i), month_start) for i in range(len(daily))]
    if xs and series.day_fraction < 1.0:
        xs[-1] -= 1.0 - max(series.day_fraction, 0.0)
    actual = ((float((first - month_start).days), 0.0), *zip(xs, (float(v) for v in cumulative), strict=True))
    now_x, now_usd = actual[-1]
    fan_x: tuple[float, ...] = ()
    p10 = p50 = p90 = fan_x
    if fc.band:
        fan_x = (now_x, *(_end_of(p.day, month_start) for p in fc.band))
        p10 = (now_usd, *(p.p10_micros / MICROS_PER_USD for p in fc.band))
        p50 = (now_usd, *(p.p50_micros / MICROS_PER_USD for p in fc.band))
        p90 = (now_usd, *(p.p90_micros / MICROS_PER_USD for p in fc.band))
    budget = None if fc.budget_micros is None else fc.budget_micros / MICROS_PER_USD
    crossing = None
    if budget is not None and fc.p50_crosses_on is not None:
        path = (*actual, *zip(fan_x[1:], p50[1:], strict=True))
        crossing = _first_reach(path, budget)
    return Burndown(month_start, month_end.day, actual, fan_x, p10, p50, p90, budget, crossing)


def _first_reach(path: tuple[tuple[float, float], ...], level: float) -> float | None:
    """The x at which a path first reaches ``level`` (linear between points), else None."""
    if path and path[0][1] >= level:
        return path[0][0]
    for (x0, y0), (x1, y1) in pairwise(path):
        if y1 >= level:  # and y0 < level, so the segment rises
            return x0 + (level - y0) / (y1 - y0) * (x1 - x0)
    return None


ChartFormat = Literal["png", "svg"]


@dataclass(frozen=True, slots=True)
class Chart:
    """One scope's chart in the formats asked for."""

    png: bytes | None = None
    svg: str | None = None
    """An ``<svg>`` element to inline in HTML: scalable, every id prefixed with :func:`chart_id`."""


def chart_id(scope: str) -> str:
    """A DOM id for a scope's chart: readable, and unique even when names differ only in punctuation."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", scope).strip("-")[:40] or "scope"
    return f"chart-{slug}-{zlib.crc32(scope.encode()):08x}"


@dataclass(frozen=True, slots=True)
class Layout:
    """Figure size (inches at 100 px an inch) and the parts that depend on it."""

    name: str
    width_in: float
    height_in: float
    legend_cols: int
    ylabel: str


WIDE = Layout("wide", 10.5, 4.2, 4, "USD, month to date")
"""The report's content width (1,050 px): mail, and the page on a screen."""
NARROW = Layout("narrow", 4.8, 4.6, 1, "USD")
"""The page on a phone (about 360-480 px wide): the same chart at a size whose text stays readable."""


def burndown(scope: str, title: str, series: ScopeSeries, fc: Forecast,
             formats: Collection[ChartFormat]) -> Chart:
    """The chart of one scope: PNG for mail (wide), inline SVG for a page (wide and narrow, the page's CSS
    shows the one that fits). About a third of a second per picture.

    matplotlib is imported here, not with the module: it takes a second, and only drawing needs it.
    """
    g = burndown_geometry(series, fc)
    png = svg = None
    if "png" in formats:
        buf = io.BytesIO()
        _figure(g, fc, WIDE).savefig(buf, format="png", dpi=PNG_DPI)
        png = buf.getvalue()
    if "svg" in formats:
        cid = chart_id(scope)
        svg = "".join(_svg(_figure(g, fc, layout), cid if layout is WIDE else f"{cid}-{layout.name}",
                           f"burndown chart of {title}", layout) for layout in (WIDE, NARROW))
    return Chart(png, svg)


def _svg(fig: Figure, cid: str, label: str, layout: Layout) -> str:
    import matplotlib as mpl

    text = io.StringIO()
    with mpl.rc_context({"svg.fonttype": "none", "svg.hashsalt": cid}):  # text as text; repeatable ids
        fig.savefig(text, format="svg", metadata=dict.fromkeys(("Date", "Creator", "Format", "Type")))
    return _inline(text.getvalue(), cid, label, f"chart {layout.name}")


def _day(d: date) -> str:
    return f"{d:%b} {d.day}"


def _usd(micros: int) -> str:
    """``format_usd`` for matplotlib text, where a pair of "$" would start math mode."""
    return format_usd(micros).replace("$", r"\$")


def _figure(g: Burndown, fc: Forecast, layout: Layout) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(layout.width_in, layout.height_in), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    top = max([1.0, g.actual[-1][1], *g.p90, g.budget_usd or 0.0]) * 1.22
    ax.set_xlim(0, g.days_in_month)
    ax.set_ylim(0, top)
    ax.axhline(0, color=MUTED, linewidth=0.8, snap=False, gid="zero")
    ax.plot(*zip(*g.actual, strict=True), color=ACTUAL, linewidth=2.4, solid_capstyle="round", gid="actual",
            label=f"actual: {_usd(fc.actual_micros)} so far")
    if g.fan_x:
        ax.fill([*g.fan_x, *reversed(g.fan_x)], [*g.p90, *reversed(g.p10)], color=FAN, alpha=0.4, linewidth=0,
                gid="band", label=f"P10-P90 at month end: {_usd(fc.p10_micros)} to {_usd(fc.p90_micros)}")
        ax.plot(g.fan_x, g.p50, color=P50, linestyle=(0, (5, 2.5)), linewidth=2.2, gid="p50",
                label=f"P50 at month end: {_usd(fc.p50_micros)}")
        ax.annotate(_usd(fc.p50_micros), (g.fan_x[-1], g.p50[-1]), xytext=(-4, 6), textcoords="offset points",
                    ha="right", va="bottom", fontsize=10, color=P50, weight="bold", bbox=LABEL_BOX)
    ax.plot([g.actual[-1][0]], [g.actual[-1][1]], "o", color=ACTUAL, markersize=6)
    if g.budget_usd is not None and fc.budget_micros is not None:
        _budget(ax, g.budget_usd, fc.budget_micros)
    if g.crossing_x is not None and g.budget_usd is not None and fc.p50_crosses_on is not None:
        _crossing(ax, g, g.crossing_x, g.budget_usd, fc.p50_crosses_on, top)
    ticks = [1, *range(5, g.days_in_month - 2, 5), g.days_in_month]
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.set_xlabel(f"day of {g.month_start:%B %Y} (spend to the end of each day)", fontsize=10)
    ax.set_ylabel(layout.ylabel, fontsize=10)
    ax.yaxis.set_major_formatter(lambda v, _pos: f"\\${v:,.0f}")
    ax.tick_params(labelsize=10)
    ax.grid(alpha=0.25)
    ax.spines[["top", "right"]].set_visible(False)
    fig.legend(loc="outside lower center", ncols=layout.legend_cols, fontsize=10, frameon=False)
    return fig


def _budget(ax: Axes, budget_usd: float, budget_micros: int) -> None:
    ax.axhline(budget_usd, color=BUDGET, linewidth=1.6, snap=False, gid="budget", label="budget")
    ax.annotate(f"budget {_usd(budget_micros)}", (0, budget_usd), xytext=(6, 4), textcoords="offset points",
                ha="left", va="bottom", fontsize=10, color=BUDGET, weight="bold",
                bbox=LABEL_BOX)


def _crossing(ax: Axes, g: Burndown, x: float, budget_usd: float, day: date, top: float) -> None:
    ax.axvline(x, color=BUDGET, linestyle=":", linewidth=1.4, snap=False, gid="crossing")
    ax.plot([x], [budget_usd], "o", color=BUDGET, markersize=6)
    right_side = x < 0.5 * g.days_in_month
    past = g.actual[-1][1] >= budget_usd
    text = f"{'crossed' if past else 'P50 crosses'} the budget on {_day(day)}"
    ax.annotate(text, (x, top), xytext=(6 if right_side else -6, -4), textcoords="offset points",
                ha="left" if right_side else "right", va="top", fontsize=10, color=BUDGET, weight="bold")


_ID = re.compile(r'\bid="([^"]+)"')


def _inline(svg: str, cid: str, label: str, classes: str) -> str:
    """matplotlib's SVG document as an element for an HTML page: no prolog, no fixed size, an
    accessible name, and every id (and reference to one) prefixed so charts on a page do not collide."""
    body = svg[svg.index("<svg"):]
    ids = set(_ID.findall(body))
    body = _ID.sub(lambda m: f'id="{cid}-{m.group(1)}"', body)
    body = re.sub(r"(url\(#|href=\"#)([^)\"]+)",
                  lambda m: f"{m.group(1)}{cid}-{m.group(2)}" if m.group(2) in ids else m.group(0), body)
    head_end = body.index(">")
    head = re.sub(r'\s(width|height)="[^"]*"', "", body[:head_end])
    return (f'{head} id="{cid}" class="{classes}" role="img" aria-label="{escape(label)}" '
            f'preserveAspectRatio="xMidYMid meet"{body[head_end:]}')

