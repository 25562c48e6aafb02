"""Console sign-in sessions, pending OpenID Connect sign-ins, named API tokens and the audit log.

Revision ID: access_0001
Revises: 0001
Create Date: 2026-11-28

Secrets are never stored: a session id, a pending sign-in's ``state`` and an API token are kept as their
SHA-256 only.
"""


from spendgate.core.migration_sql import drop_tables, execute_script

revision = "access_0001"
down_revision = "0001"
branch_labels = ("access",)
depends_on = None

UPGRADE = """
-- A signed-in browser: the SHA-256 of the cookie's random id, who it is, until when, its CSRF token.
CREATE TABLE IF NOT EXISTS console_sessions (
    session_hash bytea       PRIMARY KEY,
    subject      text        NOT NULL,
    name         text        NOT NULL,
    role         text        NOT NULL,
    teams        text[]      NOT NULL DEFAULT '{}',
    developer    text,
    csrf_token   text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS console_sessions_expiry ON console_sessions (expires_at);
-- A sign-in under way: the SHA-256 of its state, its nonce and PKCE verifier, where to go after. Taken
-- (deleted) by the callback, so a state or a code is good once.
CREATE TABLE IF NOT EXISTS login_attempts (
    state_hash    bytea       PRIMARY KEY,
    nonce         text        NOT NULL,
    code_verifier text        NOT NULL,
    next_path     text        NOT NULL,
    expires_at    timestamptz NOT NULL
);
-- Named, scoped, expiring admin API tokens (only the SHA-256 of the secret).
CREATE TABLE IF NOT EXISTS api_tokens (
    token_id     uuid        PRIMARY KEY,
    name         text        NOT NULL,
    token_hash   bytea       NOT NULL UNIQUE,
    token_prefix text        NOT NULL,
    role         text        NOT NULL,
    teams        text[]      NOT NULL DEFAULT '{}',
    developer    text,
    created_by   text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS api_tokens_live_name ON api_tokens (name) WHERE revoked_at IS NULL;
-- Every change made through the console, the admin API or the CLI, with who made it.
CREATE TABLE IF NOT EXISTS audit_log (
    audit_id   uuid        PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    actor      text        NOT NULL,
    action     text        NOT NULL,
    target     text        NOT NULL,
    detail     jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS audit_log_at ON audit_log (at DESC);
-- The name a signed-in actor last had, for the Audit page (an IdP's sub can be an opaque id).
CREATE INDEX IF NOT EXISTS audit_log_sign_ins ON audit_log (actor, at DESC) WHERE action = 'sign-in'
"""

TABLES = "audit_log api_tokens login_attempts console_sessions"


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    drop_tables(TABLES)
