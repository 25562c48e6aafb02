"""Usage events record which configured upstream answered (the upstream pool), for reconciliation per
upstream key.

Revision ID: usage_pool_0001
Revises: usage_0005
Create Date: 2026-11-27

Null for events stored before this revision and for requests that reached no upstream.
"""

from alembic import op

revision = "usage_pool_0001"
down_revision = "usage_0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE usage_events ADD COLUMN IF NOT EXISTS upstream text")


def downgrade() -> None:
    op.execute("ALTER TABLE usage_events DROP COLUMN upstream")
