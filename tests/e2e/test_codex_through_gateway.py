"""The real Codex CLI through ``spendgate up`` to the fake upstream, and the ledger it leaves behind."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path

import asyncpg
import pytest

from spendgate.domain.pricing import SHIPPED_PRICES, cost_micros
from tests.support.codex import codex_exec, codex_login_with_api_key, write_builtin_config, write_config
from tests.support.proxy_harness import UPSTREAM_KEY, fake_upstream, published_usage, running_proxy
from tests.support.proxy_process import spendgate_argv, up_process
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

TOOL_MARKER = "spendgate-e2e-tool-ran"


def _keys_create(env: dict[str, str], data_dir: Path) -> str:
    """``spendgate keys create`` in a second process, finding the running gateway's state by itself."""
    done = subprocess.run([*spendgate_argv(), "--data-dir", str(data_dir), "keys", "create", "--developer", "dana",
                           "--team", "platform", "--cost-center", "cc-7"],
                          env=env, capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.strip().splitlines()[-1]


async def test_codex_exec_with_a_tool_call_is_one_metered_session(db_url: str, pool: asyncpg.Pool, tmp_path: Path,
                                                                 codex_bin: Path) -> None:
    """codex exec with a tool call via spendgate up: one ledger session, Codex's id, repo, upstream's totals."""
    async with fake_upstream() as upstream:
        upstream.fake.script.extend([f"tool:echo {TOOL_MARKER}", "text"])
        env = {**os.environ, "SPENDGATE_DATABASE_URL": db_url, "SPENDGATE_UPSTREAM_URL": upstream.url,
               "SPENDGATE_UPSTREAM_KEY": UPSTREAM_KEY, "SPENDGATE_LOG_LEVEL": "warning"}
        gateway = up_process(tmp_path / "data", env)
        await gateway.start()
        try:
            assert f'base_url = "{gateway.base_url}"' in gateway.output()  # the Codex snippet `up` prints
            assert 'model_provider = "spendgate"' in gateway.output()
            secret = await asyncio.to_thread(_keys_create, env, tmp_path / "data")
            assert secret.startswith("sk-sg-")
            repo = tmp_path / "repo"
            repo.mkdir()
            await asyncio.to_thread(subprocess.run, ["git", "init", "-q", str(repo)], check=True, timeout=30)
            write_config(tmp_path / "codex-home", gateway.base_url)
            run = await codex_exec(codex_bin, codex_home=tmp_path / "codex-home", workdir=repo, virtual_key=secret,
                                   prompt="Run the check command and tell me what it printed.")
            assert run.returncode == 0, f"codex failed:\n{run.stdout}\n{run.stderr}\n{gateway.output()}"
            served = upstream.fake.served
            assert len(served) >= 2, run.stdout
            assert any(s.tool_output and TOOL_MARKER in s.tool_output for s in served), "Codex did not run the tool"
            assert {s.authorization for s in served} == {f"Bearer {UPSTREAM_KEY}"}
            [session_id] = {s.session_id for s in served}
            assert session_id
            row = await eventually(
                lambda: pool.fetchrow("SELECT * FROM sessions WHERE session_id = $1", session_id),
                until=lambda r: r is not None and r["requests"] >= len(served), timeout_s=20,
                what="ledger session line")
        finally:
            assert await gateway.terminate() == 0, gateway.output()
    assert await pool.fetchval("SELECT count(*) FROM sessions") == 1
    expected_cost = sum(cost_micros(SHIPPED_PRICES[s.model], input_tokens=s.input_tokens,
                                    cached_tokens=s.cached_tokens, output_tokens=s.output_tokens) for s in served)
    assert (row["requests"], row["input_tokens"], row["cached_tokens"], row["output_tokens"],
            row["reasoning_tokens"], row["cost_micros"]) == (
        len(served), sum(s.input_tokens for s in served), sum(s.cached_tokens for s in served),
        sum(s.output_tokens for s in served), sum(s.reasoning_tokens for s in served), expected_cost)
    assert (row["developer"], row["team"], row["cost_center"], row["client"]) == ("dana", "platform", "cc-7",
                                                                                  "codex_exec")
    assert row["repo"] in (str(repo), str(repo.resolve()))
    assert row["turns"] == 1
    events = await pool.fetch("SELECT status, usage_source, turn_id FROM usage_events")
    assert {(e["status"], e["usage_source"]) for e in events} == {("ok", "reported")}
    assert len({e["turn_id"] for e in events}) == 1
    assert json.loads(run.stdout.splitlines()[-1])  # --json ends with a JSON event line


async def test_codex_retry_after_broken_stream_meters_both_attempts(db_url: str, pool: asyncpg.Pool,
                                                                    tmp_path: Path, codex_bin: Path) -> None:
    """A stream cut before response.completed makes Codex retry; both attempts are metered in the session."""
    async with fake_upstream() as upstream:
        upstream.fake.script.extend(["truncated", "text"])
        env = {**os.environ, "SPENDGATE_DATABASE_URL": db_url, "SPENDGATE_UPSTREAM_URL": upstream.url,
               "SPENDGATE_UPSTREAM_KEY": UPSTREAM_KEY, "SPENDGATE_LOG_LEVEL": "warning"}
        gateway = up_process(tmp_path / "data", env)
        await gateway.start()
        try:
            secret = await asyncio.to_thread(_keys_create, env, tmp_path / "data")
            repo = tmp_path / "repo"
            repo.mkdir()
            await asyncio.to_thread(subprocess.run, ["git", "init", "-q", str(repo)], check=True, timeout=30)
            write_config(tmp_path / "codex-home", gateway.base_url)
            run = await codex_exec(codex_bin, codex_home=tmp_path / "codex-home", workdir=repo, virtual_key=secret,
                                   prompt="Say hello.")
            assert run.returncode == 0, f"codex failed:\n{run.stdout}\n{run.stderr}"
            served = upstream.fake.served
            assert [s.scenario for s in served] == ["truncated", "text"]
            [session_id] = {s.session_id for s in served}
            rows = await eventually(
                lambda: pool.fetch("SELECT status, usage_source, input_tokens, output_tokens, cost_micros "
                                   "FROM usage_events WHERE session_id = $1 ORDER BY occurred_at", session_id),
                until=lambda r: len(r) >= 2, timeout_s=20, what="both attempts in the ledger")
        finally:
            assert await gateway.terminate() == 0, gateway.output()
    assert [(r["status"], r["usage_source"]) for r in rows] == [("incomplete", "estimated"), ("ok", "reported")]
    assert rows[0]["cost_micros"] > 0 and rows[0]["output_tokens"] > 0
    assert rows[1]["input_tokens"] == served[1].input_tokens


async def test_builtin_provider_falls_back_from_websocket(db_url: str, tmp_path: Path, codex_bin: Path) -> None:
    """Codex's built-in provider (openai_base_url + login --with-api-key) gets 426 on its WebSocket, then streams."""
    async with running_proxy(db_url, tmp_path / "data") as h:
        home = tmp_path / "codex-home"
        write_builtin_config(home, h.base_url)
        await codex_login_with_api_key(codex_bin, codex_home=home, api_key=h.secret)
        repo = tmp_path / "repo"
        repo.mkdir()
        await asyncio.to_thread(subprocess.run, ["git", "init", "-q", str(repo)], check=True, timeout=30)
        run = await codex_exec(codex_bin, codex_home=home, workdir=repo, virtual_key="unused", prompt="Say hi.")
        assert run.returncode == 0, f"codex failed:\n{run.stdout}\n{run.stderr}"
        assert [s.path for s in h.fake.served] == ["/v1/responses"]
        [event] = await eventually(lambda: published_usage(h.runtime.pool), what="usage event")
        assert (event.status, event.client, event.repo) == ("ok", "codex_exec", str(repo))
