"""Virtual keys against real PostgreSQL: only hashes stored, list, revoke, versioned change feed."""

from __future__ import annotations

import asyncpg

from spendgate.store.keys import store as vkeys


async def test_create_stores_only_the_hash(pool: asyncpg.Pool) -> None:
    """A key is sk-sg- plus 256 bits; the table holds its SHA-256 and a display prefix, never the secret."""
    created = await vkeys.create_key(pool, developer="alice", team="platform")
    assert created.secret.startswith("sk-sg-") and len(created.secret) >= 6 + 43
    row = await pool.fetchrow("SELECT * FROM virtual_keys WHERE key_id = $1", created.key.key_id)
    assert row is not None
    assert bytes(row["key_hash"]) == vkeys.hash_secret(created.secret)
    assert created.secret not in " ".join(str(v) for v in row.values())
    assert row["cost_center"] == "platform" and row["key_prefix"] == created.secret[:12]


async def test_list_revoke_and_change_feed(pool: asyncpg.Pool) -> None:
    """Revoking bumps the key's version, so keys_changed_since reports it to proxies."""
    a = await vkeys.create_key(pool, developer="alice", team="platform", cost_center="cc-1")
    b = await vkeys.create_key(pool, developer="bob", team="web")
    assert [k.key_id for k in await vkeys.list_keys(pool)] == [a.key.key_id, b.key.key_id]
    seen = max(c.key.version for c in await vkeys.keys_changed_since(pool, -1))
    revoked = await vkeys.revoke_key(pool, a.key.key_id)
    assert revoked is not None and not revoked.active
    [change] = await vkeys.keys_changed_since(pool, seen)
    assert change.key.key_id == a.key.key_id and change.key_hash == vkeys.hash_secret(a.secret)
    assert [k.key_id for k in await vkeys.list_keys(pool, include_revoked=False)] == [b.key.key_id]
    assert await vkeys.revoke_key(pool, "no-such-key") is None
    by_prefix = await vkeys.revoke_key(pool, b.secret[:12])
    assert by_prefix is not None and by_prefix.key_id == b.key.key_id


async def test_cache_sees_a_revocation_that_commits_after_a_later_version(pool: asyncpg.Pool, db_url: str) -> None:
    """A revocation whose version was drawn before, but committed after, a newer change still reaches the cache."""
    from spendgate.proxy.keycache import KeyCache

    victim = await vkeys.create_key(pool, developer="vic", team="t")
    cache = KeyCache(pool, db_url)
    await cache.refresh()
    assert cache.lookup(victim.secret) is not None
    slow = await pool.acquire()
    tx = slow.transaction()
    await tx.start()
    await slow.execute("UPDATE virtual_keys SET revoked_at = now(), version = nextval('config_version') "
                       "WHERE key_id = $1", victim.key.key_id)
    newer = await vkeys.create_key(pool, developer="new", team="t")  # takes a higher version, commits first
    await cache.refresh()
    assert cache.lookup(newer.secret) is not None and cache.lookup(victim.secret) is not None
    await tx.commit()
    await pool.release(slow)
    await cache.refresh()
    assert cache.lookup(victim.secret) is None
