"""``GET /v1/spendgate/me`` (issue 14, item 3) through the real proxy, real PostgreSQL, the Postgres bus and
the real ledger folding what the proxy metered: a developer's own budgets, spend and sessions, nothing of
anyone else's, OpenAI-shaped refusals, and never forwarded upstream nor evented."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from click.testing import CliRunner, Result

from spendgate.cli import main
from spendgate.domain.enforcement.policy import budget_of
from spendgate.store.budgets import store as budgets_store
from spendgate.store.keys import store as vkeys
from tests.support.ledger import serving_ledger
from tests.support.ports import free_port
from tests.support.proxy_harness import Harness, published_usage, running_proxy
from tests.support.waiting import eventually

USD = 1_000_000


async def ask_model(http: aiohttp.ClientSession, h: Harness, secret: str, session: str) -> None:
    body = {"model": "gpt-5.1", "input": "hello"}
    headers = {"Authorization": f"Bearer {secret}", "session-id": session}
    async with http.post(f"{h.base_url}/responses", json=body, headers=headers) as resp:
        assert resp.status == 200, await resp.text()


async def get_me(http: aiohttp.ClientSession, h: Harness, secret: str | None = None,
                 query: str = "") -> tuple[int, Any, str]:
    headers = {"Authorization": f"Bearer {secret if secret is not None else h.secret}"}
    async with http.get(f"{h.base_url}/spendgate/me{query}", headers=headers) as resp:
        text = await resp.text()
        return resp.status, await resp.json(content_type=None), text


async def folded(pool: asyncpg.Pool, n: int) -> None:
    await eventually(lambda: pool.fetchval("SELECT count(*) FROM usage_events"), until=lambda c: c >= n,
                     what=f"{n} events folded")


async def costs_by_session(pool: asyncpg.Pool) -> dict[str, int]:
    rows = await pool.fetch("SELECT session_id, sum(cost_micros)::bigint AS c FROM usage_events GROUP BY 1")
    return {r["session_id"]: int(r["c"]) for r in rows}


async def test_me_shows_own_budgets_spend_and_sessions_and_nobody_elses(db_url: str, tmp_path: Path) -> None:
    """After folded traffic of two developers, /me shows the caller's budgets, exact spend, today and sessions only."""
    async with running_proxy(db_url, tmp_path) as h, serving_ledger(db_url, tmp_path / "ledger"), \
            aiohttp.ClientSession() as http:
        pool = h.runtime.pool
        bob = await vkeys.create_key(pool, developer="bob", team="platform")
        carol = await vkeys.create_key(pool, developer="carol", team="payments")
        for b in (budget_of("developer:alice", daily_micros=5 * USD, monthly_micros=None),
                  budget_of("team:platform", daily_micros=None, monthly_micros=100 * USD),
                  budget_of("cost_center:cc-42", daily_micros=None, monthly_micros=200 * USD),
                  budget_of("org", daily_micros=None, monthly_micros=1000 * USD),
                  budget_of("org", daily_micros=None, monthly_micros=50 * USD, model="gpt-5.1"),
                  budget_of("developer:bob", daily_micros=1 * USD, monthly_micros=None),
                  budget_of("team:payments", daily_micros=None, monthly_micros=9 * USD)):
            await budgets_store.set_budget(pool, b, actor="test")

        async def known() -> int:
            return len(h.server.keys)

        await eventually(known, until=lambda n: n == 3, what="the proxy knows the keys")
        for secret, session in ((h.secret, "alice-a"), (h.secret, "alice-a"), (h.secret, "alice-b"),
                                (bob.secret, "bob-secret-work"), (carol.secret, "carol-secret-work")):
            await ask_model(http, h, secret, session)
        await folded(pool, 5)
        served, events = len(h.fake.served), len(await published_usage(pool))
        cost = await costs_by_session(pool)
        alice = cost["alice-a"] + cost["alice-b"]

        status, me, text = await get_me(http, h)

        assert status == 200
        assert (me["object"], me["developer"], me["team"], me["cost_center"]) == (
            "spendgate.me", "alice", "platform", "cc-42")
        lines = {(b["scope"], b["model"], b["period"]): b for b in me["budgets"]}
        assert list(lines) == [("developer:alice", None, "day"), ("team:platform", None, "month"),
                               ("cost_center:cc-42", None, "month"), ("org", None, "month"),
                               ("org", "gpt-5.1", "month")]
        assert lines[("developer:alice", None, "day")]["spent_micros"] == alice
        assert lines[("developer:alice", None, "day")]["remaining_micros"] == 5 * USD - alice
        assert lines[("team:platform", None, "month")]["spent_micros"] == alice + cost["bob-secret-work"]
        assert lines[("org", None, "month")]["spent_micros"] == sum(cost.values())
        assert lines[("org", "gpt-5.1", "month")]["spent_micros"] == sum(cost.values())
        assert {b["stage"] for b in me["budgets"]} == {"ok"}
        today = datetime.now(UTC).date()
        assert me["today"] == {"date": today.isoformat(), "timezone": "UTC", "cost_micros": alice}
        resets = datetime.fromisoformat(lines[("developer:alice", None, "day")]["resets_at"])
        assert resets == datetime.combine(today + timedelta(days=1), time(), UTC)
        assert [(s["session_id"], s["cost_micros"], s["requests"]) for s in me["top_sessions"]] == sorted(
            [("alice-a", cost["alice-a"], 2), ("alice-b", cost["alice-b"], 1)], key=lambda s: -s[1])
        for stranger in ("bob", "carol", "payments", bob.key.key_id, carol.key.key_id):
            assert stranger not in text
        # answered by the proxy itself: nothing forwarded, nothing metered
        assert len(h.fake.served) == served
        assert len(await published_usage(pool)) == events


