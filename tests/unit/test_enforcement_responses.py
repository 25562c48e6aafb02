"""The Codex-aware pause and retry refusals."""

from __future__ import annotations

from datetime import UTC, date, datetime

from spendgate.domain.enforcement import (
    BalanceKey,
    Decision,
    RetryVerdict,
    StageLevel,
    Standing,
    pause_refusal,
    retry_refusal,
)
from spendgate.domain.periods import PeriodKind

RESET = datetime(2026, 11, 26, 23, 0, tzinfo=UTC)


def paused(model_used: str = "gpt-5.1") -> Decision:
    by = Standing(BalanceKey("team:platform", PeriodKind.DAY, date(2026, 11, 26)), RESET, 44_123_456, 40_000_000,
                  StageLevel.PAUSE, "refuse", "Europe/Berlin")
    return Decision("refuse", StageLevel.PAUSE, "gpt-5.1", model_used, "requested", by, (by.key,))


def test_pause_body_is_openai_error_format_codex_understands() -> None:
    """429 with error.type and error.code usage_limit_reached, resets_at in unix seconds, budget details."""
    r = pause_refusal(paused(), alerted=["slack:platform-leads"])
    assert r.status == 429 and r.headers["content-type"] == "application/json"
    err = r.json()["error"]
    assert (err["type"], err["code"]) == ("usage_limit_reached", "usage_limit_reached")
    assert err["resets_at"] == int(RESET.timestamp()) == 1795734000
    assert isinstance(err["resets_at"], int)
    assert (err["scope"], err["period"], err["period_start"]) == ("team:platform", "day", "2026-11-26")
    assert (err["spent_usd"], err["budget_usd"]) == ("44.123456", "40.000000")
    assert err["resets_at_iso"] == "2026-11-26T23:00:00Z"
    assert err["alerted"] == ["slack:platform-leads"]
    assert "team platform's daily budget is used up ($44.12 of $40.00 spent)" in err["message"]
    assert "2026-11-27 00:00 Europe/Berlin" in err["message"]


def test_pause_promo_header_is_one_ascii_line_for_codex() -> None:
    """x-codex-promo-message says whose budget, spent of budget and who was alerted, as one ASCII line."""
    r = pause_refusal(paused(), alerted=["slack:platform-leads", "Zoë"])
    promo = r.headers["x-codex-promo-message"]
    assert promo == ("Team platform's daily budget is used up: $44.12 of $40.00 spent "
                     "(alerted: slack:platform-leads, Zo?)")
    assert not promo.endswith(".")  # Codex appends ", or try again at <time>."
    assert r.headers["x-should-retry"] == "false"


def test_pause_without_alert_routes_names_the_admin() -> None:
    """With no known alert recipients the message points at the spendgate admin."""
    assert "alerted: your spendgate admin" in pause_refusal(paused()).headers["x-codex-promo-message"]


def test_retry_refusal_has_its_own_code_and_names_the_command() -> None:
    """A retry loop is refused with 429, type usage_limit_reached and code retry_budget_exhausted."""
    v = RetryVerdict("tool_call", 3, 3, "exec_command", "ls /nope")
    now = datetime(2026, 11, 26, 16, 0, tzinfo=UTC)
    r = retry_refusal(v, now=now)
    err = r.json()["error"]
    assert r.status == 429
    assert (err["type"], err["code"]) == ("usage_limit_reached", "retry_budget_exhausted")
    assert (err["command"], err["retries"], err["cap"], err["resets_at"]) == ("ls /nope", 3, 3, int(now.timestamp()))
    assert "`ls /nope` (exec_command) failed 4 times in a row" in err["message"]
    assert "retry loop" in r.headers["x-codex-promo-message"] and "ls /nope" in r.headers["x-codex-promo-message"]
