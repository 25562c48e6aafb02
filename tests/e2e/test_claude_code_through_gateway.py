"""The real Claude Code CLI (pinned) through ``spendgate up`` to the fake upstream: a turn with a tool call is
one metered session at the exact cache-aware cost; over budget, it stops at once with spendgate's message.
The facts docs/claude-code.md relies on (how the key, the session and the repo are sent) are re-checked."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from spendgate.core.config import load_settings
from spendgate.domain.pricing import PriceTable, cost_micros
from spendgate.runtime import open_runtime
from tests.support.claude_code import claude_print
from tests.support.factories import usage_event
from tests.support.ledger import publish
from tests.support.proxy_harness import ANTHROPIC_UPSTREAM_KEY, UPSTREAM_KEY, FakeServer, fake_upstream
from tests.support.proxy_process import SpendgateProcess, spendgate_argv, up_process
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e
TOOL_MARKER = "spendgate-claude-tool-ran"
MODEL = "claude-sonnet-4-5"


def _cli(env: dict[str, str], data_dir: Path, *args: str) -> str:
    done = subprocess.run([*spendgate_argv(), "--data-dir", str(data_dir), *args],
                          env=env, capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.strip()


async def _gateway(db_url: str, tmp_path: Path, upstream: FakeServer) -> tuple[SpendgateProcess, dict[str, str], str]:
    env = {**os.environ, "SPENDGATE_DATABASE_URL": db_url, "SPENDGATE_UPSTREAM_URL": upstream.url,
           "SPENDGATE_UPSTREAM_KEY": UPSTREAM_KEY, "SPENDGATE_ANTHROPIC_UPSTREAM_URL": upstream.url,
           "SPENDGATE_ANTHROPIC_UPSTREAM_KEY": ANTHROPIC_UPSTREAM_KEY, "SPENDGATE_LOG_LEVEL": "warning"}
    gateway = up_process(tmp_path / "data", env)
    await gateway.start()
    secret = (await asyncio.to_thread(_cli, env, tmp_path / "data", "keys", "create", "--developer", "dana",
                                      "--team", "platform")).splitlines()[-1]
    return gateway, env, secret


async def _probe(gateway: SpendgateProcess, secret: str) -> int:
    async with aiohttp.ClientSession() as http, http.post(
            f"{gateway.base_url}/messages", headers={"x-api-key": secret},
            json={"model": MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": "probe"}]}) as resp:
        await resp.read()
        return resp.status


async def _repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    await asyncio.to_thread(subprocess.run, ["git", "init", "-q", str(repo)], check=True, timeout=30)
    return repo


async def test_claude_code_turn_with_a_tool_call_is_one_metered_session(db_url: str, pool: asyncpg.Pool,
                                                                       tmp_path: Path, claude_code_bin: Path) -> None:
    """claude -p with a Bash tool call via spendgate up: Claude Code runs the tool, the ledger has its
    session (its own id, the repo, client claude-code) at exactly the cost the upstream's usage gives."""
    async with fake_upstream() as upstream:
        upstream.fake.script.extend([f"tool:echo {TOOL_MARKER}", "text"])
        gateway, _env, secret = await _gateway(db_url, tmp_path, upstream)
        try:
            banner = gateway.output()
            base = gateway.base_url.removesuffix("/v1")
            assert f"export ANTHROPIC_BASE_URL={base}" in banner
            assert "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1" in banner
            repo = await _repo(tmp_path)
            run = await claude_print(claude_code_bin, home=tmp_path / "claude", workdir=repo, base_url=base,
                                     virtual_key=secret, prompt="Run the check command and tell me what it printed.",
                                     model=MODEL)
            assert run.returncode == 0, f"claude failed:\n{run.stdout}\n{run.stderr}\n{gateway.output()}"
            served = upstream.fake.served
            assert any(s.tool_output and TOOL_MARKER in s.tool_output for s in served), "the tool did not run"
            assert {s.api_key for s in served} == {ANTHROPIC_UPSTREAM_KEY}
            assert {s.authorization for s in served} == {None}
            [session_id] = {s.session_id for s in served}
            assert session_id
            row = await eventually(
                lambda: pool.fetchrow("SELECT * FROM sessions WHERE session_id = $1", session_id),
                until=lambda r: r is not None and r["requests"] >= len(served), timeout_s=20,
                what="ledger session line")
            received = [r for r in upstream.fake.received if r.raw_path.startswith("/v1/messages")]
        finally:
            assert await gateway.terminate() == 0, gateway.output()
    prices = PriceTable()
    expected = sum(cost_micros(prices.lookup(s.model).price, input_tokens=s.input_tokens,
                               cached_tokens=s.cached_tokens, output_tokens=s.output_tokens,
                               cache_write_5m_tokens=s.cache_write_5m_tokens,
                               cache_write_1h_tokens=s.cache_write_1h_tokens) for s in served)
    assert (row["requests"], row["input_tokens"], row["cached_tokens"], row["output_tokens"], row["cost_micros"]) == (
        len(served), sum(s.input_tokens for s in served), sum(s.cached_tokens for s in served),
        sum(s.output_tokens for s in served), expected)
    assert (row["developer"], row["client"]) == ("dana", "claude-code")
    assert row["repo"] in (str(repo), str(repo.resolve()))
    assert MODEL in {s.model for s in served}
    # What docs/claude-code.md says the CLI sends, re-checked on the pinned version.
    assert all(secret not in json.dumps(r.headers) for r in received)
    first = json.loads(received[-1].body)
    assert json.loads(first["metadata"]["user_id"])["session_id"] == session_id
    assert received[-1].headers["User-Agent"].startswith("claude-cli/2.1.197")


