"""Real parts for the alerter's integration tests (no tests here): HTTP receivers on 127.0.0.1, an
aiosmtpd server, the alerter running on the Postgres bus with an injected clock, event builders."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import os
import socket
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Sized
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from spendgate.alerter.service import serve
from spendgate.core.bus import Bus
from spendgate.core.bus.postgres import PostgresBus
from spendgate.core.config import Settings
from spendgate.core.config_services import AlertSettings, SmtpSettings
from spendgate.domain.constants import TOPIC_BUDGET
from spendgate.domain.events import EventData, ThresholdCrossed, encode
from spendgate.domain.ids import uuid7
from spendgate.runtime import Runtime

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@dataclass
class Captured:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    received_s: float = field(default_factory=time.monotonic)

    def json(self) -> Any:
        return msgspec.json.decode(self.body)


class Receivers:
    """One aiohttp server; each path records its requests. ``script(path, [500, 500])`` answers those
    statuses first (then 200); ``hang(path)`` never answers until ``recover(path)``."""

    def __init__(self) -> None:
        self.requests: dict[str, list[Captured]] = defaultdict(list)
        self._scripts: dict[str, list[tuple[int, dict[str, str]]]] = defaultdict(list)
        self._hung: dict[str, asyncio.Event] = {}
        self._runner: web.AppRunner | None = None
        self.port = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def script(self, path: str, statuses: list[int], headers: dict[str, str] | None = None) -> None:
        self._scripts[path] += [(s, headers or {}) for s in statuses]

    def hang(self, path: str) -> None:
        self._hung[path] = asyncio.Event()

    def recover(self, path: str) -> None:
        self._hung.pop(path).set()

    def delivered(self, path: str) -> list[Captured]:
        return [r for r in self.requests[path] if 200 <= r.status < 300]

    async def count_delivered(self, path: str) -> int:
        return len(self.delivered(path))

    async def _handle(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        body = await request.read()
        hung = self._hung.get(path)
        if hung is not None:
            self.requests[path].append(Captured(path, dict(request.headers), body, 0))  # 0: never answered
            await hung.wait()
            return web.Response(status=504)
        status, headers = self._scripts[path].pop(0) if self._scripts[path] else (200, {})
        if path.startswith("pagerduty"):
            status = 202 if status == 200 else status
        self.requests[path].append(Captured(path, dict(request.headers), body, status))
        return web.Response(status=status, headers=headers, text="ok" if status < 300 else "no")

    async def __aenter__(self) -> Receivers:
        app = web.Application()
        app.router.add_post("/{path}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for event in self._hung.values():
            event.set()
        assert self._runner is not None
        await self._runner.cleanup()


class Inbox:
    """aiosmtpd handler: every message the SMTP server accepts, parsed."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], EmailMessage]] = []
        self.logins: list[bytes | None] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        self.messages.append((list(envelope.rcpt_tos), msg))
        self.logins.append(session.auth_data.login if session.authenticated else None)
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for rcpts, m in self.messages if address in rcpts]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Login:
    """aiosmtpd authenticator accepting one user name and password."""

    def __init__(self, user: str, password: str) -> None:
        self.user, self.password = user.encode(), password.encode()

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            self.user, self.password)
        return AuthResult(success=ok, handled=False, auth_data=auth_data)


@contextlib.contextmanager
def smtp_server(login: Login | None = None) -> Any:
    """aiosmtpd on a free port; with ``login`` it offers AUTH and checks that user's password."""
    inbox = Inbox()
    # AUTH offered without TLS (no certificate here); tests assert the session logged in (Inbox.logins).
    auth: dict[str, Any] = dict(authenticator=login, auth_require_tls=False) if login else {}
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port(), **auth)
    controller.start()
    try:
        yield inbox, controller.port
    finally:
        controller.stop()


class Clock:
    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def settings_for(db_url: str, tmp_path: Path, routes: str, *, smtp_port: int = 25, instance: str = "alerter-test",
                 **alerts: Any) -> Settings:
    path = tmp_path / "routes.yaml"
    path.write_text(routes)
    options: dict[str, Any] = dict(routes_file=path, backoff_base_s=0.02, backoff_max_s=0.1, schedule_every_s=0.05,
                                   request_timeout_s=2.0, max_attempts=3)
    options.update(alerts)
    return Settings(data_dir=tmp_path, database_url=db_url, bus="postgres", instance=instance,
                    smtp=SmtpSettings(host="127.0.0.1", port=smtp_port, timeout_s=5),
                    alerts=AlertSettings(**options))


