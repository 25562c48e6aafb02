"""Policy versions in PostgreSQL: add one (with a NOTIFY to the proxies), list them, read the active one.

Rows are only ever inserted: the active version is the newest (highest ``seq``). Adding a version
NOTIFYs ``PG_NOTIFY_CONFIG`` in its transaction, so every proxy's balance view reloads the policy as
soon as it commits. Signing and verifying are the domain's (:mod:`spendgate.domain.policy_versions`);
the store keeps the document as the canonical JSON it was signed over.
"""

from __future__ import annotations

import json

import asyncpg
import msgspec

from spendgate.core.bus import Bus
from spendgate.core.db import Queryable
from spendgate.domain.constants import PG_NOTIFY_CONFIG, TOPIC_BUDGET
from spendgate.domain.errors import StoreError
from spendgate.domain.events import PolicyRolledBack, encode
from spendgate.domain.policy_versions import PolicyVersion, canonical_json

NOTIFY_POLICY = "policy"
_COLUMNS = "seq, version_id, parent, action, source, approver, reason, created_at, document, key_id, signature"


def _version(row: asyncpg.Record) -> PolicyVersion:
    return PolicyVersion(row["version_id"], row["parent"], row["action"], row["source"], row["approver"],
                         row["reason"], row["created_at"], json.loads(row["document"]), row["key_id"],
                         row["signature"], row["seq"])


async def add_version(pool: asyncpg.Pool, version: PolicyVersion) -> int:
    """Store ``version`` as the new active one, if its parent is still the active one; returns its seq.

    Raises a (non-retriable) :class:`StoreError` when another version became active meanwhile: the
    caller made its version against a history that has moved on."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("LOCK TABLE policy_versions IN SHARE ROW EXCLUSIVE MODE")
        active = await conn.fetchval("SELECT version_id FROM policy_versions ORDER BY seq DESC LIMIT 1")
        if active != version.parent:
            raise StoreError(f"the active policy version is now {active}, not {version.parent}: another change "
                             "was applied meanwhile; look at `spendgate policy versions` and try again",
                             retriable=False)
        seq = await conn.fetchval(
            """INSERT INTO policy_versions (version_id, parent, action, source, approver, reason, created_at,
                                            document, key_id, signature)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING seq""",
            version.version_id, version.parent, version.action, version.source, version.approver, version.reason,
            version.created_at, canonical_json(version.document).decode(), version.key_id, version.signature)
        await conn.execute("SELECT pg_notify($1, $2)", PG_NOTIFY_CONFIG, NOTIFY_POLICY)
    return int(seq)


async def list_versions(db: Queryable, *, limit: int = 100) -> list[PolicyVersion]:
    """The newest ``limit`` versions, newest first."""
    rows = await db.fetch(f"SELECT {_COLUMNS} FROM policy_versions ORDER BY seq DESC LIMIT $1", limit)
    return [_version(r) for r in rows]


async def get_version(db: Queryable, version_id: str) -> PolicyVersion | None:
    row = await db.fetchrow(f"SELECT {_COLUMNS} FROM policy_versions WHERE version_id = $1", version_id)
    return None if row is None else _version(row)


async def active_version(db: Queryable) -> PolicyVersion | None:
    """The newest version (None before the first ``policy apply``)."""
    row = await db.fetchrow(f"SELECT {_COLUMNS} FROM policy_versions ORDER BY seq DESC LIMIT 1")
    return None if row is None else _version(row)


async def versions_mark(db: Queryable) -> int:
    """The active version's seq (0 when there is none): a reader skips reloading while it is unchanged."""
    return int(await db.fetchval("SELECT COALESCE(max(seq), 0) FROM policy_versions"))


SOURCE_GUARD = "spendgate/guard"
PUBLISH_BATCH = 100


async def record_rollback(db: Queryable, event: PolicyRolledBack) -> bool:
    """Keep the guard's rollback event for publishing; False when that version was already rolled back."""
    done = await db.fetchval(
        """INSERT INTO policy_rollbacks (rollback_id, version_id, event, created_at) VALUES ($1, $2, $3, $4)
           ON CONFLICT (version_id) DO NOTHING RETURNING rollback_id""",
        event.rollback_id, event.version_id, msgspec.json.encode(event).decode(), event.detected_at)
    return done is not None


async def rolled_back(db: Queryable, version_id: str) -> bool:
    """Whether the guard already rolled ``version_id`` back."""
    return bool(await db.fetchval("SELECT EXISTS (SELECT 1 FROM policy_rollbacks WHERE version_id = $1)",
                                  version_id))


async def publish_rollbacks(pool: asyncpg.Pool, bus: Bus) -> int:
    """Publish every unpublished rollback event on spendgate.budget.v1 (for the alerter); returns how many."""
    sent = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                f"""SELECT rollback_id, event FROM policy_rollbacks WHERE published_at IS NULL ORDER BY created_at
                    LIMIT {PUBLISH_BATCH} FOR UPDATE SKIP LOCKED""")
            if not rows:
                return sent
            events = [msgspec.json.decode(r["event"], type=PolicyRolledBack) for r in rows]
            await bus.publish_many(TOPIC_BUDGET, [(f"policy:{e.version_id}",
                                                   encode(e, source=SOURCE_GUARD, subject=e.version_id))
                                                  for e in events])
            await conn.execute("UPDATE policy_rollbacks SET published_at = now() WHERE rollback_id = ANY($1::uuid[])",
                               [r["rollback_id"] for r in rows])
            sent += len(rows)
