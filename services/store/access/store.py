"""Sign-in sessions, pending sign-ins, named API tokens and the audit log, in PostgreSQL.

Secrets never reach the database: a session id, a sign-in's ``state`` and an API token are stored as
their SHA-256, so a copy of the tables signs nobody in. Reads of the audit trail come from one place,
:func:`audit_entries`: the general ``audit_log`` and the budgets family's ``budget_audit`` (budgets set,
deleted and raised, written in the budget change's own transaction), newest first.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from spendgate.core.db import Queryable
from spendgate.domain.ids import uuid7

TOKEN_PREFIX = "sg-at-"
"""Named admin API tokens start with this (virtual keys with ``sk-sg-``): a leaked one is recognisable."""
DISPLAY_PREFIX_CHARS = 12


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a session or a token stands for: the parts of an identity the tables keep."""

    subject: str
    name: str
    role: str
    teams: tuple[str, ...] = ()
    developer: str | None = None


@dataclass(frozen=True, slots=True)
class SessionRow:
    principal: Principal
    csrf_token: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class LoginAttempt:
    nonce: str
    code_verifier: str
    next_path: str


@dataclass(frozen=True, slots=True)
class ApiToken:
    """A named token's public record (never the secret)."""

    token_id: str
    name: str
    token_prefix: str
    principal: Principal
    created_by: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None

    def usable_at(self, now: datetime) -> bool:
        return self.revoked_at is None and now < self.expires_at


@dataclass(frozen=True, slots=True)
class AuditEntry:
    at: datetime
    actor: str
    action: str
    target: str
    detail: dict[str, Any]
    actor_name: str | None = None
    """The name the actor had at their latest sign-in (people only; tokens and the CLI have none)."""


# --- sessions ---------------------------------------------------------------------------------------

