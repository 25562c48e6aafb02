"""Usage events record whether the proxy estimated them from a spooled intent after a crash.

Revision ID: usage_0003
Revises: usage_0002
Create Date: 2026-11-27

``UsageRecorded.intent_estimate`` was decoded and folded but not stored, so a report could not tell a
request cut off by a crash (usage estimated from its size) from an ordinary estimate. Not null, default
false: events stored before this revision were not intent estimates as far as anyone can tell now.
"""

from alembic import op

revision = "usage_0003"
down_revision = "usage_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE usage_events ADD COLUMN IF NOT EXISTS intent_estimate boolean NOT NULL DEFAULT false")


def downgrade() -> None:
    op.execute("ALTER TABLE usage_events DROP COLUMN intent_estimate")
