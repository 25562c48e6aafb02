"""An alert's forecast line reflects the month's spend at the alert, however old the latest forecast is."""

from __future__ import annotations

from datetime import UTC, date, datetime

from spendgate.alerter.forecasts import ForecastView, fresh_forecast
from spendgate.alerter.messages import forecast_fact
from spendgate.domain.periods import PeriodKind, period_containing

NOW = datetime(2026, 12, 11, 0, 0, tzinfo=UTC)  # 10 days into December, 21 left
MONTH = period_containing(PeriodKind.MONTH, NOW, "UTC")


def view(**kw: object) -> ForecastView:
    fields: dict[str, object] = dict(month=date(2026, 12, 1), as_of=date(2026, 12, 10), actual_micros=1_000_000,
                                     p10_micros=2_000_000, p50_micros=3_000_000, p90_micros=4_000_000,
                                     p50_crosses_on=date(2026, 12, 20))
    fields.update(kw)
    return ForecastView(**fields)  # type: ignore[arg-type]


def test_a_forecast_made_after_the_spend_is_quoted_as_is() -> None:
    """Its month-to-date actual covers what was spent: its band and crossing day stand."""
    f = fresh_forecast(view(), spent_micros=1_000_000, month=MONTH, now=NOW)
    assert (f.basis, f.p50_micros, f.p50_crosses_on) == ("forecast", 3_000_000, date(2026, 12, 20))
    assert forecast_fact(f).value == ("month end P50 $3.00 (P10 $2.00 – P90 $4.00), as of 2026-12-10; "
                                      "P50 crosses the budget on 2026-12-20")


def test_a_forecast_that_predates_spend_is_rebased_on_the_spend_now() -> None:
    """Spend now plus what the forecast still expected after its as-of day, pro-rated to the time left."""
    earlier = view(as_of=date(2026, 12, 3))  # 28 days after it, 21 left now: 3/4 of its remainder
    f = fresh_forecast(earlier, spent_micros=5_000_000, month=MONTH, now=NOW)
    assert (f.basis, f.p10_micros, f.p50_micros, f.p90_micros) == ("rebased", 5_750_000, 6_500_000, 7_250_000)
    assert forecast_fact(f).value == ("month end P50 $6.50 (P10 $5.75 – P90 $7.25): the forecast of 2026-12-03 "
                                      "re-based on the $5.00 spent so far this month")


def test_an_empty_or_missing_forecast_gives_the_months_pace() -> None:
    """A forecast made before any spend ("P50 $0.00" with $0.0138 spent), none, or last month's: the month's pace."""
    empty = view(actual_micros=0, p10_micros=0, p50_micros=0, p90_micros=0, p50_crosses_on=None)
    for stale in (empty, None, view(month=date(2026, 11, 1))):
        f = fresh_forecast(stale, spent_micros=13_800, month=MONTH, now=NOW)
        assert (f.basis, f.spent_micros, f.p50_micros) == ("pace", 13_800, 13_800 + 13_800 * 21 // 10)
    text = forecast_fact(fresh_forecast(empty, spent_micros=13_800, month=MONTH, now=NOW)).value
    assert text == ("month end about $0.04 at this month's pace so far ($0.01 spent); "
                    "no forecast includes this spend yet")
    assert "$0.00" not in text


def test_the_pace_of_a_months_first_minutes_is_measured_over_an_hour() -> None:
    """A crossing a minute into the month does not project a minute's spend over the whole month."""
    start = datetime(2026, 12, 1, 0, 1, tzinfo=UTC)
    f = fresh_forecast(None, spent_micros=1_000, month=MONTH, now=start)
    assert f.p50_micros < 1_000 * 31 * 24 + 1_000


def test_a_month_with_no_spend_and_no_forecast_says_so() -> None:
    """An alert delivered after a month turned (a late delivery) does not project $0.00 as a pace."""
    assert forecast_fact(fresh_forecast(None, spent_micros=0, month=MONTH, now=NOW)).value == (
        "nothing spent this month yet, and no forecast of it")
