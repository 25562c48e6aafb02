"""The admin API over a real database: the admin token guards every call, errors are JSON, the
OpenAPI document matches the routes, and the API answers exactly what the CLI's functions compute."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

import asyncpg
import msgspec
import pytest

from spendgate.admin.app import operations
from spendgate.admin.console.auth_chain import is_api
from spendgate.admin.reports import Chargeback, chargeback
from spendgate.admin.window import Window
from spendgate.store.keys import store as keys
from tests.support.admin_server import ADMIN_TOKEN, NOW, admin_client, auth
from tests.support.admin_traffic import PRICES, fold_through_ledger, known_month


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "team:platform", path)


async def test_every_operation_refuses_calls_without_the_admin_token(pool: asyncpg.Pool) -> None:
    """No header, a wrong token, a Basic scheme or an empty bearer: 401 with a JSON error, on every route."""
    async with admin_client(pool) as client:
        for op in operations():
            for headers in ({}, auth("wrong"), auth(ADMIN_TOKEN + "x"), {"Authorization": f"Basic {ADMIN_TOKEN}"},
                            {"Authorization": "Bearer "}, {"X-Admin-Token": ADMIN_TOKEN}):
                resp = await client.request(op.method, _concrete(op.path), headers=headers, json={})
                assert resp.status == 401, (op.path, headers)
                body = await resp.json()
                assert body["error"]["type"] == "unauthorized" and "admin token" in body["error"]["message"]


async def test_a_virtual_key_is_not_an_admin_credential(pool: asyncpg.Pool) -> None:
    """A real, active virtual key presented as the bearer token is refused like any wrong token."""
    created = await keys.create_key(pool, developer="alice", team="platform")
    async with admin_client(pool) as client:
        for path in ("/v1/keys", "/v1/reports/chargeback", "/openapi.json"):
            resp = await client.get(path, headers=auth(created.secret))
            assert resp.status == 401
        ok = await client.get("/v1/keys", headers=auth())
        assert ok.status == 200


async def test_without_a_configured_token_every_call_is_refused(pool: asyncpg.Pool) -> None:
    """An admin API with no SPENDGATE_ADMIN_TOKEN set refuses everything, even an empty bearer."""
    from spendgate.core.config import Settings

    async with admin_client(pool, Settings(admin_token=None)) as client:
        for headers in ({}, auth(""), auth(ADMIN_TOKEN)):
            assert (await client.get("/v1/keys", headers=headers)).status == 401


async def test_the_openapi_document_describes_exactly_the_routes_served(pool: asyncpg.Pool) -> None:
    """Every served API route is documented with its method, and every documented operation is served (the
    console's pages are HTML, not API operations)."""
    async with admin_client(pool) as client:
        doc = await (await client.get("/openapi.json", headers=auth())).json()
        served = {(r.method, r.resource.canonical) for r in client.app.router.routes()  # type: ignore[union-attr]
                  if r.method != "HEAD" and r.resource is not None and is_api(r.resource.canonical)}
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert doc["openapi"] == "3.1.0"
    assert served == documented
    for ops in doc["paths"].values():
        for spec in ops.values():
            assert "401" in spec["responses"] and spec["security"] == [{"adminToken": []}]


async def test_chargeback_over_the_api_is_what_the_report_function_returns(pool: asyncpg.Pool) -> None:
    """The API's chargeback JSON decodes to exactly the report the CLI computes from the database."""
    await fold_through_ledger(pool, known_month())
    window = Window.of(date(2026, 11, 1), date(2026, 11, 30), tz="UTC", now=NOW)
    async with admin_client(pool) as client:
        for by in ("session", "developer", "team", "repo"):
            resp = await client.get("/v1/reports/chargeback", headers=auth(),
                                    params={"by": by, "from": "2026-11-01", "to": "2026-11-30"})
            assert resp.status == 200
            via_api = msgspec.json.decode(await resp.read(), type=Chargeback)
            assert via_api == await chargeback(pool, PRICES, by=by, window=window)


@pytest.mark.parametrize(("path", "message"), [
    ("/v1/reports/chargeback?by=planet", "by must be one of"),
    ("/v1/reports/chargeback?from=2026-13-01", "from must be a date"),
    ("/v1/reports/chargeback?from=2026-11-30&to=2026-11-01", "is before --from"),
    ("/v1/reports/cache?flag_below_pct=150", "between 0 and 100"),
    ("/v1/turns?session_id=s-1", "unknown query parameter 'session_id': GET /v1/turns takes limit, session, since"),
    ("/v1/keys?x" + "y" * 5_000 + "=1", "unknown query parameter 'xyyyy"),
    # the handler read the first and answered 200 for one day of turns
    ("/v1/policy/suggestions?days=1&days=90", "query parameter 'days' is given more than once"),
    ("/v1/policy/versions?limit=5&limit=6", "query parameter 'limit' is given more than once"),
])
async def test_bad_queries_get_a_json_400_that_says_what_is_wrong(pool: asyncpg.Pool, path: str,
                                                                 message: str) -> None:
    """Invalid report parameters are a 400 whose JSON message names the problem."""
    async with admin_client(pool) as client:
        resp = await client.get(path, headers=auth())
        assert resp.status == 400
        body = await resp.json()
        assert body["error"]["type"] == "bad_request" and message in body["error"]["message"]
        assert len(body["error"]["message"]) < 300  # nothing is echoed whole


async def test_unknown_session_and_unknown_route_are_json_404s(pool: asyncpg.Pool) -> None:
    """A session with no usage and a path that does not exist both answer a JSON 404."""
    async with admin_client(pool) as client:
        for path in ("/v1/sessions/nope", "/v1/nowhere"):
            resp = await client.get(path, headers=auth())
            assert resp.status == 404 and (await resp.json())["error"]["type"] == "not_found"


async def test_keys_are_created_listed_and_revoked_through_the_api(pool: asyncpg.Pool) -> None:
    """POST returns the secret once; GET lists the key without it; DELETE revokes; revoking a ghost is 404."""
    async with admin_client(pool) as client:
        resp = await client.post("/v1/keys", headers=auth(), json={"developer": "carol", "team": "payments"})
        assert resp.status == 201
        created = await resp.json()
        assert created["secret"].startswith("sk-sg-") and created["key"]["cost_center"] == "payments"
        listed = await (await client.get("/v1/keys", headers=auth())).json()
        assert [k["key_id"] for k in listed["keys"]] == [created["key"]["key_id"]]
        assert created["secret"] not in str(listed)
        revoked = await (await client.delete(f"/v1/keys/{created['key']['key_id']}", headers=auth())).json()
        assert revoked["active"] is False
        assert (await client.delete("/v1/keys/ghost", headers=auth())).status == 404
        bad = await client.post("/v1/keys", headers=auth(), json={"developer": "", "team": "x"})
        assert bad.status == 400


async def test_revoking_an_ambiguous_prefix_is_a_conflict(pool: asyncpg.Pool) -> None:
    """A prefix shared by two keys is refused with 409 and revokes neither."""
    async with admin_client(pool) as client:
        for dev in ("dana", "eve"):
            assert (await client.post("/v1/keys", headers=auth(), json={"developer": dev, "team": "t"})).status == 201
        await pool.execute("UPDATE virtual_keys SET key_prefix = 'sk-sg-shared'")
        resp = await client.delete("/v1/keys/sk-sg-shared", headers=auth())
        assert resp.status == 409 and "matches 2 keys" in (await resp.json())["error"]["message"]
        assert await pool.fetchval("SELECT count(*) FROM virtual_keys WHERE revoked_at IS NULL") == 2


async def test_budgets_and_raises_round_trip_through_the_api(pool: asyncpg.Pool) -> None:
    """PUT sets a budget (later PUTs change only the given fields), POST raises it, GET shows both, DELETE
    removes it; a raise without a budget is 409."""
    async with admin_client(pool) as client:
        put = await client.put("/v1/budgets/team:platform", headers=auth(),
                               json={"daily": "40", "monthly": "800.50", "at_pause": "cheapest"})
        assert put.status == 200 and (await put.json())["monthly_micros"] == 800_500_000
        changed = await (await client.put("/v1/budgets/team:platform", headers=auth(), json={"daily": "50"})).json()
        assert (changed["daily_micros"], changed["monthly_micros"], changed["at_pause"], changed["thresholds_pct"]) == (
            50_000_000, 800_500_000, "cheapest", [80, 95, 110])
        raised = await client.post("/v1/budgets/team:platform/raises", headers=auth(),
                                   json={"by": "20", "until": "2026-12-02T00:00:00Z", "reason": "release week"})
        assert raised.status == 201
        listed = await (await client.get("/v1/budgets", headers=auth())).json()
        assert [b["scope"] for b in listed["budgets"]] == ["team:platform"]
        assert [r["amount_micros"] for r in listed["raises"]] == [20_000_000]
        orphan = await client.post("/v1/budgets/team:ghosts/raises", headers=auth(),
                                   json={"by": "1", "until": "2026-12-02T00:00:00Z", "reason": "x"})
        assert orphan.status == 409
        bad_scope = await client.put("/v1/budgets/planet:mars", headers=auth(), json={"daily": "1"})
        assert bad_scope.status == 400 and "bad scope" in (await bad_scope.json())["error"]["message"]
        assert (await client.delete("/v1/budgets/team:platform", headers=auth())).status == 200
        assert (await client.delete("/v1/budgets/team:platform", headers=auth())).status == 404


async def test_forecasts_and_teams_are_served_from_the_forecaster_and_ledger_tables(pool: asyncpg.Pool) -> None:
    """The latest forecast per scope comes back with its bands; teams list cost centers, developers and spend."""
    await fold_through_ledger(pool, known_month())
    for as_of, p50 in ((date(2026, 11, 20), 70_000_000), (date(2026, 11, 21), 75_000_000)):
        await pool.execute(
            """INSERT INTO forecasts (scope, as_of, forecast_id, month, computed_at, actual_micros, p10_micros,
                   p50_micros, p90_micros, budget_micros, p50_crosses_on, model, inputs, band)
               VALUES ('org', $1, gen_random_uuid(), '2026-11-01', now(), 1, 2, $2, 4, 5, '2026-11-25', 'bootstrap',
                   '{}', '[]')""", as_of, p50)
    async with admin_client(pool, now=datetime(2026, 11, 25, tzinfo=UTC)) as client:
        forecasts = await (await client.get("/v1/forecasts", headers=auth())).json()
        teams = await (await client.get("/v1/teams", headers=auth())).json()
    assert [(f["scope"], f["as_of"], f["p50_micros"]) for f in forecasts["forecasts"]] == [
        ("org", "2026-11-21", 75_000_000)]
    spent = {r["scope"]: r["spent_micros"] for r in await pool.fetch(
        "SELECT scope, spent_micros FROM balances WHERE period = 'month' AND period_start = '2026-11-01'")}
    assert teams["month"] == "2026-11-01"
    assert {t["team"]: (t["cost_centers"], t["month_spent_micros"]) for t in teams["teams"]} == {
        "platform": (["CC-100"], spent["team:platform"]), "payments": (["CC-200"], spent["team:payments"]),
        "data": (["CC-300"], spent["team:data"])}
