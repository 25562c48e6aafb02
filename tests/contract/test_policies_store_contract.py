"""The policy-versions store's contract (policy_versions), run against every implementation."""

from __future__ import annotations

import abc
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from spendgate.domain.errors import StoreError
from spendgate.domain.policy_versions import PolicyVersion, sign, verify
from spendgate.store.policies.port import POSTGRES, PolicyVersionStore

KEY = Ed25519PrivateKey.generate()
AT = datetime(2026, 11, 27, 9, 30, 0, 654321, tzinfo=UTC)


def version(version_id: str, parent: str | None, minutes: int = 0) -> PolicyVersion:
    return sign(KEY, version_id=version_id, parent=parent, action="apply", source=None, approver="oidc:ann",
                reason=f"make {version_id}", created_at=AT + timedelta(minutes=minutes),
                document={"budgets": [{"scope": "org", "monthly": "1000"}], "routing_rules": [], "retry_cap": 3})


class PolicyVersionStoreContract(abc.ABC):
    """Versions are only added, on top of the active one; the newest is active; a stored version still
    verifies (the document comes back exactly as signed)."""

    @abc.abstractmethod
    def create_store(self) -> PolicyVersionStore: ...

    async def test_versions_stack_newest_active_and_still_verify(self, pool: asyncpg.Pool) -> None:
        """Two versions come back newest first with rising seq and the mark moving; each verifies as stored."""
        store = self.create_store()
        assert await store.active_version(pool) is None and await store.versions_mark(pool) == 0
        first = await store.add_version(pool, version("v1", None))
        second = await store.add_version(pool, version("v2", "v1", 5))
        assert second > first and await store.versions_mark(pool) == second
        listed = await store.list_versions(pool)
        assert [(v.version_id, v.parent, v.seq) for v in listed] == [("v2", "v1", second), ("v1", None, first)]
        active = await store.active_version(pool)
        assert active is not None and active.version_id == "v2" and active.created_at == AT + timedelta(minutes=5)
        assert all(verify(KEY.public_key(), v).ok for v in listed)
        assert await store.get_version(pool, "v3") is None

    async def test_a_version_made_on_a_stale_parent_is_refused(self, pool: asyncpg.Pool) -> None:
        """Adding a version whose parent is no longer the active one is a non-retriable StoreError; nothing
        is written."""
        store = self.create_store()
        await store.add_version(pool, version("v1", None))
        await store.add_version(pool, version("v2", "v1"))
        with pytest.raises(StoreError, match="another change was applied meanwhile") as err:
            await store.add_version(pool, version("v2b", "v1"))
        assert not err.value.retriable
        assert [v.version_id for v in await store.list_versions(pool)] == ["v2", "v1"]


class TestPostgresPolicyVersionStore(PolicyVersionStoreContract):
    def create_store(self) -> PolicyVersionStore:
        return POSTGRES
