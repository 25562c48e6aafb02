"""Balances per scope and period, and the threshold-crossings outbox.

Revision ID: balances_0001
Revises: 0001
Create Date: 2026-11-27

Split out of the foundation revision, which created every family's tables at once. ``IF NOT EXISTS``
lets a database migrated before the split (its tables made by the old 0001) take this revision as a
no-op.
"""

from alembic import op

from spendgate.core.migration_sql import drop_tables, execute_script

revision = "balances_0001"
down_revision = "0001"
branch_labels = ("balances",)
depends_on = None

UPGRADE = """
-- Derived state, all rebuildable from usage_events.
CREATE SEQUENCE IF NOT EXISTS balances_version;
CREATE TABLE IF NOT EXISTS balances (
    scope         text        NOT NULL,
    period        text        NOT NULL CHECK (period IN ('day', 'month')),
    period_start  date        NOT NULL,
    spent_micros  bigint      NOT NULL DEFAULT 0,
    requests      bigint      NOT NULL DEFAULT 0,
    version       bigint      NOT NULL DEFAULT nextval('balances_version'),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, period, period_start)
);
CREATE INDEX IF NOT EXISTS balances_version_idx ON balances (version);
-- Threshold crossings: the ledger's outbox to spendgate.budget.v1, once per scope/period/threshold.
CREATE TABLE IF NOT EXISTS threshold_crossings (
    crossing_id       uuid        PRIMARY KEY,
    scope             text        NOT NULL,
    period            text        NOT NULL,
    period_start      date        NOT NULL,
    threshold_pct     integer     NOT NULL,
    stage             text        NOT NULL,
    spent_micros      bigint      NOT NULL,
    budget_micros     bigint      NOT NULL,
    resets_at         timestamptz NOT NULL,
    crossed_at        timestamptz NOT NULL,
    developer         text,
    team              text,
    cost_center       text,
    trigger_event_id  uuid        NOT NULL,
    published_at      timestamptz,
    UNIQUE (scope, period, period_start, threshold_pct)
);
CREATE INDEX IF NOT EXISTS threshold_crossings_unpublished ON threshold_crossings (crossed_at)
    WHERE published_at IS NULL
"""

TABLES = "threshold_crossings balances"


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    drop_tables(TABLES)
    op.execute("DROP SEQUENCE IF EXISTS balances_version")
