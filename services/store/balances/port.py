"""The balances store's port: the ledger's increments and crossings, the views' reads, the proxies' pending spend."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Protocol

from spendgate.core.db import Queryable
from spendgate.domain.enforcement.balances import BalanceKey
from spendgate.domain.events import ThresholdCrossed
from spendgate.domain.periods import PeriodKind
from spendgate.store.balances import store
from spendgate.store.balances.store import (
    BalanceIncrement,
    BalanceRow,
    CrossingFound,
    CrossingRow,
    DaySpend,
    K,
    StageChange,
    VersionedBalance,
)


class BalanceStore(Protocol):
    async def apply_balances(self, conn: Queryable, deltas: Mapping[K, BalanceIncrement]) -> dict[K, int]: ...

    async def clear_balances(self, conn: Queryable) -> None: ...

    async def hold_fold_lock(self, conn: Queryable, *, exclusive: bool) -> None: ...

    async def set_balances(self, conn: Queryable, totals: Mapping[BalanceKey, tuple[int, int]]) -> None: ...

    async def balances_of(self, db: Queryable, scope: str, *, day_start: date, month_start: date,
                          week_start: date | None = None) -> list[BalanceRow]: ...

    async def balances_since(self, db: Queryable, scopes: Sequence[str], since: date) -> list[BalanceRow]: ...

    async def spent_micros(self, db: Queryable, scope: str, period: PeriodKind, start: date) -> int: ...

    async def changed_balances(self, db: Queryable, since_version: int, *, day_cutoff: date,
                               month_cutoff: date) -> list[VersionedBalance]: ...

    async def day_spend(self, db: Queryable, scopes: Sequence[str], start: date, end: date) -> list[DaySpend]: ...

    async def period_balances(self, db: Queryable, scope_prefix: str, period: PeriodKind,
                              start: date) -> dict[str, int]: ...

    async def day_totals(self, db: Queryable, scope_prefix: str, start: date,
                         end: date) -> list[tuple[str, int, int]]: ...

    async def crossings_between(self, db: Queryable, start: datetime, end: datetime, *,
                                limit: int) -> list[StageChange]: ...

    async def scopes_with_day_spend(self, db: Queryable, since: date, *, kinds: Sequence[str]) -> list[str]: ...

    async def insert_crossings(self, conn: Queryable, found: Sequence[CrossingFound]) -> int: ...

    async def insert_crossing_rows(self, conn: Queryable, rows: Sequence[CrossingRow]) -> int: ...

    async def unpublished_crossings(self, db: Queryable, limit: int) -> list[ThresholdCrossed]: ...

    async def mark_crossings_published(self, db: Queryable, crossing_ids: Sequence[str]) -> None: ...

    async def peer_pending(self, db: Queryable, instance: str, *,
                           stale_after_s: float) -> list[tuple[BalanceKey, int]]: ...

    async def peer_unsettled(self, db: Queryable, instance: str, *,
                             stale_after_s: float) -> list[tuple[str, list[BalanceKey], int]]: ...

    async def lock_balances(self, conn: Queryable, keys: Sequence[BalanceKey]) -> None: ...

    async def unlock_balances(self, conn: Queryable, keys: Sequence[BalanceKey]) -> None: ...

    async def balances_and_peers(self, conn: Queryable, instance: str, keys: Sequence[BalanceKey], *,
                                 stale_after_s: float) -> list[tuple[BalanceKey, int, int, int]]: ...

    async def put_pending(self, conn: Queryable, instance: str, sums: Sequence[tuple[BalanceKey, int]]) -> None: ...

    async def drop_pending(self, conn: Queryable, instance: str, keys: Sequence[BalanceKey]) -> None: ...

    async def put_unsettled(self, conn: Queryable, instance: str,
                            events: Sequence[tuple[str, Sequence[BalanceKey], int]]) -> None: ...

    async def drop_unsettled(self, conn: Queryable, instance: str, event_ids: Sequence[str]) -> None: ...

    async def publish_pending(self, conn: Queryable, instance: str, *, live: Sequence[tuple[BalanceKey, int]],
                              gone: Sequence[BalanceKey], listed: Sequence[tuple[str, Sequence[BalanceKey], int]],
                              unlisted: Sequence[str], notify: str | None) -> None: ...

    async def touch_pending(self, conn: Queryable, instance: str) -> None: ...

    async def sweep_pending(self, conn: Queryable, *, older_than_s: float) -> None: ...

    async def withdraw_pending(self, db: Queryable, instance: str) -> None: ...


POSTGRES: BalanceStore = store
"""The PostgreSQL implementation: the :mod:`.store` module's functions (mypy checks they match the port)."""
