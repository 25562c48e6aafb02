"""The policy-versions store's port: add a version (NOTIFYing the proxies), list, get, the active one."""

from __future__ import annotations

from typing import Protocol

import asyncpg

from spendgate.core.db import Queryable
from spendgate.domain.policy_versions import PolicyVersion
from spendgate.store.policies import store


class PolicyVersionStore(Protocol):
    async def add_version(self, pool: asyncpg.Pool, version: PolicyVersion) -> int: ...

    async def list_versions(self, db: Queryable, *, limit: int = 100) -> list[PolicyVersion]: ...

    async def get_version(self, db: Queryable, version_id: str) -> PolicyVersion | None: ...

    async def active_version(self, db: Queryable) -> PolicyVersion | None: ...

    async def versions_mark(self, db: Queryable) -> int: ...


POSTGRES: PolicyVersionStore = store
"""The PostgreSQL implementation: the :mod:`.store` module's functions (mypy checks they match the port)."""
