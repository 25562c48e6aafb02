"""Foundation: the root every table family's branch grows from.

Revision ID: 0001
Revises:
Create Date: 2026-11-26

It once created every table at once; the tables now come from each family's own first revision,
beside the store module that owns them (``spendgate.store.<family>.migrations``,
``spendgate.core.bus.migrations``). Those revisions use ``IF NOT EXISTS``, so a database migrated
before the split keeps its tables and data.
"""

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Nothing: each family's branch creates its own tables."""


def downgrade() -> None:
    """Nothing: each family's branch drops its own tables."""
