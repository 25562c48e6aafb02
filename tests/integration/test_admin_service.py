"""The admin service as `spendgate up` runs it: listening on admin_port with the token, gone after stop."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
from structlog.testing import capture_logs

from spendgate.admin.service import serve
from spendgate.core.config import load_settings
from spendgate.runtime import open_runtime
from tests.support.admin_server import ADMIN_TOKEN, auth
from tests.support.ports import free_port
from tests.support.rawhttp import raw_request
from tests.support.waiting import eventually


async def _status(url: str, headers: dict[str, str]) -> int:
    try:
        async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
            return resp.status
    except aiohttp.ClientConnectionError:
        return 0


async def test_serve_listens_with_the_token_and_stops_cleanly(db_url: str, tmp_path: Path) -> None:
    """serve() answers on settings.admin_port (401 without the token, 200 with it) until stop is set."""
    port = free_port()
    settings = load_settings(database_url=db_url, data_dir=tmp_path, admin_port=port, admin_token=ADMIN_TOKEN,
                             bus="memory")
    url = f"http://127.0.0.1:{port}/v1/keys"
    async with open_runtime(settings, run_migrations=False) as runtime:
        stop = asyncio.Event()
        task = asyncio.create_task(serve(runtime, stop))
        assert await eventually(lambda: _status(url, auth()), until=lambda s: s == 200, what="admin API up") == 200
        assert await _status(url, {}) == 401
        # aiohttp's own parse errors used to be plain text quoting the header (the admin token) and logged
        leaked = "LEAKED" + "k" * 20_000
        for target, headers in (("/v1/keys", {"Authorization": f"Bearer {leaked}"}), ("/v1/keys?" + leaked, {})):
            with capture_logs() as logs:
                resp = await raw_request(port, "GET", target, headers=headers)
            assert resp.status == 400 and resp.json()["error"]["type"] == "bad_request", resp.body[:200]
            assert b"LEAKED" not in resp.body and "LEAKED" not in json.dumps(logs, default=str)
        stop.set()
        await asyncio.wait_for(task, 10)
        assert await _status(url, auth()) == 0


async def test_without_a_token_the_admin_api_does_not_listen(db_url: str, tmp_path: Path) -> None:
    """With no SPENDGATE_ADMIN_TOKEN the service stays off (nothing listens) and exits on stop."""
    port = free_port()
    settings = load_settings(database_url=db_url, data_dir=tmp_path, admin_port=port, admin_token=None, bus="memory")
    async with open_runtime(settings, run_migrations=False) as runtime:
        stop = asyncio.Event()
        task = asyncio.create_task(serve(runtime, stop))
        await asyncio.sleep(0)  # one turn of the loop: serve() decides at once, before any await
        assert await _status(f"http://127.0.0.1:{port}/v1/keys", auth()) == 0
        stop.set()
        await asyncio.wait_for(task, 10)
