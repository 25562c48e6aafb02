"""TLS to PostgreSQL: the ``database:`` settings on a real server with ``ssl=on`` (tests/support/postgres_tls.py).

The wheel's PostgreSQL has no SSL support, so the server is the machine's (Debian's ``postgresql``
package, installed on the project's machines); without one these tests are skipped, saying why.
The server's certificate comes from a ``trustme`` CA and names 127.0.0.1 only. Settings are loaded the
way a service loads them and the database is opened through the runtime, so migrations, the pool and
the dedicated LISTEN connection of the Postgres bus are all checked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
import trustme

from spendgate.core.config import Settings, load_settings
from spendgate.domain.constants import ALL_TOPICS
from spendgate.domain.errors import StoreError
from spendgate.runtime import open_database, open_runtime
from tests.support.certs import pkcs8_pem
from tests.support.postgres_tls import CERT_USER, TlsPostgres, postgres_bindir

CLIENT_KEY_PASSWORD = "client-key-secret"


@dataclass(frozen=True)
class TlsServer:
    server: TlsPostgres
    ca: Path
    other_ca: Path
    client_cert: Path
    client_key: Path


@pytest.fixture(scope="module")
def tls_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    bindir = postgres_bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL binaries built with SSL on this machine (apt-get install postgresql)")
    base = tmp_path_factory.mktemp("tls-postgres")
    ca, other = trustme.CA(), trustme.CA()
    ca.cert_pem.write_to_path(str(base / "ca.pem"))
    other.cert_pem.write_to_path(str(base / "other-ca.pem"))
    client = ca.issue_cert("client.spendgate.test", common_name=CERT_USER)
    client.cert_chain_pems[0].write_to_path(str(base / "client.pem"))
    (base / "client.key").write_bytes(pkcs8_pem(client.private_key_pem.bytes(), CLIENT_KEY_PASSWORD))
    (base / "client.key").chmod(0o600)
    server = TlsPostgres(bindir, ca)
    server.start()
    try:
        asyncio.run(create_cert_role(server.url()))
        yield TlsServer(server, base / "ca.pem", base / "other-ca.pem", base / "client.pem", base / "client.key")
    finally:
        server.stop()


async def create_cert_role(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"CREATE ROLE {CERT_USER} LOGIN")
    finally:
        await conn.close()


def tls_settings(monkeypatch: pytest.MonkeyPatch, url: str, **database: str | Path) -> Settings:
    """What a service loads with SPENDGATE_DATABASE_URL and SPENDGATE_DATABASE__<NAME> set."""
    monkeypatch.setenv("SPENDGATE_DATABASE_URL", url)
    for name, value in database.items():
        monkeypatch.setenv(f"SPENDGATE_DATABASE__{name.upper()}", str(value))
    return load_settings()


SSL_BACKENDS = """
    SELECT s.ssl, count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
    WHERE a.backend_type = 'client backend' AND a.datname = current_database() GROUP BY s.ssl
"""


async def test_verify_full_with_the_right_ca_encrypts_every_connection(tls_postgres: TlsServer,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """sslmode verify-full with the CA that signed the server: migrations run, and every connection the
    runtime opened (the pool's, the Postgres bus consumer's own) is encrypted."""
    settings = tls_settings(monkeypatch, tls_postgres.server.url(), sslmode="verify-full",
                            sslrootcert=tls_postgres.ca)
    async with open_runtime(settings) as runtime:
        consumer = runtime.bus.consumer("tls-check", list(ALL_TOPICS))
        await consumer.start()
        try:
            rows = {r["ssl"]: r["count"] for r in await runtime.pool.fetch(SSL_BACKENDS)}
            version = await runtime.pool.fetchval("SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        finally:
            await consumer.stop()
        assert await runtime.pool.fetchval("SELECT to_regclass('alembic_version') IS NOT NULL")
    assert rows.get(True, 0) >= 2 and rows.get(False, 0) == 0, rows
    assert version.startswith("TLSv1.")


async def test_verify_full_with_a_wrong_ca_is_refused(tls_postgres: TlsServer,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Trusting only another CA, the connection is refused with the certificate error in the message."""
    settings = tls_settings(monkeypatch, tls_postgres.server.url(), sslmode="verify-full",
                            sslrootcert=tls_postgres.other_ca)
    with pytest.raises(StoreError, match="certificate verify failed"):
        async with open_database(settings, run_migrations=False):
            pass


async def test_verify_full_checks_the_host_name_and_verify_ca_does_not(tls_postgres: TlsServer,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Reached as ``localhost`` (the certificate names only 127.0.0.1), verify-full refuses the server;
    verify-ca, which checks the CA alone, connects."""
    url = tls_postgres.server.url("localhost")
    settings = tls_settings(monkeypatch, url, sslmode="verify-full", sslrootcert=tls_postgres.ca)
    with pytest.raises(StoreError, match="Hostname mismatch"):
        async with open_database(settings, run_migrations=False):
            pass
    settings = tls_settings(monkeypatch, url, sslmode="verify-ca", sslrootcert=tls_postgres.ca)
    async with open_database(settings, run_migrations=False) as (_, pool):
        assert await pool.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()") is True


async def test_client_certificate_with_an_encrypted_key(tls_postgres: TlsServer,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A role the server lets in only with a client certificate: sslcert, sslkey (encrypted) and sslpassword
    get it in; without them the server refuses it."""
    url = tls_postgres.server.url().replace("postgres@", f"{CERT_USER}@", 1)
    settings = tls_settings(monkeypatch, url, sslmode="verify-full", sslrootcert=tls_postgres.ca,
                            sslcert=tls_postgres.client_cert, sslkey=tls_postgres.client_key,
                            sslpassword=CLIENT_KEY_PASSWORD)
    async with open_database(settings, run_migrations=False) as (_, pool):
        assert await pool.fetchval("SELECT current_user") == CERT_USER  # `cert` auth: the certificate's CN
        assert await pool.fetchval("SELECT client_serial FROM pg_stat_ssl WHERE pid = pg_backend_pid()") is not None
    for name in ("SSLCERT", "SSLKEY", "SSLPASSWORD"):
        monkeypatch.delenv(f"SPENDGATE_DATABASE__{name}")
    with pytest.raises(StoreError, match="requires a valid client certificate"):
        async with open_database(load_settings(), run_migrations=False):
            pass
