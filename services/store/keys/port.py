"""The keys store's port: create, list, revoke (each change NOTIFYs the proxies), the proxies' version feed
(looked up by hash), and the team directory."""

from __future__ import annotations

from datetime import date, datetime
from typing import Protocol

import asyncpg

from spendgate.core.db import Queryable
from spendgate.store.keys import store
from spendgate.store.keys.store import CreatedKey, KeyChange, TeamRow, VirtualKey


class KeyStore(Protocol):
    async def create_key(self, pool: asyncpg.Pool, *, developer: str, team: str,
                         cost_center: str | None = None) -> CreatedKey: ...

    async def list_keys(self, pool: asyncpg.Pool, *, include_revoked: bool = True) -> list[VirtualKey]: ...

    async def get_key(self, pool: asyncpg.Pool, key_id: str) -> VirtualKey | None: ...

    async def newest_key_of(self, db: Queryable, scope: str) -> VirtualKey | None: ...

    async def revoke_key(self, pool: asyncpg.Pool, key_id: str) -> VirtualKey | None: ...

    async def keys_changed_since(self, conn: Queryable, version: int) -> list[KeyChange]: ...

    async def team_directory(self, db: Queryable, *, month_starts_at: datetime,
                             month_start: date) -> list[TeamRow]: ...

    async def team_cost_centers(self, db: Queryable) -> dict[str, str]: ...


POSTGRES: KeyStore = store
"""The PostgreSQL implementation: the :mod:`.store` module's functions (mypy checks they match the port)."""
