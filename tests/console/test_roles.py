"""Roles on the admin API and the console: named API tokens and sign-in sessions each carry a role, every
operation asks the role rules, changes from a browser need the CSRF token, and every change is audited
with the real identity (real PostgreSQL, the real ledger fold, a real OIDC provider)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from tests.support.admin_server import auth
from tests.support.admin_traffic import fold_through_ledger, usage
from tests.support.oidc import Clock, MockIdP, console_client, csrf_of, sign_in

NOV = datetime(2026, 11, 10, 9, tzinfo=UTC)
WINDOW = {"from": "2026-11-01", "to": "2026-11-30"}


async def _traffic(pool: asyncpg.Pool) -> None:
    """alice and bob (platform), carol (payments): one session each."""
    events = [usage(developer=d, session_id=f"s-{d}", turn_id="t1", repo="api", at=NOV + timedelta(minutes=i),
                    model_requested="gpt-5.1", input_tokens=1000, cached_tokens=0, output_tokens=100)
              for i, d in enumerate(("alice", "bob", "carol"))]
    await fold_through_ledger(pool, events)


async def _token(client: TestClient, name: str, role: str, **scope: Any) -> str:  # type: ignore[type-arg]
    resp = await client.post("/v1/tokens", headers=auth(), json={"name": name, "role": role, **scope})
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    assert body["secret"].startswith("sg-at-") and "secret" not in body["token"]
    return str(body["secret"])


async def _error(resp: Any) -> str:
    body = await resp.json()
    return str(body["error"]["type"])


async def test_a_developer_token_reads_only_its_own_spend(pool: asyncpg.Pool, idp: MockIdP) -> None:
    """Chargeback, sessions, keys and teams narrowed to the developer; someone else's developer, team or
    session id (guessed) is a 403 in the API's error shape; changes are refused."""
    await _traffic(pool)
    async with console_client(pool, idp) as client:
        alice = auth(await _token(client, "alice-laptop", "developer", developer="alice"))
        own = await (await client.get("/v1/reports/chargeback", headers=alice,
                                      params={"by": "developer", **WINDOW})).json()
        assert [line["group"] for line in own["lines"]] == ["alice"]
        for params in ({"developer": "bob"}, {"team": "payments", "developer": "carol"}):
            resp = await client.get("/v1/reports/chargeback", headers=alice, params={**params, **WINDOW})
            assert resp.status == 403 and await _error(resp) == "forbidden"
        assert (await client.get("/v1/sessions/s-alice", headers=alice)).status == 200
        other = await client.get("/v1/sessions/s-bob", headers=alice)  # looked up among alice's own only:
        assert other.status == 404 and "of developer 'alice'" in await other.text()  # not even that it exists
        for guessed in ("/v1/sessions/s-carol?developer=carol", "/v1/budgets/team:platform",
                        "/v1/alerts/dead-letters", "/v1/reconciliation", "/v1/policy", "/v1/rate-limits",
                        "/v1/tokens", "/v1/alerts?scope=team:payments"):
            resp = await client.get(guessed, headers=alice)
            assert resp.status == 403 and await _error(resp) == "forbidden", guessed
        assert (await (await client.get("/v1/teams", headers=alice)).json())["teams"] == []
        changes = [("PUT", "/v1/budgets/developer:alice", {"monthly": "1000"}),
                   ("POST", "/v1/keys", {"developer": "alice", "team": "platform"}),
                   ("PUT", "/v1/rate-limits/developer:alice", {"rpm": 1000}),
                   ("POST", "/v1/tokens", {"name": "x", "role": "admin"})]
        for method, path, body in changes:
            assert (await client.request(method, path, headers=alice, json=body)).status == 403, path


