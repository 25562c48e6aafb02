"""An index on usage events by team and time, for the console's team page (issue 14).

Revision ID: usage_0006
Revises: usage_pool_0001
Create Date: 2026-11-28

A team's page reads the chargeback of one team over a period; without this index that is a scan of every
team's events in the period (886 ms at 1M events, 300,000 of them in the month, in
benchmarks/console_pages.py). The developer pages already have ``usage_events_developer_session``.
Building it takes a write lock on usage_events for the build (seconds per million events).
"""

from alembic import op

revision = "usage_0006"
down_revision = "usage_versions_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX IF NOT EXISTS usage_events_team ON usage_events (team, occurred_at)")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS usage_events_team")
