"""Enforcement: the not-yet-folded events behind each proxy's published pending sum.

Revision ID: enforcement_0002
Revises: balances_0002
Create Date: 2026-11-27

A proxy's pending sum holds the real cost of its completed requests until the ledger folds their events.
Between the fold and the proxy's next publication a peer would count them twice (in the balance and in
the sum); with each such event listed here, a peer subtracts those already in ``usage_events`` in the
same snapshot in which it reads the balances. ``IF NOT EXISTS``: a database whose version table was
reset to an older head (the family-split test) takes this as a no-op.
"""

from alembic import op

from spendgate.core.migration_sql import execute_script

revision = "enforcement_0002"
down_revision = "balances_0002"
branch_labels = None
depends_on = None

UPGRADE = """
-- One row per proxy instance and unsettled event: its cost and the balances it counts on
-- (keys: [[scope, period, period_start], ...]), written in the transaction that publishes the sums.
CREATE TABLE IF NOT EXISTS enforcement_unsettled (
    instance     text   NOT NULL,
    event_id     uuid   NOT NULL,
    keys         jsonb  NOT NULL,
    cost_micros  bigint NOT NULL,
    PRIMARY KEY (instance, event_id)
)
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS enforcement_unsettled")
