"""The access store's contract (console_sessions, login_attempts, api_tokens, audit_log), run against every
implementation."""

from __future__ import annotations

import abc
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from spendgate.store.access.port import POSTGRES, AccessStore
from spendgate.store.access.store import LoginAttempt, Principal, TokenNameTaken

NOW = datetime(2026, 12, 1, 9, tzinfo=UTC)
FAY = Principal("fay", "Fay", "finops")


class AccessStoreContract(abc.ABC):
    """Sessions live until they expire or end; a sign-in is taken once; tokens are found by secret and
    revoked by name; the audit trail reads the log and the budget changes together, newest first."""

    @abc.abstractmethod
    def create_store(self) -> AccessStore: ...

    async def test_a_session_is_found_by_its_id_until_it_expires_or_ends(self, pool: asyncpg.Pool) -> None:
        """The id finds the principal and CSRF token; a wrong id, an expired or ended session find nothing;
        the sweep removes expired ones."""
        store = self.create_store()
        sid, csrf = await store.create_session(pool, Principal("m", "M", "manager", ("a", "b")),
                                               expires_at=NOW + timedelta(hours=1))
        found = await store.find_session(pool, sid, NOW)
        assert found is not None and found.csrf_token == csrf and found.principal.teams == ("a", "b")
        assert await store.find_session(pool, sid + "x", NOW) is None
        assert await store.find_session(pool, sid, NOW + timedelta(hours=1)) is None
        other, _ = await store.create_session(pool, FAY, expires_at=NOW + timedelta(hours=1))
        await store.end_session(pool, other)
        assert await store.find_session(pool, other, NOW) is None
        await store.sweep(pool, NOW + timedelta(hours=2))
        assert await pool.fetchval("SELECT count(*) FROM console_sessions") == 0

    async def test_a_sign_in_is_taken_once_and_not_after_it_expires(self, pool: asyncpg.Pool) -> None:
        """take_login returns the attempt once; an expired attempt is None; pending_logins counts them."""
        store = self.create_store()
        attempt = LoginAttempt("nonce", "verifier", "/teams")
        await store.start_login(pool, "s1", attempt, expires_at=NOW + timedelta(minutes=10))
        await store.start_login(pool, "s2", attempt, expires_at=NOW + timedelta(minutes=10))
        assert await store.pending_logins(pool) == 2
        assert await store.take_login(pool, "s1", NOW) == attempt
        assert await store.take_login(pool, "s1", NOW) is None
        assert await store.take_login(pool, "s2", NOW + timedelta(minutes=11)) is None
        assert await store.pending_logins(pool) == 0

    async def test_tokens_are_found_by_secret_named_once_and_revoked(self, pool: asyncpg.Pool) -> None:
        """A live name is unique; the secret finds the token; revoking frees the name and shows in the list."""
        store = self.create_store()
        token, secret = await store.create_token(pool, name="ci", role="developer", teams=(), developer="alice",
                                                 expires_at=NOW + timedelta(days=1), created_by="t")
        assert secret.startswith("sg-at-") and token.token_prefix == secret[:12]
        with pytest.raises(TokenNameTaken):
            await store.create_token(pool, name="ci", role="admin", teams=(), developer=None,
                                     expires_at=NOW + timedelta(days=1), created_by="t")
        found = await store.token_by_secret(pool, secret)
        assert found is not None and found.principal.developer == "alice" and found.usable_at(NOW)
        assert await store.any_usable_token(pool, NOW)
        assert not await store.any_usable_token(pool, NOW + timedelta(days=2))
        assert await store.revoke_token(pool, "ci", NOW) is not None
        assert await store.revoke_token(pool, "ci", NOW) is None
        assert await store.list_tokens(pool) == []
        assert [t.name for t in await store.list_tokens(pool, include_revoked=True)] == ["ci"]
        again, _ = await store.create_token(pool, name="ci", role="admin", teams=(), developer=None,
                                            expires_at=NOW + timedelta(days=1), created_by="t")
        assert again.token_id != token.token_id

    async def test_the_audit_trail_reads_the_log_and_budget_changes(self, pool: asyncpg.Pool) -> None:
        """Entries from audit_log and budget_audit come back newest first, filtered, with the actor's name
        from their latest sign-in."""
        store = self.create_store()
        await store.record(pool, actor="oidc:fay", action="sign-in", target="Fay Finops")
        await pool.execute("INSERT INTO budget_audit (change_id, scope, action, detail, actor) "
                           "VALUES (gen_random_uuid(), 'team:platform', 'set', '{}', 'oidc:fay')")
        await store.record(pool, actor="token:ci", action="key.create", target="k1", detail={"team": "platform"})
        entries = await store.audit_entries(pool)
        assert [(e.action, e.actor_name) for e in entries] == [("key.create", None), ("budget.set", "Fay Finops"),
                                                               ("sign-in", "Fay Finops")]
        assert [e.target for e in await store.audit_entries(pool, action="budget.")] == ["team:platform"]
        assert [e.action for e in await store.audit_entries(pool, actor="token:ci")] == ["key.create"]
        assert [e.detail for e in await store.audit_entries(pool, target="k")] == [{"team": "platform"}]


class TestPostgresAccessStore(AccessStoreContract):
    def create_store(self) -> AccessStore:
        return POSTGRES
