"""Issue 11 item 7: session ids come from headers, so retry counting must not trust them: sessions are
namespaced by the key's developer, and retries are counted per developer as well as per session."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from spendgate.admin import render
from spendgate.admin.reports import chargeback
from spendgate.admin.sessions import SessionAmbiguous, session_detail
from spendgate.admin.window import Window
from spendgate.ledger.rebuild import rebuild
from spendgate.store.keys import store as vkeys
from spendgate.store.usage.reads import top_sessions
from tests.support.enforced_proxy import Enforced, enforced_proxies
from tests.support.waiting import eventually

BODY = {"model": "gpt-5.1", "input": "run the migration again"}


def failing_call_body(i: int) -> dict[str, Any]:
    """A history trimmed to one failing `ls /nope` call (its chunk id differs per attempt)."""
    return {"model": "gpt-5.1", "input": [
        {"type": "message", "role": "user", "content": "list it"},
        {"type": "function_call", "name": "exec_command", "arguments": json.dumps({"cmd": "ls /nope"}),
         "call_id": f"c{i}"},
        {"type": "function_call_output", "call_id": f"c{i}",
         "output": f"Chunk ID: {i:04x}\nProcess exited with code 2\nOutput:\nls: /nope: No such file\n"},
    ]}


async def post(http: aiohttp.ClientSession, env: Enforced, body: dict[str, Any], secret: str | None = None,
               **headers: str) -> tuple[int, str | None]:
    auth = {"Authorization": f"Bearer {secret or env.secret}", **headers}
    async with http.post(env.url(), json=body, headers=auth) as resp:
        doc = await resp.json()
        return resp.status, (doc.get("error") or {}).get("code")


async def test_a_new_session_id_per_request_does_not_escape_the_retry_cap(db_url: str, tmp_path: Path) -> None:
    """The same body re-sent after failures, with a fresh session id each time, is refused from the fourth on."""
    async with enforced_proxies(db_url, tmp_path) as env, aiohttp.ClientSession() as http:
        results = [await post(http, env, BODY, **{"session-id": str(uuid.uuid4()), "x-fake-scenario": "error:500"})
                   for _ in range(5)]
    assert [status for status, _ in results] == [500, 500, 500, 429, 429]
    assert results[3][1] == "retry_budget_exhausted"


async def test_the_same_failing_command_in_fresh_sessions_is_counted_per_developer(db_url: str,
                                                                                   tmp_path: Path) -> None:
    """A failing command re-sent with its history trimmed and a new session id each time is still a retry loop."""
    async with enforced_proxies(db_url, tmp_path) as env, aiohttp.ClientSession() as http:
        results = [await post(http, env, failing_call_body(i), **{"session-id": str(uuid.uuid4())})
                   for i in range(5)]
    assert [status for status, _ in results] == [200, 200, 200, 429, 429]
    assert results[3][1] == "retry_budget_exhausted"


async def test_another_key_holder_cannot_use_up_a_sessions_retry_budget(db_url: str, tmp_path: Path) -> None:
    """Bob re-sending failed requests under Alice's session id does not count against Alice's session."""
    async with enforced_proxies(db_url, tmp_path) as env, aiohttp.ClientSession() as http:
        bob = await vkeys.create_key(env.pool, developer="bob", team="platform", cost_center="cc-42")
        await eventually(lambda: post(http, env, {"model": "gpt-5.1", "input": "hi"}, bob.secret),
                         until=lambda r: r[0] == 200, what="the proxy knowing bob's key")
        victim = {"session-id": "alice-session", "x-fake-scenario": "error:500"}
        bob_results = [await post(http, env, BODY, bob.secret, **victim) for _ in range(4)]
        alice = await post(http, env, BODY, **victim)
    assert [status for status, _ in bob_results] == [500, 500, 500, 429]
    assert alice == (500, "server_error")  # forwarded: Alice's session has no retries of its own


async def test_a_session_id_sent_by_another_developer_does_not_join_their_drill_down(db_url: str,
                                                                                     tmp_path: Path) -> None:
    """`sessions show <id>` is one developer's session: a foreign key's requests under the id are not in it,
    and without --developer an id two developers used is refused as ambiguous instead of merged."""
    async with enforced_proxies(db_url, tmp_path) as env, aiohttp.ClientSession() as http:
        bob = await vkeys.create_key(env.pool, developer="bob", team="ml", cost_center="cc-9")
        await eventually(lambda: post(http, env, {"model": "gpt-5.1", "input": "hi"}, bob.secret),
                         until=lambda r: r[0] == 200, what="the proxy knowing bob's key")
        shared = {"session-id": "019a-alice-session"}
        for i in range(2):
            assert (await post(http, env, {"model": "gpt-5.1", "input": f"alice {i}"}, **shared))[0] == 200
        assert (await post(http, env, {"model": "gpt-5.1", "input": "bob " * 500}, bob.secret, **shared))[0] == 200
        await eventually(lambda: env.pool.fetchval("SELECT count(*) FROM usage_events WHERE session_id = $1",
                                                   "019a-alice-session"),
                         until=lambda n: n == 3, what="the ledger folding the three requests")
        prices = env.runtimes[0].settings.pricing.table()
        with pytest.raises(SessionAmbiguous, match="alice, bob"):
            await session_detail(env.pool, prices, "019a-alice-session")
        mine = await session_detail(env.pool, prices, "019a-alice-session", "alice")
        alice_cost = await env.pool.fetchval(
            "SELECT sum(cost_micros) FROM usage_events WHERE session_id = $1 AND developer = 'alice'",
            "019a-alice-session")
    assert sum(t.requests for t in mine.turns) == 2
    assert mine.line.cost_micros == alice_cost


async def test_two_developers_with_one_session_id_get_two_session_lines(db_url: str, tmp_path: Path) -> None:
    """Bob sending Alice's session id gets a session line of his own instead of adding to hers: the ledger's
    sessions table, `sessions list` / chargeback --by session and alerts' top sessions each show (alice, id)
    and (bob, id), and `ledger rebuild` folds the same sessions table again."""
    sid = "019b-shared-session"
    async with enforced_proxies(db_url, tmp_path) as env, aiohttp.ClientSession() as http:
        bob = await vkeys.create_key(env.pool, developer="bob", team="ml", cost_center="cc-9")
        await eventually(lambda: post(http, env, {"model": "gpt-5.1", "input": "hi"}, bob.secret),
                         until=lambda r: r[0] == 200, what="the proxy knowing bob's key")
        for i in range(2):
            assert (await post(http, env, {"model": "gpt-5.1", "input": f"alice {i}"}, **{"session-id": sid}))[0] == 200
        assert (await post(http, env, {"model": "gpt-5.1", "input": "bob " * 500}, bob.secret,
                           **{"session-id": sid}))[0] == 200
        folded = "SELECT developer, requests, cost_micros FROM sessions WHERE session_id = $1 ORDER BY developer"
        table = await eventually(lambda: env.pool.fetch(folded, sid),
                                 until=lambda rows: sum(r["requests"] for r in rows) == 3,
                                 what="the ledger folding the three requests")
        spent = {r["developer"]: r["cost"] for r in await env.pool.fetch(
            "SELECT developer, sum(cost_micros)::bigint AS cost FROM usage_events WHERE session_id = $1 GROUP BY 1",
            sid)}
        now = datetime.now(UTC)
        window = Window(now.date(), now.date(), now - timedelta(hours=1), now + timedelta(hours=1))
        report = await chargeback(env.pool, env.runtimes[0].settings.pricing.table(), by="session", window=window)
        listed = render.sessions(report, "csv")
        top = await top_sessions(env.pool, "org", window.starts_at, window.ends_at, 10)
        await rebuild(env.pool)
        rebuilt = await env.pool.fetch(folded, sid)
    assert [(r["developer"], r["requests"], r["cost_micros"]) for r in table] == [
        ("alice", 2, spent["alice"]), ("bob", 1, spent["bob"])]
    lines = sorted((line.developer, line.requests, line.cost_micros) for line in report.lines if line.group == sid)
    assert lines == [("alice", 2, spent["alice"]), ("bob", 1, spent["bob"])]
    assert sorted(row.split(",")[1] for row in listed.splitlines() if row.startswith(f"{sid},")) == ["alice", "bob"]
    assert sorted((s.developer, s.requests) for s in top if s.session_id == sid) == [("alice", 2), ("bob", 1)]
    assert [tuple(r) for r in rebuilt] == [tuple(r) for r in table]
