"""Rate limits in PostgreSQL: set, delete, list; and the per-minute counts the proxies publish and read.

Limits change without a restart: every proxy reloads them every ``rate_limits.reload_s``. Counts are
written by each proxy for its own instance only (an upsert of the scopes that changed) and read as every
other instance's rows for the current and previous minute; rows of older minutes are swept.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from spendgate.core.db import Queryable
from spendgate.domain.ratelimits import Counts, RateLimit, rate_limit_of


async def set_rate_limit(pool: asyncpg.Pool, limit: RateLimit, *, actor: str) -> None:
    """Create or replace ``limit`` (validated again here: the API and the CLI both come through)."""
    checked = rate_limit_of(limit.scope, rpm=limit.rpm, tpm=limit.tpm)
    await pool.execute(
        "INSERT INTO rate_limits (scope, rpm, tpm, actor) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (scope) DO UPDATE SET rpm = EXCLUDED.rpm, tpm = EXCLUDED.tpm, actor = EXCLUDED.actor, "
        "updated_at = now()", checked.scope, checked.rpm, checked.tpm, actor)


async def delete_rate_limit(pool: asyncpg.Pool, scope: str) -> bool:
    return await pool.fetchval("DELETE FROM rate_limits WHERE scope = $1 RETURNING true", scope.strip()) is not None


async def list_rate_limits(db: Queryable) -> list[RateLimit]:
    rows = await db.fetch("SELECT scope, rpm, tpm FROM rate_limits ORDER BY scope")
    return [RateLimit(r["scope"], r["rpm"], r["tpm"]) for r in rows]


_UPSERT = ("INSERT INTO rate_limit_counts (instance, scope, minute, requests, tokens) "
           "SELECT $1, s, m, r, t FROM unnest($2::text[], $3::bigint[], $4::bigint[], $5::bigint[]) AS u(s, m, r, t) "
           "ON CONFLICT (instance, scope, minute) DO UPDATE SET requests = EXCLUDED.requests, "
           "tokens = EXCLUDED.tokens")
_PEERS = "SELECT instance, scope, minute, requests, tokens FROM rate_limit_counts WHERE minute >= $6 AND instance <> $1"


async def exchange_counts(db: Queryable, instance: str, counts: Sequence[tuple[str, int, Counts]],
                          since_minute: int, *, write_first: bool = False) -> list[tuple[str, str, int, int, int]]:
    """Write this proxy's counts (scope, minute, counts) over its earlier ones and read every other
    instance's from ``since_minute`` on (instance, scope, minute, requests, tokens).

    One statement (one round trip) by default; ``write_first`` commits the write before the read (two
    round trips), so two proxies syncing at the same moment see each other's counts: what the peers of
    a busy limit want (docs/rate-limits.md)."""
    args = (instance, [c[0] for c in counts], [c[1] for c in counts], [c[2].requests for c in counts],
            [c[2].tokens for c in counts], since_minute)
    if write_first:
        if counts:
            await db.execute(_UPSERT, *args[:5])
        rows = await db.fetch(_PEERS.replace("$6", "$2"), instance, since_minute)
    else:
        rows = await db.fetch(f"WITH written AS ({_UPSERT}) {_PEERS}", *args)
    return [(r["instance"], r["scope"], r["minute"], r["requests"], r["tokens"]) for r in rows]


async def sweep_counts(db: Queryable, before_minute: int) -> None:
    await db.execute("DELETE FROM rate_limit_counts WHERE minute < $1", before_minute)
