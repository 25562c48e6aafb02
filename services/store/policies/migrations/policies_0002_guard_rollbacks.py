"""The guard's rollbacks: one row per version it rolled back, the PolicyRolledBack event's outbox.

Revision ID: policies_0002_guard
Revises: policies_0001
Create Date: 2026-11-28
"""


from spendgate.core.migration_sql import drop_tables, execute_script

revision = "policies_0002_guard"
down_revision = "policies_0001"
branch_labels = None
depends_on = None

UPGRADE = """
-- One row per policy version the guard rolled back (version_id unique: a version is rolled back once).
-- event is the PolicyRolledBack event's data (JSON); published_at is set once it is on the bus, so a
-- crash between the two only repeats a publish (the alerter dedupes on the version), never loses one.
CREATE TABLE IF NOT EXISTS policy_rollbacks (
    rollback_id   uuid        PRIMARY KEY,
    version_id    text        NOT NULL UNIQUE,
    event         text        NOT NULL,
    created_at    timestamptz NOT NULL,
    published_at  timestamptz
);
CREATE INDEX IF NOT EXISTS policy_rollbacks_unpublished ON policy_rollbacks (created_at) WHERE published_at IS NULL
"""

TABLES = "policy_rollbacks"


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    drop_tables(TABLES)
