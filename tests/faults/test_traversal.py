"""Issue 11, item 4: the upstream URL cannot be escaped. Dot segments, raw or percent-encoded (once or
twice), encoded slashes and backslashes are a 400 in OpenAI's format and nothing reaches the upstream;
the forwarded path comes from the route table only."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.proxy_harness import Harness, published_usage, running_proxy
from tests.support.rawhttp import raw_request
from tests.support.waiting import eventually

BODY = b'{"model": "gpt-5.1", "input": "hi"}'

ESCAPES = [
    "/v1/../../etc/passwd",
    "/v1/../admin",
    "/v1/responses/../../admin",
    "/v1/%2e%2e/%2e%2e/admin",
    "/v1/%2E%2E/admin",
    "/v1/..%2f..%2fadmin",
    "/v1/responses/..%2F..%2Fadmin",
    "/v1/%252e%252e/%252e%252e/admin",
    "/v1/%25252e%25252e/admin",
    "/v1/..\\..\\admin",
    "/v1/%5c..%5cadmin",
    "/v1/./responses",
    "/v1//responses",
    "/v1/responses%2f..%2f..%2fadmin",
]


def _port(h: Harness) -> int:
    return h.server.port


@pytest.mark.parametrize("target", ESCAPES)
async def test_traversal_is_refused_before_the_upstream(db_url: str, tmp_path: Path, target: str) -> None:
    """Every escape variant answers 400 invalid_path in OpenAI format, and the upstream receives nothing."""
    async with running_proxy(db_url, tmp_path) as h:
        resp = await raw_request(_port(h), "POST", target, headers={
            "Authorization": f"Bearer {h.secret}", "Content-Type": "application/json"}, body=BODY)
        assert resp.status == 400, (target, resp.status, resp.body[:200])
        assert resp.json()["error"]["code"] == "invalid_path"
        assert h.fake.received == []


async def test_forwarded_path_is_the_route_tables(db_url: str, tmp_path: Path) -> None:
    """A listed route with an id reaches the upstream at exactly the table's path under the base URL."""
    async with running_proxy(db_url, tmp_path) as h:
        resp = await raw_request(_port(h), "GET", "/v1/responses/resp_abc123?include=x",
                                 headers={"Authorization": f"Bearer {h.secret}"})
        assert resp.status == 200
        assert [(r.method, r.raw_path) for r in h.fake.received] == [("GET", "/v1/responses/resp_abc123?include=x")]


async def test_unlisted_paths_get_a_404_and_never_reach_the_upstream(db_url: str, tmp_path: Path) -> None:
    """Deny by default: a path outside the table (even under /v1) is a 404 in OpenAI format."""
    async with running_proxy(db_url, tmp_path) as h:
        for method, target in [("POST", "/v1/organization/admin_api_keys"), ("GET", "/v1/fine_tuning/jobs"),
                               ("POST", "/v1/responses/a/b/c")]:
            resp = await raw_request(_port(h), method, target, headers={"Authorization": f"Bearer {h.secret}"},
                                     body=BODY)
            assert resp.status == 404, target
            assert resp.json()["error"]["code"] == "unknown_route"
        assert h.fake.received == []


async def test_operator_allowed_paths_are_forwarded_and_evented(db_url: str, tmp_path: Path) -> None:
    """A path the operator allows is forwarded as free pass-through and still leaves a usage event."""
    async with running_proxy(db_url, tmp_path, proxy_allowed_paths=[r"/vector_stores(/[A-Za-z0-9_-]+)?"]) as h:
        resp = await raw_request(_port(h), "GET", "/v1/vector_stores/vs_1",
                                 headers={"Authorization": f"Bearer {h.secret}"})
        assert resp.status == 404  # the fake has no such route; what matters is that it was asked
        assert [r.raw_path for r in h.fake.received] == ["/v1/vector_stores/vs_1"]
        [event] = await eventually(lambda: published_usage(h.runtime.pool), what="the pass-through evented")
        assert (event.endpoint, event.cost_micros) == ("/v1/vector_stores/vs_1", 0)
        traversal = await raw_request(_port(h), "GET", "/v1/vector_stores/..%2f..%2fadmin",
                                      headers={"Authorization": f"Bearer {h.secret}"})
        assert traversal.status == 400
