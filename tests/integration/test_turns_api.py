"""``GET /v1/turns``, ``POST /v1/evals`` and ``spendgate turns`` over a real database: filters, roles, and
hostile evaluation input refused clearly with nothing stored."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner

from spendgate.admin.app import create_app
from spendgate.admin.console.auth_chain import RESOLVERS
from spendgate.admin.console.identity import Identity, Role
from spendgate.admin.deps import Deps
from spendgate.cli import main
from spendgate.domain.outcomes import MAX_EVAL_BATCH
from spendgate.store.usage.store import insert_events
from tests.support.admin_server import ADMIN_TOKEN, NOW, admin_client, admin_settings, auth
from tests.support.factories import usage_event

AT = NOW - timedelta(hours=2)


async def seed(pool: asyncpg.Pool) -> None:
    """Turn t-a (platform, session s-1): a tool call, then a final answer. Turn t-b (payments, s-2): one
    request that failed upstream."""
    await insert_events(pool, [
        usage_event(turn_id="t-a", session_id="s-1", occurred_at=AT, final_message=False),
        usage_event(turn_id="t-a", session_id="s-1", occurred_at=AT + timedelta(seconds=30), tool_outputs=1,
                    final_message=True),
        usage_event(turn_id="t-b", session_id="s-2", team="payments", developer="bob", occurred_at=AT,
                    status="upstream_error", http_status=500, final_message=None),
    ])


def evals(*items: dict[str, object]) -> dict[str, object]:
    return {"evaluations": list(items)}


async def test_turns_filter_by_session_team_and_since(pool: asyncpg.Pool) -> None:
    """Every turn by default; one session's or team's when asked; none before since; bad input is a 400."""
    await seed(pool)
    async with admin_client(pool) as client:
        async def turn_ids(**params: str) -> list[str]:
            resp = await client.get("/v1/turns", headers=auth(), params=params)
            assert resp.status == 200, await resp.text()
            return [t["turn_id"] for t in (await resp.json())["turns"]]

        assert sorted(await turn_ids()) == ["t-a", "t-b"]
        assert await turn_ids(session="s-1") == ["t-a"]
        assert await turn_ids(team="payments") == ["t-b"]
        assert await turn_ids(since=(NOW - timedelta(minutes=5)).isoformat()) == []
        resp = await client.get("/v1/turns", headers=auth(), params={"team": "payments"})
        (b,) = (await resp.json())["turns"]
        assert (b["failed"], b["final_message"], b["score"]) == (1, False, 0.45)
        for params in ({"limit": "0"}, {"limit": "x"}, {"since": "yesterday"}, {"team": "x" * 300}):
            resp = await client.get("/v1/turns", headers=auth(), params=params)
            assert resp.status == 400 and (await resp.json())["error"]["message"], params


async def test_hostile_evaluations_are_refused_clearly_and_nothing_is_stored(pool: asyncpg.Pool) -> None:
    """NaN, out of range, a string score, unknown fields, a batch over the cap, a huge body, an unknown turn
    and a developer's identity: each refused with a message saying why; no row written by any of them."""
    await seed(pool)
    ok = {"turn_id": "t-a", "score": 0.5, "evaluator": "evals"}
    async with admin_client(pool) as client:
        async def refused(body: bytes, status: int, *words: str) -> None:
            resp = await client.post("/v1/evals", headers={**auth(), "Content-Type": "application/json"}, data=body)
            message = (await resp.json())["error"]["message"]
            assert resp.status == status and all(w in message for w in words), (status, message)

        await refused(b'{"evaluations": [{"turn_id": "t-a", "score": NaN, "evaluator": "e"}]}', 400, "NaN")
        await refused(json.dumps(evals({**ok, "score": 1.01})).encode(), 400, "<= 1.0")
        await refused(json.dumps(evals({**ok, "score": -1})).encode(), 400, ">= 0.0")
        await refused(json.dumps(evals({**ok, "score": "0.5"})).encode(), 400, "Expected `float")
        await refused(json.dumps(evals({**ok, "comment": "the prompt was..."})).encode(), 400, "comment")
        await refused(json.dumps(evals()).encode(), 400, "length >= 1")
        await refused(json.dumps(evals(*[ok] * (MAX_EVAL_BATCH + 1))).encode(), 400, f"<= {MAX_EVAL_BATCH}")
        await refused(json.dumps(evals({**ok, "pad": "x" * 600_000})).encode(), 413, "split the batch")
        await refused(json.dumps(evals(ok, {**ok, "turn_id": "t-nobody"})).encode(), 400, "t-nobody")

        async def chunked() -> AsyncIterator[bytes]:
            yield b'{"evaluations": ['
            for _ in range(200):
                yield b'{"turn_id": "t-a", "score": 0.5, "evaluator": "' + b"x" * 4000 + b'"},'

        resp = await client.post("/v1/evals", headers={**auth(), "Content-Type": "application/json"}, data=chunked())
        assert resp.status == 413 and "Content-Length" not in resp.request_info.headers
        assert await pool.fetchval("SELECT count(*) FROM turn_evals") == 0
        resp = await client.post("/v1/evals", headers=auth(), json=evals(ok, {**ok, "score": 0.75}))
        assert resp.status == 200 and await resp.json() == {"recorded": 1}
        assert await pool.fetchval("SELECT score FROM turn_evals WHERE turn_id = 't-a'") == 0.75

    settings = admin_settings()
    app = create_app(Deps(pool, settings, settings.pricing.table(), now=lambda: NOW))
    developer = Identity(subject="d", name="D", role=Role.DEVELOPER, developer="alice")

    async def as_developer(_request: web.Request) -> Identity:
        return developer

    app[RESOLVERS].insert(0, as_developer)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        resp = await client.post("/v1/evals", json=evals(ok))
        assert resp.status == 403 and "admins and FinOps" in (await resp.json())["error"]["message"]
        resp = await client.get("/v1/turns")
        assert resp.status == 403


async def test_spendgate_turns_prints_table_json_and_csv(pool: asyncpg.Pool, db_url: str, tmp_path: Path) -> None:
    """The CLI lists the same turns in each format; a bad --since is one error line, no traceback."""
    await seed(pool)
    env = {"SPENDGATE_DATABASE_URL": db_url, "SPENDGATE_DATA_DIR": str(tmp_path), "SPENDGATE_ADMIN_TOKEN": ADMIN_TOKEN,
           "SPENDGATE_LOG_LEVEL": "error", "SPENDGATE_ADMIN_URL": ""}

    async def cli(*args: str) -> tuple[int, str]:
        result = await asyncio.to_thread(CliRunner().invoke, main, ["turns", *args], env=env, catch_exceptions=False)
        return result.exit_code, result.output

    since = ["--since", (AT - timedelta(days=1)).date().isoformat()]
    code, out = await cli(*since, "--format", "json")
    assert code == 0 and sorted(t["turn_id"] for t in json.loads(out)["turns"]) == ["t-a", "t-b"]
    code, out = await cli(*since, "--team", "platform", "--format", "csv")
    assert code == 0 and out.splitlines()[0].startswith("turn_id,") and "t-a" in out and "t-b" not in out
    code, out = await cli(*since, "--session", "s-1")
    assert code == 0 and "t-a" in out and "derived" in out
    code, out = await cli("--since", "last tuesday")
    assert code == 2 and "Traceback" not in out and "--since" in out
