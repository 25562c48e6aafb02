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
from datetime import datetime

import asyncpg

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
    row = await pool.fetchrow(f"SELECT {_COLUMNS} FROM virtual_keys WHERE key_id = $1", key_id)
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


async def keys_changed_since(conn: asyncpg.Pool | asyncpg.Connection, version: int) -> list[KeyChange]:
    """Every key whose version is above ``version``, oldest change first (the cache's refresh query)."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS}, key_hash FROM virtual_keys WHERE version > $1 ORDER BY version", version
    )
    return [KeyChange(_row(r), bytes(r["key_hash"])) for r in rows]
