"""Records a consumer could not fold.

Revision ID: deadletters_0001
Revises: 0001
Create Date: 2026-11-27

Split out of the foundation revision, which created every family's tables at once. ``IF NOT EXISTS``
lets a database migrated before the split (its tables made by the old 0001) take this revision as a
no-op.
"""


from spendgate.core.migration_sql import drop_tables, execute_script

revision = "deadletters_0001"
down_revision = "0001"
branch_labels = ("deadletters",)
depends_on = None

UPGRADE = """
CREATE TABLE IF NOT EXISTS dead_letters (
    dead_letter_id bigserial   PRIMARY KEY,
    consumer       text        NOT NULL,
    topic          text        NOT NULL,
    partition      integer     NOT NULL,
    "offset"       bigint      NOT NULL,
    reason         text        NOT NULL,
    payload        bytea       NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (consumer, topic, partition, "offset")
)
"""

TABLES = "dead_letters"


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    drop_tables(TABLES)
