"""Report rendering: money exact in CSV, rounded to cents in tables, JSON as the API sends it."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import msgspec

from spendgate.admin import render
from spendgate.admin.reports import Chargeback, ChargebackLine

T = datetime(2026, 11, 3, 9, 30, tzinfo=UTC)


def line(group: str | None, cost: int) -> ChargebackLine:
    return ChargebackLine(group=group, developer="alice", team="platform", cost_center="CC-1", repo=None,
                          first_at=T, last_at=T, sessions=1, turns=2, requests=3, refused=0, input_tokens=10,
                          cached_tokens=5, output_tokens=7, reasoning_tokens=1, cost_micros=cost, retries=0,
                          retry_cost_micros=0, downgraded=1, downgrade_saved_micros=4_321)


REPORT = Chargeback(by="session", from_date="2026-11-01", to_date="2026-11-30", timezone="UTC",
                    lines=[line("s1", 1_234_567), line(None, 5)], total=line(None, 1_234_572))


def test_csv_money_is_exact_dollars_and_empty_for_missing_values() -> None:
    """CSV writes $1.234567 as 1.234567 and an absent repo as an empty cell, with a TOTAL row last."""
    rows = list(csv.DictReader(io.StringIO(render.chargeback(REPORT, "csv"))))
    assert [r["group"] for r in rows] == ["s1", "", "TOTAL"]
    assert (rows[0]["cost_usd"], rows[0]["downgrade_saved_usd"], rows[0]["repo"]) == ("1.234567", "0.004321", "")
    assert rows[-1]["cost_usd"] == "1.234572"


def test_tables_round_money_to_cents_and_align_columns() -> None:
    """The table shows $1.23, a dash for missing values, and every row as wide as the header."""
    text = render.chargeback(REPORT, "table")
    lines = text.splitlines()
    assert "$1.23" in lines[2] and lines[3].startswith("-") and lines[-1].startswith("TOTAL")
    assert len({len(x) for x in lines[:2]}) == 1


def test_json_is_the_api_document() -> None:
    """--format json decodes back to the very report."""
    assert msgspec.json.decode(render.chargeback(REPORT, "json"), type=Chargeback) == REPORT
