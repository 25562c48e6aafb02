"""Foundation: embedded bus log, usage events, balances, sessions, budgets, crossings outbox, keys.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from alembic import op

from spendgate.core.migrations.sql import drop_tables, execute_script

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

UPGRADE = """
-- The embedded bus: one durable log per topic partition, offsets assigned under a row lock so they
-- become visible in order; per-group committed offsets. Group membership and partition ownership
-- are session advisory locks, so a member that dies releases its partitions at once.
CREATE TABLE bus_partitions (
    topic        text    NOT NULL,
    partition    integer NOT NULL,
    next_offset  bigint  NOT NULL DEFAULT 0,
    PRIMARY KEY (topic, partition)
);
CREATE TABLE bus_log (
    topic        text        NOT NULL,
    partition    integer     NOT NULL,
    "offset"     bigint      NOT NULL,
    key          text,
    value        bytea       NOT NULL,
    published_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition, "offset")
);
CREATE TABLE bus_group_offsets (
    group_id     text    NOT NULL,
    topic        text    NOT NULL,
    partition    integer NOT NULL,
    next_offset  bigint  NOT NULL,
    PRIMARY KEY (group_id, topic, partition)
);

-- Virtual keys: only a SHA-256 of the secret is stored.
CREATE TABLE virtual_keys (
    key_id       text        PRIMARY KEY,
    key_hash     bytea       NOT NULL UNIQUE,
    key_prefix   text        NOT NULL,
    developer    text        NOT NULL,
    team         text        NOT NULL,
    cost_center  text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz,
    version      bigint      NOT NULL DEFAULT 0
);

-- The facts: one row per usage event, inserted idempotently on event_id.
CREATE TABLE usage_events (
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
CREATE INDEX usage_events_occurred_at ON usage_events (occurred_at);
CREATE INDEX usage_events_session ON usage_events (session_id, occurred_at);

-- Derived state, all rebuildable from usage_events.
CREATE SEQUENCE balances_version;
CREATE TABLE balances (
    scope         text        NOT NULL,
    period        text        NOT NULL CHECK (period IN ('day', 'month')),
    period_start  date        NOT NULL,
    spent_micros  bigint      NOT NULL DEFAULT 0,
    requests      bigint      NOT NULL DEFAULT 0,
    version       bigint      NOT NULL DEFAULT nextval('balances_version'),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, period, period_start)
);
CREATE INDEX balances_version_idx ON balances (version);

CREATE TABLE sessions (
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
CREATE TABLE session_turns (
    session_id  text NOT NULL,
    turn_id     text NOT NULL,
    PRIMARY KEY (session_id, turn_id)
);

-- Budgets per scope ('key:<id>', 'developer:<name>', 'team:<name>', 'org').
CREATE SEQUENCE config_version;
CREATE TABLE budgets (
    scope           text        PRIMARY KEY,
    daily_micros    bigint      CHECK (daily_micros IS NULL OR daily_micros > 0),
    monthly_micros  bigint      CHECK (monthly_micros IS NULL OR monthly_micros > 0),
    timezone        text        NOT NULL DEFAULT 'UTC',
    thresholds_pct  integer[]   NOT NULL DEFAULT '{80,95,110}',
    at_pause        text        NOT NULL DEFAULT 'refuse' CHECK (at_pause IN ('refuse', 'cheapest')),
    retry_cap       integer,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    version         bigint      NOT NULL DEFAULT nextval('config_version')
);
CREATE TABLE budget_raises (
    raise_id      uuid        PRIMARY KEY,
    scope         text        NOT NULL,
    amount_micros bigint      NOT NULL CHECK (amount_micros > 0),
    until         timestamptz NOT NULL,
    reason        text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    version       bigint      NOT NULL DEFAULT nextval('config_version')
);
CREATE TABLE budget_audit (
    change_id   uuid        PRIMARY KEY,
    scope       text        NOT NULL,
    action      text        NOT NULL,
    detail      jsonb       NOT NULL,
    actor       text        NOT NULL,
    changed_at  timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);

-- Threshold crossings: the ledger's outbox to spendgate.budget.v1, once per scope/period/threshold.
CREATE TABLE threshold_crossings (
    crossing_id       uuid        PRIMARY KEY,
    scope             text        NOT NULL,
    period            text        NOT NULL,
    period_start      date        NOT NULL,
    threshold_pct     integer     NOT NULL,
    stage             text        NOT NULL,
    spent_micros      bigint      NOT NULL,
    budget_micros     bigint      NOT NULL,
    resets_at         timestamptz NOT NULL,
    crossed_at        timestamptz NOT NULL,
    developer         text,
    team              text,
    cost_center       text,
    trigger_event_id  uuid        NOT NULL,
    published_at      timestamptz,
    UNIQUE (scope, period, period_start, threshold_pct)
);
CREATE INDEX threshold_crossings_unpublished ON threshold_crossings (crossed_at) WHERE published_at IS NULL;

-- Consumer positions stored atomically with the results (exactly-once folding).
CREATE TABLE consumer_positions (
    consumer     text    NOT NULL,
    topic        text    NOT NULL,
    partition    integer NOT NULL,
    next_offset  bigint  NOT NULL,
    PRIMARY KEY (consumer, topic, partition)
);
CREATE TABLE dead_letters (
    dead_letter_id bigserial   PRIMARY KEY,
    consumer       text        NOT NULL,
    topic          text        NOT NULL,
    partition      integer     NOT NULL,
    "offset"       bigint      NOT NULL,
    reason         text        NOT NULL,
    payload        bytea       NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (consumer, topic, partition, "offset")
);
"""

TABLES = (
    "dead_letters consumer_positions threshold_crossings budget_audit budget_raises budgets session_turns "
    "sessions balances usage_events virtual_keys bus_group_offsets bus_log bus_partitions"
)


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    drop_tables(TABLES)
    op.execute("DROP SEQUENCE IF EXISTS balances_version")
    op.execute("DROP SEQUENCE IF EXISTS config_version")