@dataclass
class Running:
    runtime: Runtime
    stop: asyncio.Event
    task: asyncio.Task[None]
    clock: Clock = field(default_factory=Clock)

    async def publish(self, *events: EventData, topic: str = TOPIC_BUDGET) -> None:
        for e in events:
            await self.runtime.bus.publish(topic, getattr(e, "scope", None), encode(e, source="test"))


@contextlib.asynccontextmanager
async def running_alerter(settings: Settings, pool: asyncpg.Pool, db_url: str,
                          clock: Clock | None = None, bus: Bus | None = None) -> AsyncIterator[Running]:
    """The alerter's ``serve`` on the Postgres bus of the test database (or the given bus)."""
    clock = clock or Clock()
    bus = bus or PostgresBus(pool, db_url, partitions=settings.bus_partitions)
    runtime = Runtime(settings, db_url, pool, bus)
    stop = asyncio.Event()
    task = asyncio.create_task(serve(runtime, stop, clock=clock))
    running = Running(runtime, stop, task, clock)
    try:
        yield running
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def crossing(**overrides: Any) -> ThresholdCrossed:
    """Team platform paused: $1,120 of a $1,000 monthly budget."""
    fields: dict[str, Any] = dict(
        crossing_id=uuid7(), scope="team:platform", period="month", period_start=date(2026, 11, 1),
        resets_at=datetime(2026, 12, 1, tzinfo=UTC), threshold_pct=110, stage="pause",
        spent_micros=1_120_000_000, budget_micros=1_000_000_000, crossed_at=NOW, team="platform",
        cost_center="platform", trigger_event_id=uuid7(),
    )
    fields.update(overrides)
    return ThresholdCrossed(**fields)


async def seed_usage(pool: asyncpg.Pool, *, session_id: str, repo: str, cost_micros: int, developer: str = "alice",
                     team: str = "platform", cost_center: str = "platform", at: datetime = NOW) -> None:
    await pool.execute(
        """INSERT INTO usage_events (event_id, occurred_at, proxy_instance, key_id, developer, team, cost_center,
               session_id, repo, endpoint, model_requested, model_used, route_reason, stage, status, http_status,
               input_tokens, cached_tokens, output_tokens, reasoning_tokens, usage_source, input_price_micros,
               cached_price_micros, output_price_micros, price_fallback, cost_micros, retry, latency_ms)
           VALUES ($1, $2, 'p1', $3, $4, $5, $6, $7, $8, '/v1/responses', 'gpt-5.1', 'gpt-5.1', 'requested', 'ok',
               'ok', 200, 1000, 0, 100, 0, 'reported', 1250000, 125000, 10000000, false, $9, false, 100)""",
        uuid7(), at, f"k_{developer}", developer, team, cost_center, session_id, repo, cost_micros,
    )


async def seed_budget(pool: asyncpg.Pool, team: str, cost_center: str, *, monthly_micros: int,
                      spent_micros: int, daily_micros: int | None = None) -> None:
    await pool.execute("INSERT INTO budgets (scope, daily_micros, monthly_micros) VALUES ($1, $2, $3)",
                       f"team:{team}", daily_micros, monthly_micros)
    await pool.execute("INSERT INTO balances (scope, period, period_start, spent_micros) VALUES ($1, 'month', $2, $3)",
                       f"team:{team}", date(2026, 11, 1), spent_micros)
    await pool.execute(
        """INSERT INTO virtual_keys (key_id, key_hash, key_prefix, developer, team, cost_center)
           VALUES ($1, $2, 'sk-sg', $3, $4, $5)""",
        f"k_{team}", os.urandom(32), f"dev-{team}", team, cost_center)


async def size(items: Sized) -> int:
    """For ``eventually``: how many items a receiver or inbox holds now."""
    return len(items)


async def count(pool: asyncpg.Pool, sql: str, *args: Any) -> int:
    return int(await pool.fetchval(sql, *args))


async def run_cli(*args: str, env: dict[str, str]) -> tuple[int, str]:
    """Run ``spendgate alerts …`` in a subprocess while this loop keeps serving the receivers."""
    code = "from spendgate.cli import main; main()"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, "alerts", *args,
        env={**os.environ, **env}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode()