async def test_claude_code_over_budget_stops_at_once_with_spendgates_message(
        db_url: str, pool: asyncpg.Pool, tmp_path: Path, claude_code_bin: Path) -> None:
    """Developer over budget: Claude Code sends one request per model it tries, gets the 429 with
    x-should-retry false and shows spendgate's message; nothing reaches the upstream."""
    async with fake_upstream() as upstream:
        gateway, env, secret = await _gateway(db_url, tmp_path, upstream)
        try:
            await asyncio.to_thread(_cli, env, tmp_path / "data", "budgets", "set", "--scope", "developer:dana",
                                    "--daily", "1")
            key_id = await pool.fetchval("SELECT key_id FROM virtual_keys WHERE developer = 'dana'")
            settings = load_settings(database_url=db_url, bus="postgres", data_dir=tmp_path / "seed")
            async with open_runtime(settings, run_migrations=False) as rt:  # $1.50 spent earlier today
                await publish(rt.bus, [usage_event(key_id=key_id, developer="dana", team="platform",
                                                   occurred_at=datetime.now(UTC), cost_micros=1_500_000,
                                                   client="earlier", session_id="earlier")])
            await eventually(lambda: _probe(gateway, secret), until=lambda s: s == 429, timeout_s=20,
                             what="the gateway pausing dana")
            upstream.fake.served.clear()
            repo = await _repo(tmp_path)
            started = asyncio.get_running_loop().time()
            run = await claude_print(claude_code_bin, home=tmp_path / "claude", workdir=repo,
                                     base_url=gateway.base_url.removesuffix("/v1"), virtual_key=secret,
                                     prompt="Say hello.", model=MODEL)
            took_s = asyncio.get_running_loop().time() - started
            refused = await eventually(
                lambda: pool.fetch("SELECT * FROM usage_events WHERE client = 'claude-code'"),
                until=lambda rows: len(rows) >= 1, timeout_s=20, what="the refusal in the ledger")
        finally:
            assert await gateway.terminate() == 0, gateway.output()
    result = json.loads(run.stdout)
    assert (result["is_error"], result["api_error_status"]) == (True, 429), run.stdout
    assert result["result"].startswith("API Error: Request rejected (429) · Budget paused by spendgate: developer "
                                       "dana's daily budget is used up ($1.50 of $1.00 spent)."), run.stdout
    assert run.returncode != 0
    assert took_s < 30  # not ten retries over three minutes
    assert upstream.fake.served == []
    assert [(r["status"], r["refusal_reason"], r["http_status"]) for r in refused] == [
        ("refused", "budget_pause", 429)]  # one request: no retries
