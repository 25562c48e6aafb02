"""Budgets, raises and their audit trail.

Revision ID: budgets_0001
Revises: 0001
Create Date: 2026-11-27

Split out of the foundation revision, which created every family's tables at once. ``IF NOT EXISTS``
lets a database migrated before the split (its tables made by the old 0001) take this revision as a
no-op.
"""

from alembic import op

from spendgate.core.migration_sql import drop_tables, execute_script

revision = "budgets_0001"
down_revision = "0001"
branch_labels = ("budgets",)
depends_on = None

UPGRADE = """
-- Budgets per scope ('key:<id>', 'developer:<name>', 'team:<name>', 'org').
CREATE SEQUENCE IF NOT EXISTS config_version;
CREATE TABLE IF NOT EXISTS budgets (
    scope           text        PRIMARY KEY,
    daily_micros    bigint      CHECK (daily_micros IS NULL OR daily_micros > 0),
    monthly_micros  bigint      CHECK (monthly_micros IS NULL OR monthly_micros > 0),
    timezone        text        NOT NULL DEFAULT 'UTC',
    thresholds_pct  integer[]   NOT NULL DEFAULT '{80,95,110}',
    at_pause        text        NOT NULL DEFAULT 'refuse' CHECK (at_pause IN ('refuse', 'cheapest')),
    retry_cap       integer,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    version         bigint      NOT NULL DEFAULT nextval('config_version')
);
CREATE TABLE IF NOT EXISTS budget_raises (
    raise_id      uuid        PRIMARY KEY,
    scope         text        NOT NULL,
    amount_micros bigint      NOT NULL CHECK (amount_micros > 0),
    until         timestamptz NOT NULL,
    reason        text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    version       bigint      NOT NULL DEFAULT nextval('config_version')
);
CREATE TABLE IF NOT EXISTS budget_audit (
    change_id   uuid        PRIMARY KEY,
    scope       text        NOT NULL,
    action      text        NOT NULL,
    detail      jsonb       NOT NULL,
    actor       text        NOT NULL,
    changed_at  timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
)
"""

TABLES = "budget_audit budget_raises budgets"


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    drop_tables(TABLES)
    op.execute("DROP SEQUENCE IF EXISTS config_version")
