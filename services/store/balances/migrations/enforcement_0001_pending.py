"""Enforcement: each proxy's in-flight and not-yet-folded spend per balance, shared with its peers.

Revision ID: enforcement_0001
Revises: balances_0001
Create Date: 2026-11-26
"""

from alembic import op

from spendgate.core.migration_sql import execute_script

revision = "enforcement_0001"
down_revision = "balances_0001"
branch_labels = None
depends_on = None

UPGRADE = """
-- One row per proxy instance and balance with a non-zero pending sum (reserved + unsettled).
-- Peers add each other's rows to the ledger's balances; rows of a proxy that stopped heart-beating
-- (updated_at older than the staleness window) are ignored and swept.
CREATE TABLE enforcement_pending (
    instance        text        NOT NULL,
    scope           text        NOT NULL,
    period          text        NOT NULL CHECK (period IN ('day', 'month')),
    period_start    date        NOT NULL,
    pending_micros  bigint      NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instance, scope, period, period_start)
);
CREATE INDEX enforcement_pending_updated_at ON enforcement_pending (updated_at)
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS enforcement_pending")
