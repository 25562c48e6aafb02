"""The admin API's rate limits: set, list, delete, and hostile values answered with a 400 naming the problem."""

from __future__ import annotations

import asyncpg
import pytest

from spendgate.store.ratelimits import store as ratelimits
from tests.support.admin_server import admin_client, auth


async def test_set_list_and_delete(pool: asyncpg.Pool) -> None:
    """PUT creates and replaces, GET lists, DELETE removes once then 404s."""
    async with admin_client(pool) as client:
        put = await client.put("/v1/rate-limits/developer:alice", headers=auth(), json={"rpm": 60, "tpm": 90_000})
        assert put.status == 200 and await put.json() == {"scope": "developer:alice", "rpm": 60, "tpm": 90_000}
        again = await client.put("/v1/rate-limits/developer:alice", headers=auth(), json={"tpm": 5_000})
        assert (await again.json())["rpm"] is None
        listed = await (await client.get("/v1/rate-limits", headers=auth())).json()
        assert listed == {"rate_limits": [{"scope": "developer:alice", "rpm": None, "tpm": 5_000}]}
        assert (await client.delete("/v1/rate-limits/developer:alice", headers=auth())).status == 200
        gone = await client.delete("/v1/rate-limits/developer:alice", headers=auth())
        assert gone.status == 404


@pytest.mark.parametrize(("scope", "body", "says"), [
    ("developer:alice", {"rpm": -5}, ">= 1"),
    ("developer:alice", {"rpm": 0}, ">= 1"),
    ("developer:alice", {"tpm": 10**15}, "<= 1000000000"),
    ("developer:alice", {"rpm": "60"}, "Expected `int"),
    ("developer:alice", {"rpm": 1.5}, "Expected `int"),
    ("developer:alice", {}, "give a requests-per-minute"),
    ("developer:alice", {"rpm": 5, "burst": 9}, "unknown field"),
    ("org", {"rpm": 5}, "use key:<id>"),
    ("team:%20x", {"rpm": 5}, "use key:<id>"),
])
async def test_hostile_values_are_a_400_naming_the_problem(pool: asyncpg.Pool, scope: str, body: dict[str, object],
                                                           says: str) -> None:
    """Negative, zero, huge, non-integer, missing, unknown or mis-scoped: 400 with a message, nothing stored."""
    async with admin_client(pool) as client:
        resp = await client.put(f"/v1/rate-limits/{scope}", headers=auth(), json=body)
        assert resp.status == 400
        assert says in (await resp.json())["error"]["message"]
    assert await ratelimits.list_rate_limits(pool) == []
