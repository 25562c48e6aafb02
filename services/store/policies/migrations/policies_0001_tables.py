"""Signed policy versions: every version of the policy, the newest one active.

Revision ID: policies_0001
Revises: 0001
Create Date: 2026-11-27
"""


from spendgate.core.migration_sql import drop_tables, execute_script

revision = "policies_0001"
down_revision = "0001"
branch_labels = ("policies",)
depends_on = None

UPGRADE = """
-- One row per version; rows are only ever added (a rollback is a new version), and the newest (highest
-- seq) is the active one. signature is Ed25519 over the canonical bytes of the other fields but seq
-- (spendgate.domain.policy_versions.signed_bytes); key_id names the key that made it.
CREATE TABLE IF NOT EXISTS policy_versions (
    seq         bigserial   PRIMARY KEY,
    version_id  text        NOT NULL UNIQUE,
    parent      text,
    action      text        NOT NULL CHECK (action IN ('apply', 'rollback')),
    source      text,
    approver    text        NOT NULL,
    reason      text        NOT NULL,
    created_at  timestamptz NOT NULL,
    document    text        NOT NULL,
    key_id      text        NOT NULL,
    signature   text        NOT NULL
)
"""

TABLES = "policy_versions"


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    drop_tables(TABLES)