async def test_me_refuses_missing_unknown_and_revoked_keys_in_openai_shape(db_url: str, tmp_path: Path) -> None:
    """No key, a made-up key and a revoked key each get OpenAI's 401 invalid_api_key, nothing forwarded."""
    async with running_proxy(db_url, tmp_path) as h, aiohttp.ClientSession() as http:
        async with http.get(f"{h.base_url}/spendgate/me") as resp:
            assert resp.status == 401
            assert (await resp.json())["error"]["code"] == "invalid_api_key"
        status, body, _ = await get_me(http, h, "sk-sg-" + "x" * 40)
        assert status == 401 and body["error"]["type"] == "invalid_request_error"
        assert body["error"]["code"] == "invalid_api_key"
        assert (await get_me(http, h))[0] == 200
        await vkeys.revoke_key(h.runtime.pool, h.key.key_id)
        status, body, _ = await eventually(lambda: get_me(http, h), until=lambda r: r[0] == 401,
                                           what="the revoked key refused")
        assert body["error"]["code"] == "invalid_api_key" and "revoked" in body["error"]["message"]
        assert h.fake.served == []


async def test_me_rejects_hostile_queries_and_other_methods(db_url: str, tmp_path: Path) -> None:
    """Bad or unknown parameters are 400s in OpenAI's shape; other methods are not routes; sessions=0 lists none."""
    async with running_proxy(db_url, tmp_path) as h, aiohttp.ClientSession() as http:
        for query, code in (("?sessions=-1", "invalid_value"), ("?sessions=51", "invalid_value"),
                            ("?sessions=abc", "invalid_value"), ("?sessions=%EF%BC%95", "invalid_value"),
                            ("?sessions=1&sessions=2", "invalid_value"), ("?developer=bob", "unknown_parameter"),
                            ("?sessions=1&" + "x" * 400, "invalid_request")):
            status, body, text = await get_me(http, h, query=query)
            assert status == 400, query
            assert body["error"]["code"] == code, query
            assert "x" * 50 not in text
        status, body, _ = await get_me(http, h, query="?sessions=0")
        assert status == 200 and body["top_sessions"] == []
        async with http.post(f"{h.base_url}/spendgate/me", headers=h.headers(), json={}) as resp:
            assert resp.status == 404
            assert (await resp.json())["error"]["code"] == "unknown_route"
        assert h.fake.served == []


def spendgate_me(*args: str, **env: str) -> Result:
    base = {"SPENDGATE_LOG_LEVEL": "error", "SPENDGATE_CONFIG": "", "OPENAI_API_KEY": "", "OPENAI_BASE_URL": ""}
    return CliRunner().invoke(main, ["me", *args], env={**base, **env})


def one_error(result: Result) -> str:
    assert result.exit_code not in (0, None) and "Traceback" not in result.output, result.output
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: "), line
    return line


