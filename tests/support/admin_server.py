"""The admin API served for tests: a real aiohttp server on a free port over a real database."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import asyncpg
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from spendgate.admin.app import create_app
from spendgate.admin.deps import Deps
from spendgate.core.config import Settings

ADMIN_TOKEN = "admin-token-for-tests-7d1e9c"
NOW = datetime(2026, 12, 1, tzinfo=UTC)
"""The API's clock in tests: just after the known month (so "the last 30 days" is November)."""


TEST_SIGNING_KEY = base64.b64encode(bytes(range(32))).decode()
"""The policy signing key of admin apps in tests (else one would be made in the real user data dir)."""


def admin_settings(**overrides: object) -> Settings:
    overrides.setdefault("policy", {"signing_key": TEST_SIGNING_KEY})
    return Settings(admin_token=SecretStr(ADMIN_TOKEN), **overrides)  # type: ignore[arg-type]


@asynccontextmanager
async def admin_client(pool: asyncpg.Pool, settings: Settings | None = None,
                       now: datetime = NOW) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    settings = settings or admin_settings()
    app = create_app(Deps(pool, settings, settings.pricing.table(), now=lambda: now))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client


def auth(token: str = ADMIN_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
