"""What the admin handlers need, handed in by the composition root (service or tests)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
from aiohttp import web

from spendgate.core.config import Settings
from spendgate.domain.pricing import PriceTable


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Deps:
    pool: asyncpg.Pool
    settings: Settings
    prices: PriceTable
    now: Callable[[], datetime] = utc_now


DEPS: web.AppKey[Deps] = web.AppKey("deps", Deps)
