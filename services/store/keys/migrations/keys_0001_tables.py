"""Virtual keys (only a SHA-256 of each secret is stored).

Revision ID: keys_0001
Revises: 0001
Create Date: 2026-11-27

Split out of the foundation revision, which created every family's tables at once. ``IF NOT EXISTS``
lets a database migrated before the split (its tables made by the old 0001) take this revision as a
no-op.
"""


from spendgate.core.migration_sql import drop_tables, execute_script

revision = "keys_0001"
down_revision = "0001"
branch_labels = ("keys",)
depends_on = None

UPGRADE = """
-- Virtual keys: only a SHA-256 of the secret is stored.
CREATE TABLE IF NOT EXISTS virtual_keys (
    key_id       text        PRIMARY KEY,
    key_hash     bytea       NOT NULL UNIQUE,
    key_prefix   text        NOT NULL,
    developer    text        NOT NULL,
    team         text        NOT NULL,
    cost_center  text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz,
    version      bigint      NOT NULL DEFAULT 0
)
"""

TABLES = "virtual_keys"


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    drop_tables(TABLES)
