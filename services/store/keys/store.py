"""Virtual keys: the per-developer secrets clients present instead of the upstream credential.

A key is ``sk-sg-`` followed by 256 bits of randomness (url-safe base64). Only its SHA-256 is
stored; the secret is shown once, at creation. Every change takes a new ``config_version`` and
NOTIFYs :data:`~spendgate.domain.constants.PG_NOTIFY_CONFIG` in the same transaction, so proxies can
refresh their in-memory cache by version (``keys_changed_since``) within a fraction of a second.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import date, datetime

import asyncpg

from spendgate.core.db import Queryable
from spendgate.domain.constants import PG_NOTIFY_CONFIG
from spendgate.domain.errors import SpendgateError
from spendgate.domain.ids import uuid7

KEY_PREFIX = "sk-sg-"
SECRET_BYTES = 32
"""256 bits of randomness per key."""
DISPLAY_PREFIX_CHARS = 12
NOTIFY_PAYLOAD = "virtual_keys"

_COLUMNS = "key_id, key_prefix, developer, team, cost_center, created_at, revoked_at, version"


class AmbiguousKeyError(SpendgateError):
    """A displayed key prefix that matches more than one key."""


@dataclass(frozen=True, slots=True)
class VirtualKey:
    """A virtual key's public record (never the secret)."""

    key_id: str
    key_prefix: str
    developer: str
    team: str
    cost_center: str
    created_at: datetime
    revoked_at: datetime | None
    version: int

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True, slots=True)
class CreatedKey:
    """A freshly created key: the record plus the secret, which is never retrievable again."""

    key: VirtualKey
    secret: str


@dataclass(frozen=True, slots=True)
class KeyChange:
    """A key as a proxy's cache needs it: looked up by hash, dropped when revoked."""

    key: VirtualKey
    key_hash: bytes


def generate_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(SECRET_BYTES)


def hash_secret(secret: str) -> bytes:
    """SHA-256 of the presented secret, the only form in which keys are stored."""
    return hashlib.sha256(secret.encode()).digest()


def looks_like_key(secret: str) -> bool:
    return secret.startswith(KEY_PREFIX) and len(secret) > len(KEY_PREFIX) + 16


def _row(r: asyncpg.Record) -> VirtualKey:
    return VirtualKey(
        key_id=r["key_id"], key_prefix=r["key_prefix"], developer=r["developer"], team=r["team"],
        cost_center=r["cost_center"], created_at=r["created_at"], revoked_at=r["revoked_at"],
        version=r["version"],
    )


async def create_key(
    pool: asyncpg.Pool, *, developer: str, team: str, cost_center: str | None = None
) -> CreatedKey:
    """Create a key for ``developer`` in ``team`` (cost center defaults to the team)."""
    if not developer.strip() or not team.strip():
        raise ValueError("developer and team must not be empty")
    secret = generate_secret()
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            f"""INSERT INTO virtual_keys (key_id, key_hash, key_prefix, developer, team, cost_center, version)
                VALUES ($1, $2, $3, $4, $5, $6, nextval('config_version')) RETURNING {_COLUMNS}""",
            uuid7(), hash_secret(secret), secret[:DISPLAY_PREFIX_CHARS], developer.strip(), team.strip(),
            (cost_center or team).strip(),
        )
        await conn.execute("SELECT pg_notify($1, $2)", PG_NOTIFY_CONFIG, NOTIFY_PAYLOAD)
    assert row is not None
    return CreatedKey(_row(row), secret)


async def list_keys(pool: asyncpg.Pool, *, include_revoked: bool = True) -> list[VirtualKey]:
    where = "" if include_revoked else "WHERE revoked_at IS NULL"
    rows = await pool.fetch(f"SELECT {_COLUMNS} FROM virtual_keys {where} ORDER BY created_at, key_id")
    return [_row(r) for r in rows]


async def get_key(pool: asyncpg.Pool, key_id: str) -> VirtualKey | None:
    """One key by its exact id (the keys port's lookup; part of its contract suite, for callers such as
    the console that show one key)."""
    row = await pool.fetchrow(f"SELECT {_COLUMNS} FROM virtual_keys WHERE key_id = $1", key_id)
    return _row(row) if row else None


