"""Rate limits per scope and the per-minute counts the proxies share.

Revision ID: ratelimits_0001
Revises: 0001
Create Date: 2026-11-27
"""


from spendgate.core.migration_sql import drop_tables, execute_script

revision = "ratelimits_0001"
down_revision = "0001"
branch_labels = ("ratelimits",)
depends_on = None

UPGRADE = """
-- Requests- and tokens-per-minute limits per scope (key:<id>, developer:<name>, team:<name>).
CREATE TABLE IF NOT EXISTS rate_limits (
    scope       text        PRIMARY KEY,
    rpm         bigint      CHECK (rpm IS NULL OR rpm > 0),
    tpm         bigint      CHECK (tpm IS NULL OR tpm > 0),
    actor       text        NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (rpm IS NOT NULL OR tpm IS NOT NULL)
);
-- What each proxy counted per scope and wall-clock minute (minute = epoch seconds / 60), shared so that
-- every proxy adds its peers' use; rows older than two minutes are swept.
CREATE TABLE IF NOT EXISTS rate_limit_counts (
    instance    text        NOT NULL,
    scope       text        NOT NULL,
    minute      bigint      NOT NULL,
    requests    bigint      NOT NULL,
    tokens      bigint      NOT NULL,
    PRIMARY KEY (instance, scope, minute)
);
CREATE INDEX IF NOT EXISTS rate_limit_counts_minute ON rate_limit_counts (minute)
"""

TABLES = "rate_limit_counts rate_limits"


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    drop_tables(TABLES)
