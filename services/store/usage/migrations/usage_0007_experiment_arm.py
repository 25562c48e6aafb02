"""Usage events record the turn's arm in the policy's exploration (issue 13 item 2).

Revision ID: usage_0007
Revises: usage_0006
Create Date: 2026-11-28

``explore``: the turn was chosen at random to run on the next cheaper model; ``control``: it was eligible
and kept its model; null otherwise and for events stored before this revision. Adding a nullable column
with no default rewrites nothing.
"""

from alembic import op

revision = "usage_0007"
down_revision = "usage_0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE usage_events ADD COLUMN IF NOT EXISTS experiment_arm text")


def downgrade() -> None:
    op.execute("ALTER TABLE usage_events DROP COLUMN experiment_arm")
