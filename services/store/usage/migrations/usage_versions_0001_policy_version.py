"""Usage events record the policy version they were decided under and the routing rule that changed
their model.

Revision ID: usage_versions_0001
Revises: usage_pool_0001
Create Date: 2026-11-27

Both null for events stored before this revision, before the first ``policy apply``, and (the rule)
for requests no routing rule moved.
"""

from alembic import op

revision = "usage_versions_0001"
down_revision = "outcomes_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE usage_events ADD COLUMN IF NOT EXISTS policy_version text, "
               "ADD COLUMN IF NOT EXISTS routing_rule text")


def downgrade() -> None:
    op.execute("ALTER TABLE usage_events DROP COLUMN policy_version, DROP COLUMN routing_rule")
