"""The turn outcomes store's port: turns added up from their usage events, and external evaluations."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from spendgate.core.db import Queryable
from spendgate.domain.outcomes import ExternalScore, TurnEvaluation, TurnFacts
from spendgate.store.outcomes import store


class OutcomeStore(Protocol):
    async def turn_facts(self, db: Queryable, *, since: datetime, session_id: str | None = None,
                         team: str | None = None, limit: int) -> list[tuple[TurnFacts, ExternalScore | None]]: ...

    async def turns_started(self, db: Queryable, *, start: datetime, end: datetime,
                            limit: int) -> list[tuple[TurnFacts, ExternalScore | None]]: ...

    async def known_turns(self, db: Queryable, turn_ids: Sequence[str]) -> set[str]: ...

    async def record_evals(self, db: Queryable, evaluations: Sequence[TurnEvaluation], *,
                           received_at: datetime) -> int: ...


POSTGRES: OutcomeStore = store
"""The PostgreSQL implementation: the :mod:`.store` module's functions (mypy checks they match the port)."""
