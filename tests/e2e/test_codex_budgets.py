"""The real Codex CLI against an enforcing ``spendgate up``: a budget pause and a retry loop stop it at once."""

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
from spendgate.domain.constants import TOPIC_BUDGET
from spendgate.domain.events import RetryLoopDetected, decode
from spendgate.runtime import open_runtime
from tests.support.agent_cli import AgentRun
from tests.support.codex import codex_exec, write_config
from tests.support.factories import usage_event
from tests.support.ledger import publish
from tests.support.proxy_harness import UPSTREAM_KEY, FakeServer, fake_upstream
from tests.support.proxy_process import SpendgateProcess, spendgate_argv, up_process
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e
LIMIT_HIT = "You\u2019ve hit your usage limit."
"""How Codex 0.169.0 opens the message for a 429 usage_limit_reached (with a typographic apostrophe)."""


def _turn_failures(run: AgentRun) -> list[str]:
    """The messages of the ``turn.failed`` events Codex printed (``--json``)."""
    events = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    return [e["error"]["message"] for e in events if e.get("type") == "turn.failed"]


def _cli(env: dict[str, str], data_dir: Path, *args: str) -> str:
    done = subprocess.run([*spendgate_argv(), "--data-dir", str(data_dir), *args],
                          env=env, capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.strip()


async def _gateway(db_url: str, tmp_path: Path, upstream: FakeServer) -> tuple[SpendgateProcess, dict[str, str], str]:
    """``spendgate up`` against the fake upstream, with a key for developer dana (team platform)."""
    env = {**os.environ, "SPENDGATE_DATABASE_URL": db_url, "SPENDGATE_UPSTREAM_URL": upstream.url,
           "SPENDGATE_UPSTREAM_KEY": UPSTREAM_KEY, "SPENDGATE_LOG_LEVEL": "warning"}
    gateway = up_process(tmp_path / "data", env)
    await gateway.start()
    secret = (await asyncio.to_thread(_cli, env, tmp_path / "data", "keys", "create", "--developer", "dana",
                                      "--team", "platform")).splitlines()[-1]
    return gateway, env, secret


async def _request(gateway: SpendgateProcess, secret: str, session: str) -> int:
    async with aiohttp.ClientSession() as http, http.post(
            f"{gateway.base_url}/responses", json={"model": "gpt-5.1", "input": session},
            headers={"Authorization": f"Bearer {secret}", "session-id": session}) as resp:
        await resp.read()
        return resp.status


async def _ledger_caught_up(gateway: SpendgateProcess, secret: str, pool: asyncpg.Pool) -> None:
    """A marker request after Codex exited; once the ledger has folded it, it has folded everything
    Codex sent before (one key: one partition, in order)."""
    await _request(gateway, secret, "marker")
    await eventually(lambda: pool.fetchval("SELECT count(*) FROM usage_events WHERE session_id = 'marker'"),
                     timeout_s=20, what="the marker request in the ledger")


async def _run_codex(codex_bin: Path, tmp_path: Path, base_url: str, secret: str, prompt: str) -> AgentRun:
    repo = tmp_path / "repo"
    repo.mkdir()
    await asyncio.to_thread(subprocess.run, ["git", "init", "-q", str(repo)], check=True, timeout=30)
    write_config(tmp_path / "codex-home", base_url)
    return await codex_exec(codex_bin, codex_home=tmp_path / "codex-home", workdir=repo, virtual_key=secret,
                            prompt=prompt)


async def test_codex_over_budget_stops_after_one_request_with_the_promo(db_url: str, pool: asyncpg.Pool,
                                                                        tmp_path: Path, codex_bin: Path) -> None:
    """Developer over budget: codex exec sends one request, gets the pause 429 and prints the promo message."""
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

            await eventually(lambda: _request(gateway, secret, "probe"), until=lambda s: s == 429, timeout_s=20,
                             what="the gateway pausing dana")
            upstream.fake.served.clear()
            run = await _run_codex(codex_bin, tmp_path, gateway.base_url, secret, "Say hello.")
            await _ledger_caught_up(gateway, secret, pool)
            events = await pool.fetch("SELECT * FROM usage_events WHERE client = 'codex_exec'")
        finally:
            assert await gateway.terminate() == 0, gateway.output()
    promo = "Developer dana's daily budget is used up: $1.50 of $1.00 spent (alerted: your spendgate admin)"
    [failed] = _turn_failures(run)
    assert failed.startswith(f"{LIMIT_HIT} {promo}, or try again at "), run.stdout
    assert run.returncode != 0
    assert upstream.fake.served == []
    assert [(e["status"], e["refusal_reason"], e["http_status"]) for e in events] == [
        ("refused", "budget_pause", 429)]


async def test_codex_retry_loop_is_stopped_at_the_cap(db_url: str, pool: asyncpg.Pool, tmp_path: Path,
                                                      codex_bin: Path) -> None:
    """The same failing command again and again: 4 attempts served, the 5th refused, retries flagged, loop event."""
    async with fake_upstream() as upstream:
        upstream.fake.script.extend(["tool:ls /nope-spendgate"] * 10)
        gateway, _env, secret = await _gateway(db_url, tmp_path, upstream)
        try:
            run = await _run_codex(codex_bin, tmp_path, gateway.base_url, secret, "List the /nope-spendgate directory.")
            served = list(upstream.fake.served)
            [session_id] = {s.session_id for s in served}
            await _ledger_caught_up(gateway, secret, pool)
            events = await pool.fetch("SELECT * FROM usage_events WHERE session_id = $1 ORDER BY occurred_at",
                                      session_id)
            loops = await eventually(
                lambda: _retry_loops(pool), until=lambda found: len(found) >= 1, timeout_s=20,
                what="RetryLoopDetected on the budget topic")
        finally:
            assert await gateway.terminate() == 0, gateway.output()
    assert len(served) == 4 and all(s.scenario == "tool:ls /nope-spendgate" for s in served)
    assert all("exited with code" in (s.tool_output or "") for s in served[1:]), [s.tool_output for s in served]
    assert [(e["status"], e["retry"], e["refusal_reason"]) for e in events] == [
        ("ok", False, None), ("ok", False, None), ("ok", True, None), ("ok", True, None),
        ("refused", True, "retry_budget")]
    [failed] = _turn_failures(run)
    assert failed.startswith(f"{LIMIT_HIT} spendgate stopped a retry loop: `ls /nope-spendgate` (exec_command) "
                             "failed 4 times in a row; change the approach, or try again at "), run.stdout
    [loop] = loops
    assert (loop.session_id, loop.command, loop.retries, loop.developer) == (
        session_id, "ls /nope-spendgate", 3, "dana")
    assert loop.retry_cost_micros == sum(e["cost_micros"] for e in events if e["retry"])


async def _retry_loops(pool: asyncpg.Pool) -> list[RetryLoopDetected]:
    rows = await pool.fetch("SELECT value FROM bus_log WHERE topic = $1", TOPIC_BUDGET)
    return [d for d in (decode(bytes(r["value"])).data for r in rows) if isinstance(d, RetryLoopDetected)]
