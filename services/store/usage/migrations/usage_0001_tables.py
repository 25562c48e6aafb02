"""Usage events (the facts) and the sessions and turns folded from them.

Revision ID: usage_0001
Revises: 0001
Create Date: 2026-11-27

Split out of the foundation revision, which created every family's tables at once. ``IF NOT EXISTS``
lets a database migrated before the split (its tables made by the old 0001) take this revision as a
no-op.
"""


from spendgate.core.migration_sql import drop_tables, execute_script

revision = "usage_0001"
down_revision = "0001"
branch_labels = ("usage",)
depends_on = None

UPGRADE = """
-- The facts: one row per usage event, inserted idempotently on event_id.
CREATE TABLE IF NOT EXISTS usage_events (
    event_id             uuid        PRIMARY KEY,
    occurred_at          timestamptz NOT NULL,
    proxy_instance       text        NOT NULL,
    key_id               text        NOT NULL,
    developer            text        NOT NULL,
    team                 text        NOT NULL,
    cost_center          text        NOT NULL,
    session_id           text,
    turn_id              text,
    repo                 text,
    client               text,
    endpoint             text        NOT NULL,
    model_requested      text        NOT NULL,
    model_used           text        NOT NULL,
    route_reason         text        NOT NULL,
    stage                text        NOT NULL,
    status               text        NOT NULL,
    http_status          integer     NOT NULL,
    input_tokens         bigint      NOT NULL,
    cached_tokens        bigint      NOT NULL,
    output_tokens        bigint      NOT NULL,
    reasoning_tokens     bigint      NOT NULL,
    usage_source         text        NOT NULL,
    input_price_micros   bigint      NOT NULL,
    cached_price_micros  bigint      NOT NULL,
    output_price_micros  bigint      NOT NULL,
    price_fallback       boolean     NOT NULL,
    cost_micros          bigint      NOT NULL,
    retry                boolean     NOT NULL,
    latency_ms           integer     NOT NULL,
    ttfb_ms              integer,
    upstream_request_id  text,
    folded_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS usage_events_occurred_at ON usage_events (occurred_at);
CREATE INDEX IF NOT EXISTS usage_events_session ON usage_events (session_id, occurred_at);
CREATE TABLE IF NOT EXISTS sessions (
    session_id        text        PRIMARY KEY,
    key_id            text        NOT NULL,
    developer         text        NOT NULL,
    team              text        NOT NULL,
    cost_center       text        NOT NULL,
    repo              text,
    client            text,
    first_at          timestamptz NOT NULL,
    last_at           timestamptz NOT NULL,
    turns             bigint      NOT NULL DEFAULT 0,
    requests          bigint      NOT NULL DEFAULT 0,
    input_tokens      bigint      NOT NULL DEFAULT 0,
    cached_tokens     bigint      NOT NULL DEFAULT 0,
    output_tokens     bigint      NOT NULL DEFAULT 0,
    reasoning_tokens  bigint      NOT NULL DEFAULT 0,
    cost_micros       bigint      NOT NULL DEFAULT 0,
    retries           bigint      NOT NULL DEFAULT 0,
    retry_cost_micros bigint      NOT NULL DEFAULT 0,
    downgraded        bigint      NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS session_turns (
    session_id  text NOT NULL,
    turn_id     text NOT NULL,
    PRIMARY KEY (session_id, turn_id)
)
"""

TABLES = "session_turns sessions usage_events"


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    drop_tables(TABLES)