async def test_a_manager_reads_and_raises_only_their_teams(pool: asyncpg.Pool, idp: MockIdP) -> None:
    """A manager token of platform: platform's usage, not payments'; a raise within
    console.manager_raise_limit_usd on their team is taken (and audited), above it or on another team is not."""
    await _traffic(pool)
    async with console_client(pool, idp, manager_raise_limit_usd="100") as client:
        for scope in ("team:platform", "team:payments"):
            assert (await client.put(f"/v1/budgets/{scope}", headers=auth(), json={"monthly": "500"})).status == 200
        for dev, team in (("alice", "platform"), ("carol", "payments")):
            assert (await client.post("/v1/keys", headers=auth(), json={"developer": dev, "team": team})).status == 201
        mgr = auth(await _token(client, "platform-lead", "manager", teams=["platform"]))
        lines = (await (await client.get("/v1/reports/chargeback", headers=mgr,
                                         params={"by": "developer", **WINDOW})).json())["lines"]
        assert sorted(line["group"] for line in lines) == ["alice", "bob"]
        assert (await client.get("/v1/reports/chargeback", headers=mgr,
                                 params={"team": "payments", **WINDOW})).status == 403
        assert (await client.get("/v1/sessions/s-bob", headers=mgr)).status == 200
        assert (await client.get("/v1/sessions/s-carol", headers=mgr)).status == 403
        teams = (await (await client.get("/v1/teams", headers=mgr)).json())["teams"]
        assert [t["team"] for t in teams] == ["platform"]
        keys = (await (await client.get("/v1/keys", headers=mgr)).json())["keys"]
        assert [k["developer"] for k in keys] == ["alice"]
        budgets = (await (await client.get("/v1/budgets", headers=mgr)).json())["budgets"]
        assert [b["scope"] for b in budgets] == ["team:platform"]
        until = (datetime.now(UTC) + timedelta(days=3)).isoformat()
        ok = await client.post("/v1/budgets/team:platform/raises", headers=mgr,
                               json={"by": "100", "until": until, "reason": "launch week"})
        assert ok.status == 201
        for scope, by in (("team:platform", "100.01"), ("team:payments", "10")):
            refused = await client.post(f"/v1/budgets/{scope}/raises", headers=mgr,
                                        json={"by": by, "until": until, "reason": "x"})
            assert refused.status == 403 and await _error(refused) == "forbidden"
        assert (await client.put("/v1/budgets/team:platform", headers=mgr, json={"monthly": "9999"})).status == 403
        actors = await pool.fetch(
            "SELECT actor, action FROM budget_audit WHERE scope = 'team:platform' ORDER BY changed_at")
        assert [(r["actor"], r["action"]) for r in actors] == [("admin-token:break-glass", "set"),
                                                               ("token:platform-lead", "raise")]


async def test_revoked_and_expired_tokens_are_refused(pool: asyncpg.Pool, idp: MockIdP) -> None:
    """A token works until revoked (then 401 naming it), and a token past its days is 401 too."""
    clock = Clock()
    async with console_client(pool, idp, clock) as client:
        ops = auth(await _token(client, "ops-bot", "finops", days=1))
        assert (await client.get("/v1/budgets", headers=ops)).status == 200
        clock.now += timedelta(days=1, seconds=1)
        expired = await client.get("/v1/budgets", headers=ops)
        assert expired.status == 401 and "expired" in (await expired.json())["error"]["message"]
        clock.now -= timedelta(days=1, seconds=1)
        assert (await client.delete("/v1/tokens/ops-bot", headers=auth())).status == 200
        revoked = await client.get("/v1/budgets", headers=ops)
        assert revoked.status == 401 and "revoked" in (await revoked.json())["error"]["message"]
        wrong = await client.get("/v1/budgets", headers=auth("sg-at-" + "x" * 43))
        assert wrong.status == 401
        listed = (await (await client.get("/v1/tokens?include_revoked=true", headers=auth())).json())["tokens"]
        assert [(t["name"], t["revoked_at"] is not None) for t in listed] == [("ops-bot", True)]
        bad = await client.post("/v1/tokens", headers=auth(), json={"name": "m", "role": "manager"})
        assert bad.status == 400 and "teams" in (await bad.json())["error"]["message"]


