"""The forecaster's pure parts around the model: as-of days, pooled weekday shape, the backtest and
the report's rendering."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np

from spendgate.forecaster.backtest import backtest, pinball, run_rate
from spendgate.forecaster.chart import Chart
from spendgate.forecaster.engine import ScopeForecast, as_of_for, seed_for
from spendgate.forecaster.model import ScopeSeries, forecast
from spendgate.forecaster.render import report_html, report_text
from spendgate.forecaster.report import DeveloperDriver, Report, ScopeSection, SessionDriver, report_order
from spendgate.forecaster.series import ForecastScope, pooled_dow

SHAPE = np.array([1.0, 1.1, 1.1, 1.05, 0.9, 0.25, 0.2])


def weekly(start: date, days: int, seed: int = 0) -> np.ndarray:
    dows = (start.weekday() + np.arange(days)) % 7
    usd = 100 * SHAPE[dows] * np.random.default_rng(seed).lognormal(0, 0.2, days)
    return np.asarray(np.rint(usd * 1e6), dtype=np.int64)


def test_as_of_is_the_local_day_and_a_run_at_midnight_closes_the_previous_one() -> None:
    """Runs map to the scope's local day; at local midnight the day that just ended is complete."""
    assert as_of_for(datetime(2026, 3, 2, 5, tzinfo=UTC), "America/New_York") == (date(2026, 3, 1), 1.0)
    assert as_of_for(datetime(2026, 3, 2, 17, tzinfo=UTC), "America/New_York") == (date(2026, 3, 2), 0.5)
    day, share = as_of_for(datetime(2026, 3, 8, 16, tzinfo=UTC), "America/New_York")  # a 23-hour day
    assert day == date(2026, 3, 8) and abs(share - 11 / 23) < 1e-9
    assert seed_for("team:a", day, share) == seed_for("team:a", day, share) != seed_for("team:b", day, share)


def test_pooled_weekday_shape_is_recovered_from_whole_weeks() -> None:
    """The organisation's Monday..Sunday factors average 1 and keep the weekend dip; too little is None."""
    start = date(2026, 1, 7)  # a Wednesday
    factors = pooled_dow(weekly(start, 60), start)
    assert factors is not None and abs(float(factors.mean()) - 1) < 1e-9
    expected = SHAPE / SHAPE.mean()
    assert np.allclose(factors, expected, atol=0.2) and factors[5:].max() < 0.5 * factors[:5].min()
    assert pooled_dow(weekly(start, 10), start) is None
    assert pooled_dow(np.zeros(60, dtype=np.int64), start) is None


def test_backtest_scores_forecast_and_run_rate_on_the_same_origins() -> None:
    """Coverage, pinball and day-10 error come out for both; the weekly forecast beats the run-rate."""
    start = date(2025, 1, 1)
    m = backtest(start, weekly(start, 200, seed=3), paths=200, every_nth_origin=3)
    assert m.months == 4 and m.origins == sum(len(range(1, n, 3)) for n in (31, 30, 31, 31))
    assert 60 <= m.coverage_pct <= 100
    assert m.pinball_mean_pct < m.runrate_pinball_mean_pct
    assert m.models == {"dow-bootstrap": m.origins}
    assert abs(pinball(10, 8, 0.9) - 1.8) < 1e-9 and abs(pinball(10, 12, 0.9) - 0.2) < 1e-9
    assert run_rate(100, 10, 30) == 300


def test_backtest_reports_the_signed_bias_of_the_day_10_p50() -> None:
    """On spend growing half again every month, the run-rate made on day 10 is too low: its bias is negative,
    by about as much as its error; the bias is never larger than the error."""
    start = date(2025, 1, 1)
    growth = np.exp(np.log(1.5) / 30 * np.arange(200))
    m = backtest(start, np.asarray(weekly(start, 200, seed=5) * growth, dtype=np.int64), paths=200,
                 every_nth_origin=9)
    assert -m.runrate_ape_day10_pct <= m.runrate_bias_day10_pct < -5
    assert abs(m.bias_day10_pct) <= m.ape_day10_pct
    flat = backtest(start, weekly(start, 200, seed=5), paths=200, every_nth_origin=9)
    assert abs(flat.runrate_bias_day10_pct) < 5 < abs(m.runrate_bias_day10_pct)