async def test_spendgate_me_prints_the_gateways_answer_as_table_csv_and_json(db_url: str, tmp_path: Path) -> None:
    """`spendgate me` with OPENAI_API_KEY/OPENAI_BASE_URL (or --key/--base-url) prints the proxy's /me answer."""
    async with running_proxy(db_url, tmp_path) as h, aiohttp.ClientSession() as http:
        await budgets_store.set_budget(h.runtime.pool, budget_of("team:platform", daily_micros=None,
                                                                 monthly_micros=100 * USD), actor="test")
        env = {"OPENAI_API_KEY": h.secret, "OPENAI_BASE_URL": h.base_url}
        shown = await asyncio.to_thread(spendgate_me, **env)
        assert shown.exit_code == 0, shown.output
        assert "alice  team platform  cost center cc-42" in shown.stdout
        assert re.search(r"team:platform\s+-\s+month\s+\$0\.00\s+\$100\.00\s+\$100\.00\s+ok", shown.stdout)
        as_json = await asyncio.to_thread(spendgate_me, "--format", "json", "--sessions", "3", **env)
        direct = (await get_me(http, h, query="?sessions=3"))[1]
        assert json.loads(as_json.stdout) | {"as_of": None} == direct | {"as_of": None}
        as_csv = await asyncio.to_thread(spendgate_me, "--format", "csv", "--key", h.secret,
                                         "--base-url", h.base_url.removesuffix("/v1"))
        rows = list(csv.reader(io.StringIO(as_csv.stdout)))
        assert rows[0][:3] == ["scope", "model", "period"] and rows[1][0] == "team:platform"
        assert rows[1][rows[0].index("budget_usd")] == "100.000000"


async def test_spendgate_me_says_in_one_line_what_went_wrong(db_url: str, tmp_path: Path) -> None:
    """No key, a provider key, a refused key, no gateway, a server that is not spendgate: one error line each."""
    async with running_proxy(db_url, tmp_path) as h:
        nothing = f"http://127.0.0.1:{free_port()}/v1"
        cases = [
            ({}, "no key", 2),
            ({"OPENAI_API_KEY": "sk-proj-a-real-provider-key-0123456789"}, "not a spendgate virtual key", 1),
            ({"OPENAI_API_KEY": "sk-sg-" + "z" * 40, "OPENAI_BASE_URL": h.base_url}, "refused the key", 1),
            ({"OPENAI_API_KEY": h.secret, "OPENAI_BASE_URL": nothing}, "cannot reach the gateway", 1),
            ({"OPENAI_API_KEY": h.secret, "OPENAI_BASE_URL": h.upstream.url}, "is not a spendgate gateway", 1),
            ({"OPENAI_API_KEY": h.secret, "OPENAI_BASE_URL": "ftp://example.com"}, "http(s) URL", 2),
        ]
        for env, said, code in cases:
            result = await asyncio.to_thread(spendgate_me, **env)
            assert said in one_error(result), (env, result.stderr)
            assert result.exit_code == code, (env, result.exit_code)
        assert h.fake.served == []


async def test_me_reads_are_capped_and_time_limited(db_url: str, tmp_path: Path) -> None:
    """While the budgets table is locked, 4 reads wait and end in a 503 after 3 s; a 5th at once is a 429."""
    async with running_proxy(db_url, tmp_path) as h, aiohttp.ClientSession() as http:
        async with h.runtime.pool.acquire() as locker, locker.transaction():
            await locker.execute("LOCK TABLE budgets IN ACCESS EXCLUSIVE MODE")
            waiting = [asyncio.create_task(get_me(http, h)) for _ in range(4)]

            async def blocked() -> int:
                return int(await h.runtime.pool.fetchval(
                    "SELECT count(*) FROM pg_locks WHERE relation = 'budgets'::regclass AND NOT granted"))

            await eventually(blocked, until=lambda n: n == 4, what="four reads waiting on the lock")
            status, body, _ = await get_me(http, h)
            assert status == 429 and body["error"]["code"] == "rate_limit_exceeded"
            started = asyncio.get_running_loop().time()
            answers = await asyncio.gather(*waiting)
            assert [a[0] for a in answers] == [503] * 4
            assert {a[1]["error"]["code"] for a in answers} == {"spend_unavailable"}
            assert asyncio.get_running_loop().time() - started < 3.5
        assert (await get_me(http, h))[0] == 200