async def newest_key_of(db: Queryable, scope: str) -> VirtualKey | None:
    """The key a budget scope belongs to: ``key:<id>`` itself, else the newest key of ``developer:<name>``
    or ``team:<name>`` (revoked ones too: a scope outlives its keys); None for ``org`` or an unknown scope.
    Who to name on a scope's alert when no usage event says it (a budget change)."""
    kind, _, name = scope.partition(":")
    column = {"key": "key_id", "developer": "developer", "team": "team"}.get(kind)
    if column is None or not name:
        return None
    row = await db.fetchrow(
        f"SELECT {_COLUMNS} FROM virtual_keys WHERE {column} = $1 ORDER BY created_at DESC, key_id LIMIT 1", name)
    return _row(row) if row else None


async def revoke_key(pool: asyncpg.Pool, key_id: str) -> VirtualKey | None:
    """Revoke a key by id (or by its displayed prefix when that is unambiguous).

    Returns the revoked record, ``None`` when no such key exists. Revoking twice keeps the first time.
    """
    async with pool.acquire() as conn, conn.transaction():
        ids = await conn.fetch(
            "SELECT key_id FROM virtual_keys WHERE key_id = $1 OR key_prefix = $1", key_id
        )
        if len(ids) != 1:
            if len(ids) > 1:
                raise AmbiguousKeyError(f"{key_id!r} matches {len(ids)} keys; use the key id")
            return None
        row = await conn.fetchrow(
            f"""UPDATE virtual_keys
                SET revoked_at = coalesce(revoked_at, now()), version = nextval('config_version')
                WHERE key_id = $1 RETURNING {_COLUMNS}""",
            ids[0]["key_id"],
        )
        await conn.execute("SELECT pg_notify($1, $2)", PG_NOTIFY_CONFIG, NOTIFY_PAYLOAD)
    return _row(row) if row is not None else None


async def keys_changed_since(conn: Queryable, version: int) -> list[KeyChange]:
    """Every key whose version is above ``version``, oldest change first (the cache's refresh query)."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS}, key_hash FROM virtual_keys WHERE version > $1 ORDER BY version", version
    )
    return [KeyChange(_row(r), bytes(r["key_hash"])) for r in rows]


# -- the team directory (also reads usage_events and balances: see spendgate.store) ---------------------


@dataclass(frozen=True, slots=True)
class TeamRow:
    team: str
    cost_centers: list[str]
    developers: list[str]
    active_keys: int
    revoked_keys: int
    month_spent_micros: int
    """The ledger's balance of ``team:<name>`` for the month."""


async def team_directory(db: Queryable, *, month_starts_at: datetime, month_start: date) -> list[TeamRow]:
    """Every team with a key or with usage this month: its cost centers, developers, keys and month's spend,
    biggest spender first."""
    rows = await db.fetch(
        """WITH t AS (SELECT team, cost_center, developer, revoked_at FROM virtual_keys
                      UNION ALL
                      SELECT DISTINCT team, cost_center, developer, NULL::timestamptz FROM usage_events
                      WHERE occurred_at >= $1)
           SELECT t.team,
                  array_agg(DISTINCT t.cost_center ORDER BY t.cost_center) AS cost_centers,
                  array_agg(DISTINCT t.developer ORDER BY t.developer) AS developers,
                  (SELECT count(*) FROM virtual_keys k WHERE k.team = t.team AND k.revoked_at IS NULL)
                      AS active_keys,
                  (SELECT count(*) FROM virtual_keys k WHERE k.team = t.team AND k.revoked_at IS NOT NULL)
                      AS revoked_keys,
                  coalesce((SELECT b.spent_micros FROM balances b WHERE b.scope = 'team:' || t.team
                            AND b.period = 'month' AND b.period_start = $2), 0) AS spent
           FROM t GROUP BY t.team ORDER BY spent DESC, t.team""",
        month_starts_at, month_start,
    )
    return [TeamRow(r["team"], list(r["cost_centers"]), list(r["developers"]), r["active_keys"], r["revoked_keys"],
                    r["spent"]) for r in rows]


async def team_cost_centers(db: Queryable) -> dict[str, str]:
    """Each team's cost center, as its newest key states it."""
    rows = await db.fetch(
        "SELECT DISTINCT ON (team) team, cost_center FROM virtual_keys ORDER BY team, created_at DESC")
    return {r["team"]: r["cost_center"] for r in rows}
