"""Alerter: alert history, per-target delivery jobs and attempts, dead letters, digest state.

Revision ID: alerter_0001
Revises: 0001
Create Date: 2026-11-26
"""


from spendgate.core.migration_sql import drop_tables, execute_script

revision = "alerter_0001"
down_revision = "0001"
branch_labels = ("alerter",)
depends_on = None

UPGRADE = """
-- One row per alert, however often its event is redelivered: dedup_key is
-- crossing:<scope>:<period>:<period_start>:<threshold>, forecast_overrun:<scope>:<month>,
-- retry_loop:<detection_id>, digest:<route>:<due_at> or test:<id>.
CREATE TABLE alerts (
    alert_id      uuid        PRIMARY KEY,
    dedup_key     text        NOT NULL UNIQUE,
    kind          text        NOT NULL,
    scope         text        NOT NULL,
    developer     text,
    team          text,
    cost_center   text,
    message       jsonb       NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alerts_created_at ON alerts (created_at);

-- One job per (alert, target, action): the outbox the delivery workers drain. An alerter claims a
-- job (claimed_by, claimed_until) before each attempt, so two alerters never send the same job.
CREATE TABLE alert_jobs (
    job_id        uuid        PRIMARY KEY,
    alert_id      uuid        NOT NULL REFERENCES alerts (alert_id),
    route         text        NOT NULL,
    target        text        NOT NULL,
    action        text        NOT NULL CHECK (action IN ('trigger', 'resolve')),
    status        text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts      integer     NOT NULL DEFAULT 0,
    last_error    text,
    claimed_by    text,
    claimed_until timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (alert_id, target, action)
);
CREATE INDEX alert_jobs_pending ON alert_jobs (created_at) WHERE status = 'pending';

-- Every delivery attempt (also published to spendgate.alert.v1).
CREATE TABLE alert_deliveries (
    delivery_id   uuid        PRIMARY KEY,
    job_id        uuid        NOT NULL REFERENCES alert_jobs (job_id),
    alert_id      uuid        NOT NULL,
    route         text        NOT NULL,
    target        text        NOT NULL,
    attempt       integer     NOT NULL,
    outcome       text        NOT NULL,
    http_status   integer,
    error         text,
    attempted_at  timestamptz NOT NULL
);
CREATE INDEX alert_deliveries_alert ON alert_deliveries (alert_id);

-- Jobs that failed their last attempt; `spendgate alerts replay` re-sends them.
CREATE TABLE alert_dead_letters (
    dead_letter_id  bigserial   PRIMARY KEY,
    job_id          uuid        NOT NULL UNIQUE REFERENCES alert_jobs (job_id),
    attempts        integer     NOT NULL,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    replayed_at     timestamptz
);

-- Alerts waiting for a digest route's next message, and each route's last sent period.
CREATE TABLE alert_digest_items (
    route            text        NOT NULL,
    alert_id         uuid        NOT NULL REFERENCES alerts (alert_id),
    digest_alert_id  uuid,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (route, alert_id)
);
CREATE TABLE alert_digest_state (
    route        text        PRIMARY KEY,
    last_due_at  timestamptz NOT NULL
);

-- Open PagerDuty incidents, resolved when their budget period resets.
CREATE TABLE alert_incidents (
    target        text        NOT NULL,
    incident_key  text        NOT NULL,
    route         text        NOT NULL,
    alert_id      uuid        NOT NULL REFERENCES alerts (alert_id),
    resolves_at   timestamptz,
    resolved_at   timestamptz,
    PRIMARY KEY (target, incident_key)
);

-- The latest forecast per scope, from spendgate.forecast.v1, for the messages.
CREATE TABLE alert_forecasts (
    scope       text        PRIMARY KEY,
    as_of       date        NOT NULL,
    forecast    jsonb       NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
)
"""

TABLES = (
    "alert_forecasts alert_incidents alert_digest_state alert_digest_items alert_dead_letters "
    "alert_deliveries alert_jobs alerts"
)


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    drop_tables(TABLES)
