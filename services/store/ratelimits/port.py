"""The rate-limits store's port: limits (set, delete, list) and the proxies' shared per-minute counts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import asyncpg

from spendgate.core.db import Queryable
from spendgate.domain.ratelimits import Counts, RateLimit
from spendgate.store.ratelimits import store

PeerCount = tuple[str, str, int, int, int]
"""(instance, scope, minute, requests, tokens)"""


class RateLimitStore(Protocol):
    async def set_rate_limit(self, pool: asyncpg.Pool, limit: RateLimit, *, actor: str) -> None: ...

    async def delete_rate_limit(self, pool: asyncpg.Pool, scope: str) -> bool: ...

    async def list_rate_limits(self, db: Queryable) -> list[RateLimit]: ...

    async def exchange_counts(self, db: Queryable, instance: str, counts: Sequence[tuple[str, int, Counts]],
                              since_minute: int, *, write_first: bool = False) -> list[PeerCount]: ...

    async def sweep_counts(self, db: Queryable, before_minute: int) -> None: ...


POSTGRES: RateLimitStore = store
