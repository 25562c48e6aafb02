"""Builders of realistic events for tests (one place, so every test speaks the same schema)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from spendgate.domain.events import (
    AlertDelivery,
    BudgetChanged,
    ForecastOverrun,
    ForecastUpdated,
    PolicyRolledBack,
    ReconciliationGap,
    RetryLoopDetected,
    ThresholdCrossed,
    UnitPrices,
    UsageRecorded,
)
from spendgate.domain.ids import uuid7
from spendgate.domain.pricing import PriceTable, cost_micros

T0 = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


def usage_event(**overrides: Any) -> UsageRecorded:
    """A priced gpt-5.1 request by alice on team platform; any field can be overridden.

    ``cost_micros`` is computed from the tokens and the model's shipped prices unless given.
    """
    fields: dict[str, Any] = dict(
        event_id=uuid7(), occurred_at=T0, proxy_instance="proxy-1", key_id="k_alice", developer="alice",
        team="platform", cost_center="cc-platform", session_id="019a0000-0000-7000-8000-000000000001",
        turn_id="turn-1", repo="/home/alice/src/api", client="codex_exec", endpoint="/v1/responses",
        model_requested="gpt-5.1", model_used="gpt-5.1", status="ok", http_status=200,
        input_tokens=5200, cached_tokens=4096, output_tokens=40, reasoning_tokens=12,
        usage_source="reported", latency_ms=850, ttfb_ms=120, upstream_request_id="req_abc",
    )
    fields.update(overrides)
    price = PriceTable().lookup(fields["model_used"]).price
    fields.setdefault("prices", UnitPrices(input_micros=price.input_micros,
                                           cached_input_micros=price.cached_input_micros,
                                           output_micros=price.output_micros))
    fields.setdefault("cost_micros", cost_micros(price, input_tokens=fields["input_tokens"],
                                                 cached_tokens=fields["cached_tokens"],
                                                 output_tokens=fields["output_tokens"]))
    return UsageRecorded(**fields)


def examples() -> list[Any]:
    """One example of every event type (also written to schemas/examples/)."""
    return [
        usage_event(event_id="019a4d6e-8f00-7c2a-9b1e-3f5a2c1d0e01"),
        ThresholdCrossed(crossing_id="019a4d6e-8f00-7c2a-9b1e-3f5a2c1d0e02", scope="team:platform", period="day",
                         period_start=date(2026, 11, 2), resets_at=datetime(2026, 11, 3, tzinfo=UTC),
                         threshold_pct=95, stage="downgrade", spent_micros=38_000_000, budget_micros=40_000_000,
                         crossed_at=T0, team="platform", cost_center="cc-platform",
                         trigger_event_id="019a4d6e-8f00-7c2a-9b1e-3f5a2c1d0e01"),
        BudgetChanged(change_id="019a4d6e-8f00-7c2a-9b1e-3f5a2c1d0e03", scope="developer:alice", action="raise",
                      raise_micros=20_000_000, until=datetime(2026, 12, 1, tzinfo=UTC), reason="release week",
                      actor="admin", changed_at=T0),
        RetryLoopDetected(detection_id="019a4d6e-8f00-7c2a-9b1e-3f5a2c1d0e04",
                          session_id="019a0000-0000-7000-8000-000000000001", key_id="k_alice", developer="alice",
                          team="platform", cost_center="cc-platform", tool_name="exec_command",
                          command='{"cmd": "ls /nope"}', retries=3, retry_cost_micros=9_000, detected_at=T0),
        ForecastUpdated(forecast_id="019a4d6e-8f00-7c2a-9b1e-3f5a2c1d0e05", scope="team:platform",
                        month=date(2026, 11, 1), as_of=date(2026, 11, 10), actual_micros=300_000_000,
                        p10_micros=780_000_000, p50_micros=850_000_000, p90_micros=960_000_000,
                        budget_micros=800_000_000, p50_crosses_on=date(2026, 11, 28), model="ucm-weekly",
                        team="platform", cost_center="cc-platform"),
        ForecastOverrun(overrun_id="019a4d6e-8f00-7c2a-9b1e-3f5a2c1d0e06", scope="team:platform",
                        month=date(2026, 11, 1), as_of=date(2026, 11, 10), p10_micros=780_000_000,
                        p50_micros=850_000_000, p90_micros=960_000_000, budget_micros=800_000_000,
                        p50_crosses_on=date(2026, 11, 28), team="platform", cost_center="cc-platform"),
        AlertDelivery(delivery_id="019a4d6e-8f00-7c2a-9b1e-3f5a2c1d0e07",
                      alert_id="019a4d6e-8f00-7c2a-9b1e-3f5a2c1d0e02", kind="downgrade", scope="team:platform",
                      route="platform-em", channel="slack:platform-em", attempt=1, outcome="delivered",
                      http_status=200, attempted_at=T0),
        ReconciliationGap(gap_id="019a4d6e-8f00-7c2a-9b1e-3f5a2c1d0e08", provider="openai", day=date(2026, 11, 9),
                          ledger_micros=41_250_000, provider_micros=58_900_000, gap_micros=17_650_000,
                          capture_ppm=700_340, models=["gpt-5.1", "gpt-5.1-mini"], detected_at=T0),
        PolicyRolledBack(rollback_id="019a4d6e-8f00-7c2a-9b1e-3f5a2c1d0e09",
                         version_id="019a4d6e-8f00-7c2a-9b1e-3f5a2c1d0e0b", approver="oidc:ann",
                         restored_version="019a4d6e-8f00-7c2a-9b1e-3f5a2c1d0e0a",
                         rollback_version="019a4d6e-8f00-7c2a-9b1e-3f5a2c1d0e0c", segment="platform-small",
                         scope="team:platform", baseline_n=412, candidate_n=96, baseline_mean=0.912,
                         candidate_mean=0.781, regression=0.1436, lower=0.092, upper=0.197, tolerance_pct=2.0,
                         reason="guard: version 019a4d6e-8f00-7c2a-9b1e-3f5a2c1d0e0b's routing rule platform-small "
                                "(team:platform) made its turns score 14.4% worse",
                         detected_at=T0),
    ]