async def test_browser_changes_need_the_csrf_token_and_a_same_origin(pool: asyncpg.Pool, idp: MockIdP) -> None:
    """A signed-in FinOps session changes a budget only with its CSRF token (header or form field) and not
    from another origin; without the cookie the change is 401; a bearer token needs no CSRF token."""
    await idp.set_user("fay", name="Fay Finops", groups=["finops-team"])
    async with console_client(pool, idp) as client:
        await sign_in(client, "fay")
        token = csrf_of(await (await client.get("/")).text())
        body = {"monthly": "800"}
        no_token = await client.put("/v1/budgets/team:platform", json=body)
        assert no_token.status == 403 and "CSRF" in (await no_token.json())["error"]["message"]
        wrong = await client.put("/v1/budgets/team:platform", json=body, headers={"X-CSRF-Token": token + "x"})
        assert wrong.status == 403
        cross = await client.put("/v1/budgets/team:platform", json=body,
                                 headers={"X-CSRF-Token": token, "Origin": "https://evil.example"})
        assert cross.status == 403 and "cross-origin" in (await cross.json())["error"]["message"]
        ok = await client.put("/v1/budgets/team:platform", json=body,
                              headers={"X-CSRF-Token": token, "Origin": str(client.make_url("")).rstrip("/")})
        assert ok.status == 200
        client.session.cookie_jar.clear()
        cookieless = await client.put("/v1/budgets/team:platform", json=body, headers={"X-CSRF-Token": token})
        assert cookieless.status == 401
        bearer = await client.put("/v1/budgets/team:platform", json=body, headers=auth())
        assert bearer.status == 200
        actors = [r["actor"] for r in await pool.fetch("SELECT actor FROM budget_audit ORDER BY changed_at")]
        assert actors == ["oidc:fay", "admin-token:break-glass"]


async def test_a_change_shows_on_the_audit_page_with_the_signed_in_identity(pool: asyncpg.Pool,
                                                                          idp: MockIdP) -> None:
    """Sign-in, a key created and revoked, a budget set, a rate limit: each on /audit with who did it;
    filters and the CSV export agree; a developer gets 403 there."""
    await idp.set_user("ada", name="Ada Admin", groups=["sg-admins"])
    await idp.set_user("dev", name="Dev", groups=["engineers"], developer="alice")
    async with console_client(pool, idp) as client:
        await sign_in(client, "ada")
        csrf = {"X-CSRF-Token": csrf_of(await (await client.get("/")).text())}
        made = await (await client.post("/v1/keys", json={"developer": "alice", "team": "platform"},
                                        headers=csrf)).json()
        assert (await client.delete(f"/v1/keys/{made['key']['key_id']}", headers=csrf)).status == 200
        assert (await client.put("/v1/budgets/team:platform", json={"monthly": "700"}, headers=csrf)).status == 200
        assert (await client.put("/v1/rate-limits/team:platform", json={"rpm": 600}, headers=csrf)).status == 200
        page = await (await client.get("/audit")).text()
        for action in ("sign-in", "key.create", "key.revoke", "budget.set", "ratelimit.set"):
            assert f"<td>oidc:ada</td><td>{action}</td>" in page, action
        assert made["secret"] not in page
        keys_only = await (await client.get("/audit", params={"action": "key."})).text()
        assert "key.create" in keys_only and "budget.set" not in keys_only
        csv_text = await (await client.get("/audit", params={"action": "budget.", "format": "csv"})).text()
        assert csv_text.splitlines()[0] == "at,name,actor,action,target,detail"
        assert ",Ada Admin,oidc:ada,budget.set,team:platform," in csv_text and "key.create" not in csv_text
        assert "<td>Ada Admin</td><td>oidc:ada</td><td>key.create</td>" in page
        bad = await client.get("/audit", params={"since": "yesterday"})
        assert bad.status == 200 and "since must be a date" in await bad.text()
        client.session.cookie_jar.clear()
        await sign_in(client, "dev")
        assert (await client.get("/audit")).status == 403


async def test_guessed_page_urls_of_others_show_nothing_of_theirs(pool: asyncpg.Pool, idp: MockIdP) -> None:
    """A signed-in developer (alice) and a platform manager opening other people's team, developer and
    session pages get a refusal (403; 404 where the page is not built yet), never the page with their data."""
    await _traffic(pool)
    await idp.set_user("alice-sso", name="Alice", groups=["engineers"], developer="alice")
    await idp.set_user("lead", name="Lead", groups=["eng-managers"], teams=["platform"])
    guessed = {"alice-sso": ["/teams/platform", "/teams/payments", "/developers/bob", "/developers/carol",
                             "/sessions/s-bob", "/sessions/s-carol", "/audit"],
               "lead": ["/teams/payments", "/developers/carol", "/sessions/s-carol", "/audit"]}
    async with console_client(pool, idp) as client:
        for sub, paths in guessed.items():
            client.session.cookie_jar.clear()
            assert (await sign_in(client, sub)).status == 302
            for path in paths:
                resp = await client.get(path, allow_redirects=False)
                assert resp.status in (403, 404), (sub, path, resp.status)
                body = await resp.text()
                assert "s-carol" not in body or path.endswith("s-carol"), (sub, path)
