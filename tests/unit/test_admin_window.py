"""Reporting windows and filters: inclusive local days, defaults, and refusals with clear messages."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from spendgate.admin.window import Filters, Window, WindowError, group_column, parse_date

NOW = datetime(2026, 11, 26, 15, tzinfo=UTC)


def test_to_is_inclusive_and_days_are_local() -> None:
    """November in Berlin runs from Oct 31 23:00 UTC to Nov 30 23:00 UTC."""
    w = Window.of(date(2026, 11, 1), date(2026, 11, 30), tz="Europe/Berlin", now=NOW)
    assert (w.starts_at, w.ends_at) == (datetime(2026, 10, 31, 23, tzinfo=UTC), datetime(2026, 11, 30, 23, tzinfo=UTC))


def test_the_default_window_is_this_whole_month() -> None:
    """Without dates the window is the current month, first day to last day."""
    w = Window.of(None, None, tz="UTC", now=NOW)
    assert (w.from_date, w.to_date) == (date(2026, 11, 1), date(2026, 11, 30))
    dec = Window.of(None, None, tz="UTC", now=datetime(2026, 12, 31, 23, tzinfo=UTC))
    assert (dec.from_date, dec.to_date) == (date(2026, 12, 1), date(2026, 12, 31))


def test_a_backwards_window_and_bad_inputs_are_refused() -> None:
    """to before from, unknown groupings, non-dates and far-off years each raise a WindowError that says so."""
    with pytest.raises(WindowError, match="before"):
        Window.of(date(2026, 11, 2), date(2026, 11, 1), tz="UTC", now=NOW)
    with pytest.raises(WindowError, match="cannot group by"):
        group_column("planet")
    with pytest.raises(WindowError, match="must be a date"):
        parse_date("", what="from")
    with pytest.raises(WindowError, match="between 1970 and 2999"):
        parse_date("9999-12-31", what="to")
    assert parse_date(None, what="from") is None


def test_filters_become_numbered_parameters_never_inlined_text() -> None:
    """Each filter is a bound parameter after the two window bounds; values never enter the SQL text."""
    w = Window.of(date(2026, 11, 1), date(2026, 11, 1), tz="UTC", now=NOW)
    where, params = Filters(team="x'; DROP TABLE usage_events; --", repo="api").usage(w).where()
    assert where == "occurred_at >= $1 AND occurred_at < $2 AND team = $3 AND repo = $4"
    assert params[2:] == ["x'; DROP TABLE usage_events; --", "api"]
