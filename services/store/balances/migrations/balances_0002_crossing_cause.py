"""Threshold crossings record their cause: a usage event, or a budget change.

Revision ID: balances_0002
Revises: enforcement_0001
Create Date: 2026-12-02

A budget lowered below what a scope already spent puts its balances past thresholds with no usage
event to carry the crossing; the ledger records those crossings when it publishes the change, with the
change's id as ``trigger_event_id`` and ``cause = 'budget_change'``. ``IF NOT EXISTS``: a database whose
version table was reset to an older head (the family-split test) takes this as a no-op.
"""

from alembic import op

revision = "balances_0002"
down_revision = "enforcement_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""ALTER TABLE threshold_crossings ADD COLUMN IF NOT EXISTS cause text NOT NULL DEFAULT 'usage'
                  CHECK (cause IN ('usage', 'budget_change'))""")


def downgrade() -> None:
    op.execute("ALTER TABLE threshold_crossings DROP COLUMN IF EXISTS cause")
