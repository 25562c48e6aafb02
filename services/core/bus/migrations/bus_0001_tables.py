"""The embedded bus's log, partitions and group offsets, and consumers' stored positions.

Revision ID: bus_0001
Revises: 0001
Create Date: 2026-11-27

Split out of the foundation revision, which created every family's tables at once. ``IF NOT EXISTS``
lets a database migrated before the split (its tables made by the old 0001) take this revision as a
no-op.
"""


from spendgate.core.migration_sql import drop_tables, execute_script

revision = "bus_0001"
down_revision = "0001"
branch_labels = ("bus",)
depends_on = None

UPGRADE = """
-- The embedded bus: one durable log per topic partition, offsets assigned under a row lock so they
-- become visible in order; per-group committed offsets. Group membership and partition ownership
-- are session advisory locks, so a member that dies releases its partitions at once.
CREATE TABLE IF NOT EXISTS bus_partitions (
    topic        text    NOT NULL,
    partition    integer NOT NULL,
    next_offset  bigint  NOT NULL DEFAULT 0,
    PRIMARY KEY (topic, partition)
);
CREATE TABLE IF NOT EXISTS bus_log (
    topic        text        NOT NULL,
    partition    integer     NOT NULL,
    "offset"     bigint      NOT NULL,
    key          text,
    value        bytea       NOT NULL,
    published_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition, "offset")
);
CREATE TABLE IF NOT EXISTS bus_group_offsets (
    group_id     text    NOT NULL,
    topic        text    NOT NULL,
    partition    integer NOT NULL,
    next_offset  bigint  NOT NULL,
    PRIMARY KEY (group_id, topic, partition)
);
-- Consumer positions stored atomically with the results (exactly-once folding).
CREATE TABLE IF NOT EXISTS consumer_positions (
    consumer     text    NOT NULL,
    topic        text    NOT NULL,
    partition    integer NOT NULL,
    next_offset  bigint  NOT NULL,
    PRIMARY KEY (consumer, topic, partition)
)
"""

TABLES = "consumer_positions bus_group_offsets bus_log bus_partitions"


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    drop_tables(TABLES)
