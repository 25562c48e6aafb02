"""Names shared across services: topics, CloudEvents types, consumer groups, notification channels."""

from __future__ import annotations

TOPIC_USAGE = "spendgate.usage.v1"
TOPIC_BUDGET = "spendgate.budget.v1"
TOPIC_FORECAST = "spendgate.forecast.v1"
TOPIC_ALERT = "spendgate.alert.v1"
ALL_TOPICS = (TOPIC_USAGE, TOPIC_BUDGET, TOPIC_FORECAST, TOPIC_ALERT)
TOPIC_EVAL = "spendgate.eval.v1"
"""External evaluation scores per turn (an org's own eval system publishes; the ledger's eval consumer reads)."""

TYPE_USAGE_RECORDED = "io.spendgate.usage.recorded.v1"
TYPE_THRESHOLD_CROSSED = "io.spendgate.budget.threshold_crossed.v1"
TYPE_BUDGET_CHANGED = "io.spendgate.budget.changed.v1"
TYPE_RETRY_LOOP_DETECTED = "io.spendgate.budget.retry_loop_detected.v1"
TYPE_FORECAST_UPDATED = "io.spendgate.forecast.updated.v1"
TYPE_FORECAST_OVERRUN = "io.spendgate.forecast.overrun.v1"
TYPE_ALERT_DELIVERY = "io.spendgate.alert.delivery.v1"
TYPE_RECONCILIATION_GAP = "io.spendgate.budget.reconciliation_gap.v1"
"""Published on TOPIC_BUDGET, beside the other spend alerts the alerter turns into notifications."""
TYPE_POLICY_ROLLED_BACK = "io.spendgate.policy.rolled_back.v1"
"""The guard rolled a policy version back (docs/policy.md, "The guard"); on TOPIC_BUDGET, for the alerter."""

GROUP_LEDGER = "spendgate-ledger"
GROUP_ALERTER = "spendgate-alerter"
GROUP_FORECASTER = "spendgate-forecaster"
GROUP_EVALS = "spendgate-evals"

PG_NOTIFY_BUS = "spendgate_bus"
PG_NOTIFY_CONFIG = "spendgate_config"
PG_NOTIFY_PENDING = "spendgate_pending"
"""Postgres NOTIFY channels: new bus records; key, budget or policy changes; a proxy's unfolded spend."""