def _section(scope: str, budget: int, seed: int) -> ScopeSection:
    start, as_of = date(2025, 11, 1), date(2026, 3, 10)
    series = ScopeSeries(start, weekly(start, (as_of - start).days + 1, seed), as_of, budget_micros=budget)
    fc = forecast(series, seed=seed, paths=200)
    result = ScopeForecast(ForecastScope(scope, budget, "UTC"), series, fc)
    chart = Chart(png=b"png of " + scope.encode(), svg=f"<svg class='chart wide'>{seed}</svg>")
    if not scope.startswith("team:"):
        return ScopeSection(result, chart)
    return ScopeSection(result, chart, [DeveloperDriver("dev<1>", 300_000_000, 100_000_000)],
                        [SessionDriver("s-1", "dev<1>", None, 42_000_000, 7)])


def test_report_renders_scopes_grouped_teams_by_risk_first_with_escaped_names() -> None:
    """HTML and text list teams by risk (with drivers), then the org, developers and keys; names are escaped."""
    risky, calm = _section("team:<core>", 1_500_000_000, 1), _section("team:web", 9_000_000_000, 2)
    org, dev = _section("org", 20_000_000_000, 3), _section("developer:alice", 1_000_000_000, 4)
    sections = sorted([dev, calm, org, risky], key=report_order)
    assert sections == [risky, calm, org, dev]
    report = Report(datetime(2026, 3, 11, 6, tzinfo=UTC), date(2026, 3, 1), sections)
    html = report_html(report)
    assert "<core>" not in html and "&lt;core&gt;" in html and "dev&lt;1&gt;" in html
    headings = ["Teams by risk", "team &lt;core&gt;", "team web", "The organisation", "the org",
                "Developers by risk", "developer alice"]
    positions = [html.index(f">{h}</h") for h in headings]
    assert positions == sorted(positions)
    assert html.count("<svg class='chart wide'>") == 4 and "class='risk'" in html
    assert html.count("Developers driving the change") == 2  # teams only
    mail = report_html(report, {s.scope: f"cid:{s.name}" for s in sections})
    assert "<svg" not in mail and "src='cid:alice'" in mail and "width='1050'" in mail
    text = report_text(report)
    assert "Teams by risk" in text and "team web" in text and "s-1 dev<1> -: $42.00 in 7 requests" in text
    assert text.index("Teams by risk") < text.index("The organisation") < text.index("Developers by risk")
    assert risky.risk > 1 > calm.risk
    assert (risky.result.forecast.as_of + timedelta(days=1)).day == 11



def test_cost_centers_and_per_model_budgets_have_a_place_in_the_report() -> None:
    """A cost center is grouped as one, after the org; a per-model budget under its scope's kind, named with its
    model: none of them falls out of the report."""
    cc, flagship = _section("cost_center:cc-eng", 9_000_000_000, 5), _section("org|model:gpt-5.1", 900_000_000, 6)
    org = _section("org", 20_000_000_000, 3)
    assert (cc.kind, cc.name, flagship.kind, flagship.name) == ("cost_center", "cc-eng", "org", "org on gpt-5.1")
    report = Report(datetime(2026, 3, 11, 6, tzinfo=UTC), date(2026, 3, 1), sorted([cc, flagship, org],
                                                                                  key=report_order))
    assert [(kind, {s.scope for s in found}) for kind, _, found in report.groups()] == [
        ("org", {"org", "org|model:gpt-5.1"}), ("cost_center", {"cost_center:cc-eng"})]
