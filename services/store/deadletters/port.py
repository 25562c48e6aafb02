"""The dead-letter store's port: what consumers need to set a poison record aside, and operators to read it."""

from __future__ import annotations

from typing import Protocol

from spendgate.core.bus.base import Record
from spendgate.core.db import Queryable
from spendgate.store.deadletters import store
from spendgate.store.deadletters.store import DeadLetter


class DeadLetterStore(Protocol):
    async def add_dead_letter(self, db: Queryable, consumer: str, record: Record, reason: str) -> bool: ...

    async def dead_letters(self, db: Queryable, *, consumer: str | None = None) -> list[DeadLetter]: ...


POSTGRES: DeadLetterStore = store
"""The PostgreSQL implementation: the :mod:`.store` module's functions (mypy checks they match the port)."""
