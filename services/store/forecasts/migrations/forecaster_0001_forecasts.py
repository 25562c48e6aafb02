"""Forecaster: forecasts per scope and as-of day, the overrun-once table, the nightly report log.

Revision ID: forecaster_0001
Revises: 0001
Create Date: 2026-11-26
"""


from spendgate.core.migration_sql import drop_tables, execute_script

revision = "forecaster_0001"
down_revision = "0001"
branch_labels = ("forecaster",)
depends_on = None

UPGRADE = """
-- The latest forecast of each scope for each as-of day (an hourly run replaces the day's row with a
-- new forecast_id). Money in micro-dollars; band holds the cumulative P10/P50/P90 to month-end.
-- Rows with published_at NULL are the outbox to spendgate.forecast.v1.
CREATE TABLE forecasts (
    scope           text        NOT NULL,
    as_of           date        NOT NULL,
    forecast_id     uuid        NOT NULL UNIQUE,
    month           date        NOT NULL,
    computed_at     timestamptz NOT NULL,
    actual_micros   bigint      NOT NULL,
    p10_micros      bigint      NOT NULL,
    p50_micros      bigint      NOT NULL,
    p90_micros      bigint      NOT NULL,
    budget_micros   bigint,
    p10_crosses_on  date,
    p50_crosses_on  date,
    p90_crosses_on  date,
    model           text        NOT NULL,
    inputs          jsonb       NOT NULL,
    band            jsonb       NOT NULL,
    published_at    timestamptz,
    PRIMARY KEY (scope, as_of)
);
CREATE INDEX forecasts_month ON forecasts (month, scope);
CREATE INDEX forecasts_unpublished ON forecasts (computed_at) WHERE published_at IS NULL;

-- P50 first crossed the monthly budget: once per scope and month, whatever reruns or restarts.
CREATE TABLE forecast_overruns (
    scope           text        NOT NULL,
    month           date        NOT NULL,
    overrun_id      uuid        NOT NULL UNIQUE,
    as_of           date        NOT NULL,
    p10_micros      bigint      NOT NULL,
    p50_micros      bigint      NOT NULL,
    p90_micros      bigint      NOT NULL,
    budget_micros   bigint      NOT NULL,
    p50_crosses_on  date,
    created_at      timestamptz NOT NULL,
    published_at    timestamptz,
    PRIMARY KEY (scope, month)
);
CREATE INDEX forecast_overruns_unpublished ON forecast_overruns (created_at) WHERE published_at IS NULL;

-- One nightly report per day, claimed before sending so two workers never both send it.
CREATE TABLE forecast_reports (
    report_date  date        PRIMARY KEY,
    claimed_at   timestamptz NOT NULL,
    sent_at      timestamptz
)
"""

TABLES = "forecast_reports forecast_overruns forecasts"


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    drop_tables(TABLES)
