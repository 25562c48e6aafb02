"""Reconciliation with the provider's bill: compared lines, gaps (alert outbox), nightly runs.

Revision ID: reconcile_0001
Revises: 0001
Create Date: 2026-11-27
"""

from spendgate.core.migration_sql import drop_tables, execute_script

revision = "reconcile_0001"
down_revision = "0001"
branch_labels = ("reconciliation",)
depends_on = None

UPGRADE = """
-- One row per provider, UTC day, model and upstream ('' until usage events name their upstream): what
-- the ledger counted beside what the provider reports. A rerun of a day replaces its rows. Money in
-- micro-dollars; provider_cost_micros is NULL where the provider's cost report has no such line.
CREATE TABLE reconciliation_lines (
    provider                text        NOT NULL,
    day                     date        NOT NULL,
    model                   text        NOT NULL,
    upstream                text        NOT NULL DEFAULT '',
    ledger_requests         bigint      NOT NULL,
    ledger_input_tokens     bigint      NOT NULL,
    ledger_output_tokens    bigint      NOT NULL,
    ledger_cost_micros      bigint      NOT NULL,
    provider_requests       bigint      NOT NULL,
    provider_input_tokens   bigint      NOT NULL,
    provider_output_tokens  bigint      NOT NULL,
    provider_cost_micros    bigint,
    reconciled_at           timestamptz NOT NULL,
    PRIMARY KEY (provider, day, model, upstream)
);
CREATE INDEX reconciliation_lines_day ON reconciliation_lines (day);

-- A day the provider billed more than the ledger counted, beyond the threshold: once per provider and
-- day, whatever reruns. Rows with published_at NULL are the outbox to spendgate.budget.v1.
CREATE TABLE reconciliation_gaps (
    provider         text        NOT NULL,
    day              date        NOT NULL,
    gap_id           uuid        NOT NULL UNIQUE,
    ledger_micros    bigint      NOT NULL,
    provider_micros  bigint      NOT NULL,
    capture_ppm      bigint,
    models           text[]      NOT NULL,
    detected_at      timestamptz NOT NULL,
    published_at     timestamptz,
    PRIMARY KEY (provider, day)
);
CREATE INDEX reconciliation_gaps_unpublished ON reconciliation_gaps (detected_at) WHERE published_at IS NULL;

-- The nightly run, claimed once per UTC day so two workers never both run it.
CREATE TABLE reconciliation_runs (
    run_date     date        PRIMARY KEY,
    claimed_at   timestamptz NOT NULL,
    finished_at  timestamptz
)
"""

TABLES = "reconciliation_runs reconciliation_gaps reconciliation_lines"


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    drop_tables(TABLES)