async def create_session(db: Queryable, principal: Principal, *, expires_at: datetime) -> tuple[str, str]:
    """A new session; returns (session id for the cookie, CSRF token). Only the id's hash is stored."""
    session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    await db.execute(
        """INSERT INTO console_sessions (session_hash, subject, name, role, teams, developer, csrf_token, expires_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
        digest(session_id), principal.subject, principal.name, principal.role, list(principal.teams),
        principal.developer, csrf, expires_at)
    return session_id, csrf


async def find_session(db: Queryable, session_id: str, now: datetime) -> SessionRow | None:
    """The live session with this id; an expired or unknown one is None."""
    row = await db.fetchrow(
        """SELECT subject, name, role, teams, developer, csrf_token, expires_at FROM console_sessions
           WHERE session_hash = $1 AND expires_at > $2""", digest(session_id), now)
    if row is None:
        return None
    return SessionRow(Principal(row["subject"], row["name"], row["role"], tuple(row["teams"]), row["developer"]),
                      row["csrf_token"], row["expires_at"])


async def end_session(db: Queryable, session_id: str) -> None:
    await db.execute("DELETE FROM console_sessions WHERE session_hash = $1", digest(session_id))


async def sweep(db: Queryable, now: datetime) -> None:
    """Forget expired sessions and abandoned sign-ins."""
    await db.execute("DELETE FROM console_sessions WHERE expires_at <= $1", now)
    await db.execute("DELETE FROM login_attempts WHERE expires_at <= $1", now)


# --- sign-ins under way -----------------------------------------------------------------------------

async def start_login(db: Queryable, state: str, attempt: LoginAttempt, *, expires_at: datetime) -> None:
    await db.execute(
        """INSERT INTO login_attempts (state_hash, nonce, code_verifier, next_path, expires_at)
           VALUES ($1, $2, $3, $4, $5)""",
        digest(state), attempt.nonce, attempt.code_verifier, attempt.next_path, expires_at)


async def pending_logins(db: Queryable) -> int:
    """How many sign-ins are under way (a flood of /login requests is capped by it)."""
    return int(await db.fetchval("SELECT count(*) FROM login_attempts"))


async def take_login(db: Queryable, state: str, now: datetime) -> LoginAttempt | None:
    """The sign-in this state started, removed so it cannot be used twice; None if unknown or expired."""
    row = await db.fetchrow(
        "DELETE FROM login_attempts WHERE state_hash = $1 RETURNING nonce, code_verifier, next_path, expires_at",
        digest(state))
    if row is None or row["expires_at"] <= now:
        return None
    return LoginAttempt(row["nonce"], row["code_verifier"], row["next_path"])


# --- named API tokens -------------------------------------------------------------------------------

_TOKEN_COLUMNS = ("token_id, name, token_prefix, role, teams, developer, created_by, created_at, expires_at, "
                  "revoked_at")


def _token(row: asyncpg.Record) -> ApiToken:
    return ApiToken(str(row["token_id"]), row["name"], row["token_prefix"],
                    Principal(row["name"], row["name"], row["role"], tuple(row["teams"]),
                              row["developer"]),
                    row["created_by"], row["created_at"], row["expires_at"], row["revoked_at"])


class TokenNameTaken(Exception):
    """A live token already has this name."""


async def create_token(db: Queryable, *, name: str, role: str, teams: tuple[str, ...], developer: str | None,
                       expires_at: datetime, created_by: str) -> tuple[ApiToken, str]:
    """A new token; returns its record and the secret (shown once, never stored)."""
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    try:
        row = await db.fetchrow(
            f"""INSERT INTO api_tokens (token_id, name, token_hash, token_prefix, role, teams, developer, created_by,
                                        expires_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {_TOKEN_COLUMNS}""",
            uuid7(), name, digest(secret), secret[:DISPLAY_PREFIX_CHARS], role, list(teams), developer, created_by,
            expires_at)
    except asyncpg.UniqueViolationError:
        raise TokenNameTaken(name) from None
    assert row is not None
    return _token(row), secret


async def token_by_secret(db: Queryable, secret: str) -> ApiToken | None:
    row = await db.fetchrow(f"SELECT {_TOKEN_COLUMNS} FROM api_tokens WHERE token_hash = $1", digest(secret))
    return _token(row) if row else None


async def list_tokens(db: Queryable, *, include_revoked: bool = False) -> list[ApiToken]:
    rows = await db.fetch(f"SELECT {_TOKEN_COLUMNS} FROM api_tokens WHERE $1 OR revoked_at IS NULL "
                          "ORDER BY created_at, name", include_revoked)
    return [_token(r) for r in rows]


async def revoke_token(db: Queryable, name_or_id: str, now: datetime) -> ApiToken | None:
    """Revoke the live token with this name (or id); None when there is none."""
    row = await db.fetchrow(
        f"""UPDATE api_tokens SET revoked_at = $2
            WHERE revoked_at IS NULL AND (name = $1 OR token_id::text = $1) RETURNING {_TOKEN_COLUMNS}""",
        name_or_id, now)
    return _token(row) if row else None


async def any_usable_token(db: Queryable, now: datetime) -> bool:
    return bool(await db.fetchval(
        "SELECT EXISTS (SELECT 1 FROM api_tokens WHERE revoked_at IS NULL AND expires_at > $1)", now))


# --- audit ------------------------------------------------------------------------------------------

async def record(db: Queryable, *, actor: str, action: str, target: str,
                 detail: Mapping[str, Any] | None = None) -> None:
    """One audited change (never a secret in ``detail``)."""
    await db.execute("INSERT INTO audit_log (audit_id, actor, action, target, detail) "
                     "VALUES ($1, $2, $3, $4, $5::jsonb)",
                     uuid7(), actor, action, target, json.dumps(dict(detail or {}), default=str))


MAX_AUDIT_ROWS = 5000


async def audit_entries(db: Queryable, *, actor: str | None = None, action: str | None = None,
                        target: str | None = None, since: datetime | None = None,
                        limit: int = 500) -> list[AuditEntry]:
    """Audited changes, newest first: the audit log and the budget changes (as ``budget.set``,
    ``budget.delete``, ``budget.raise``), filtered by actor, action (prefix), target (substring), time."""
    rows = await db.fetch(
        """SELECT at, actor, action, target, detail,
                  (SELECT s.target FROM audit_log s WHERE s.action = 'sign-in' AND s.actor = changes.actor
                   ORDER BY s.at DESC LIMIT 1) AS actor_name
           FROM (
               SELECT at, actor, action, target, detail FROM audit_log
               UNION ALL
               SELECT changed_at, actor, 'budget.' || action, scope, detail FROM budget_audit
           ) changes
           WHERE ($1::text IS NULL OR actor = $1) AND ($2::text IS NULL OR starts_with(action, $2))
             AND ($3::text IS NULL OR strpos(target, $3) > 0) AND ($4::timestamptz IS NULL OR at >= $4)
           ORDER BY at DESC LIMIT $5""",
        actor, action, target, since, min(limit, MAX_AUDIT_ROWS))
    return [AuditEntry(r["at"], r["actor"], r["action"], r["target"], json.loads(r["detail"]), r["actor_name"])
            for r in rows]
