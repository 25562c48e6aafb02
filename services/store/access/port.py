"""The access store's port: sessions, pending sign-ins, named API tokens and the audit trail."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from spendgate.core.db import Queryable
from spendgate.store.access import store
from spendgate.store.access.store import ApiToken, AuditEntry, LoginAttempt, Principal, SessionRow


class AccessStore(Protocol):
    async def create_session(self, db: Queryable, principal: Principal, *,
                             expires_at: datetime) -> tuple[str, str]: ...

    async def find_session(self, db: Queryable, session_id: str, now: datetime) -> SessionRow | None: ...

    async def end_session(self, db: Queryable, session_id: str) -> None: ...

    async def sweep(self, db: Queryable, now: datetime) -> None: ...

    async def start_login(self, db: Queryable, state: str, attempt: LoginAttempt, *,
                          expires_at: datetime) -> None: ...

    async def pending_logins(self, db: Queryable) -> int: ...

    async def take_login(self, db: Queryable, state: str, now: datetime) -> LoginAttempt | None: ...

    async def create_token(self, db: Queryable, *, name: str, role: str, teams: tuple[str, ...],
                           developer: str | None, expires_at: datetime,
                           created_by: str) -> tuple[ApiToken, str]: ...

    async def token_by_secret(self, db: Queryable, secret: str) -> ApiToken | None: ...

    async def list_tokens(self, db: Queryable, *, include_revoked: bool = False) -> list[ApiToken]: ...

    async def revoke_token(self, db: Queryable, name_or_id: str, now: datetime) -> ApiToken | None: ...

    async def any_usable_token(self, db: Queryable, now: datetime) -> bool: ...

    async def record(self, db: Queryable, *, actor: str, action: str, target: str,
                     detail: Mapping[str, Any] | None = None) -> None: ...

    async def audit_entries(self, db: Queryable, *, actor: str | None = None, action: str | None = None,
                            target: str | None = None, since: datetime | None = None,
                            limit: int = 500) -> list[AuditEntry]: ...


POSTGRES: AccessStore = store
"""The PostgreSQL implementation: the :mod:`.store` module's functions."""
