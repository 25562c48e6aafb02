"""Usage events record why spendgate refused a request.

Revision ID: ledger_0001
Revises: usage_0001
Create Date: 2026-11-26
"""

from alembic import op

revision = "ledger_0001"
down_revision = "usage_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE usage_events ADD COLUMN refusal_reason text")


def downgrade() -> None:
    op.execute("ALTER TABLE usage_events DROP COLUMN refusal_reason")
