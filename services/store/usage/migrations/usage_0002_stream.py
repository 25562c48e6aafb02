"""Usage events record whether the client asked for a streamed answer.

Revision ID: usage_0002
Revises: ledger_0001
Create Date: 2026-11-27

Nullable: events recorded before this revision do not say.
"""

from alembic import op

revision = "usage_0002"
down_revision = "ledger_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE usage_events ADD COLUMN IF NOT EXISTS stream boolean")


def downgrade() -> None:
    op.execute("ALTER TABLE usage_events DROP COLUMN stream")
