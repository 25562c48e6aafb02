"""The burndown chart's geometry and drawing: the fan opens at today's actual spend, on one time axis."""

from __future__ import annotations

import re
from datetime import date, timedelta

import numpy as np
import pytest

from spendgate.forecaster.chart import PARTS, burndown, burndown_geometry, chart_id
from spendgate.forecaster.model import ScopeSeries, forecast

AS_OF = date(2026, 3, 15)
START = AS_OF - timedelta(days=120)


def series(*, share: float = 1.0, budget: int | None = 2_000_000_000, usd_per_day: float = 60.0,
           as_of: date = AS_OF) -> ScopeSeries:
    start = as_of - timedelta(days=120)
    rng = np.random.default_rng(7)
    daily = np.rint(usd_per_day * 1e6 * rng.lognormal(0, 0.2, 121)).astype(np.int64)
    daily[-1] = int(daily[-1] * share)
    return ScopeSeries(start, daily, as_of, share, budget)


@pytest.mark.parametrize("share", [0.25, 1.0])
def test_the_fan_opens_where_the_actual_line_ends(share: float) -> None:
    """Actual ends at the elapsed share of the as-of day; P10, P50 and P90 all start there, end at month end."""
    s = series(share=share)
    fc = forecast(s, seed=1, paths=200)
    g = burndown_geometry(s, fc)
    now_x, now_usd = g.actual[-1]
    assert g.actual[0] == (0.0, 0.0) and now_x == pytest.approx(AS_OF.day - 1 + share)
    assert now_usd == pytest.approx(fc.actual_micros / 1e6)
    assert g.fan_x[0] == now_x and g.p10[0] == g.p50[0] == g.p90[0] == now_usd
    first_band_day = AS_OF if share < 1 else AS_OF + timedelta(days=1)
    assert g.fan_x[1] == first_band_day.day  # the end of the first unfinished day
    assert g.fan_x[-1] == g.days_in_month == 31 and g.p50[-1] == pytest.approx(fc.p50_micros / 1e6)
    assert all(lo <= mid <= hi for lo, mid, hi in zip(g.p10, g.p50, g.p90, strict=True))


def test_the_crossing_is_marked_within_the_day_p50_crosses() -> None:
    """The marker sits where the P50 path reaches the budget, inside the day the forecast names."""
    s = series(budget=1_300_000_000)
    fc = forecast(s, seed=1, paths=200)
    assert fc.p50_crosses_on is not None and fc.p50_crosses_on > AS_OF
    g = burndown_geometry(s, fc)
    assert g.crossing_x is not None
    assert fc.p50_crosses_on.day - 1 < g.crossing_x <= fc.p50_crosses_on.day
    assert np.interp(g.crossing_x, g.fan_x, g.p50) == pytest.approx(1300.0)


def test_a_budget_already_spent_is_marked_on_the_actual_line() -> None:
    """When actual spend passed the budget, the marker is on the actual line, on the day it did."""
    s = series(budget=500_000_000)
    fc = forecast(s, seed=1, paths=200)
    g = burndown_geometry(s, fc)
    assert fc.p50_crosses_on is not None and fc.p50_crosses_on <= AS_OF and g.crossing_x is not None
    assert fc.p50_crosses_on.day - 1 < g.crossing_x <= fc.p50_crosses_on.day
    xs, ys = zip(*g.actual, strict=True)
    assert np.interp(g.crossing_x, xs, ys) == pytest.approx(500.0)


def test_without_a_budget_or_after_month_end_there_is_nothing_to_cross_or_fan() -> None:
    """No budget: no budget line or crossing; the month's last day closed: the actual line alone."""
    s = series(budget=None)
    g = burndown_geometry(s, forecast(s, seed=1, paths=100))
    assert g.budget_usd is None and g.crossing_x is None and g.fan_x
    last = series(as_of=date(2026, 3, 31))
    g = burndown_geometry(last, forecast(last, seed=1, paths=100))
    assert g.fan_x == () and g.actual[-1][0] == 31


def test_the_svg_names_its_parts_under_the_charts_own_id() -> None:
    """Wide and narrow SVGs carry every part's id once, prefixed per chart; no id is left unprefixed."""
    s = series(budget=1_300_000_000)
    fc = forecast(s, seed=1, paths=100)
    chart = burndown("team:a b", "team a b", s, fc, formats=("svg",))
    assert chart.png is None and chart.svg is not None
    cid = chart_id("team:a b")
    assert re.fullmatch(r"chart-team-a-b-[0-9a-f]{8}", cid) and cid != chart_id("team:a-b")
    ids = re.findall(r'\bid="([^"]+)"', chart.svg)
    assert len(ids) == len(set(ids)) and all(i.startswith(cid) for i in ids)
    for prefix in (cid, f"{cid}-narrow"):
        assert all(f"{prefix}-{part}" in ids for part in PARTS)
    assert "<?xml" not in chart.svg and 'class="chart wide"' in chart.svg and 'class="chart narrow"' in chart.svg
    assert "P50 crosses the budget on Mar" in chart.svg and "budget $1,300.00" in chart.svg
    png = burndown("team:a b", "team a b", s, fc, formats=("png",)).png
    assert png is not None and png.startswith(b"\x89PNG")
