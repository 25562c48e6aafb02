"""Balances of ISO weeks: ``period`` may be ``week`` (its ``period_start`` is the local Monday).

Revision ID: balances_shapes
Revises: enforcement_0002
Create Date: 2026-11-27

The proxies' published pending sums (``enforcement_pending``) carry the same keys, so their check
widens too. ``threshold_crossings.period`` has no check.
"""

from spendgate.core.migration_sql import execute_script

revision = "balances_shapes"
down_revision = "enforcement_0002"
branch_labels = None
depends_on = None

UPGRADE = """
ALTER TABLE balances DROP CONSTRAINT IF EXISTS balances_period_check;
ALTER TABLE balances ADD CONSTRAINT balances_period_check CHECK (period IN ('day', 'week', 'month'));
ALTER TABLE enforcement_pending DROP CONSTRAINT IF EXISTS enforcement_pending_period_check;
ALTER TABLE enforcement_pending ADD CONSTRAINT enforcement_pending_period_check
    CHECK (period IN ('day', 'week', 'month'))
"""

DOWNGRADE = """
DELETE FROM balances WHERE period = 'week';
DELETE FROM enforcement_pending WHERE period = 'week';
ALTER TABLE balances DROP CONSTRAINT IF EXISTS balances_period_check;
ALTER TABLE balances ADD CONSTRAINT balances_period_check CHECK (period IN ('day', 'month'));
ALTER TABLE enforcement_pending DROP CONSTRAINT IF EXISTS enforcement_pending_period_check;
ALTER TABLE enforcement_pending ADD CONSTRAINT enforcement_pending_period_check CHECK (period IN ('day', 'month'))
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
