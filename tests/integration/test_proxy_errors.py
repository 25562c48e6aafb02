"""Bad input and upstream failures get OpenAI-format errors with the documented statuses."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import aiohttp

from spendgate.proxy.fake_upstream import FakeConfig
from spendgate.store.keys import store as vkeys
from tests.support.ports import free_port
from tests.support.proxy_harness import Harness, published_usage, running_proxy
from tests.support.waiting import eventually


async def _post(h: Harness, body: Any = None, *, data: bytes | None = None, headers: dict[str, str] | None = None,
                path: str = "/responses") -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.post(
        f"{h.base_url}{path}", json=body if data is None else None, data=data,
        headers=h.headers() if headers is None else headers,
    ) as resp:
        return resp.status, await resp.json(content_type=None)


def _assert_openai_error(doc: dict[str, Any], code: str) -> str:
    assert set(doc) == {"error"}
    assert {"message", "type", "code"} <= set(doc["error"])
    assert doc["error"]["code"] == code
    return str(doc["error"]["message"])


async def test_malformed_json_is_400(db_url: str, tmp_path: Path) -> None:
    """A body that is not a JSON object gets 400 invalid_json."""
    async with running_proxy(db_url, tmp_path) as h:
        for data in (b'{"model": "gpt-5.1", ', b"[1, 2]"):
            status, doc = await _post(h, data=data, headers={**h.headers(), "Content-Type": "application/json"})
            assert status == 400
            _assert_openai_error(doc, "invalid_json")
        assert h.fake.served == []


async def test_body_over_limit_is_413(db_url: str, tmp_path: Path) -> None:
    """A body over max_body_bytes gets 413 naming the limit, and is not forwarded."""
    async with running_proxy(db_url, tmp_path, max_body_bytes=4096) as h:
        status, doc = await _post(h, {"model": "gpt-5.1", "input": "x" * 5000})
        assert status == 413
        assert "4096" in _assert_openai_error(doc, "request_too_large")
        status, _ = await _post(h, {"model": "gpt-5.1", "input": "x" * 100})
        assert status == 200 and len(h.fake.served) == 1


async def test_missing_and_unknown_keys_are_401(db_url: str, tmp_path: Path) -> None:
    """No key, a non-spendgate key and an unknown sk-sg- key all get 401 invalid_api_key."""
    async with running_proxy(db_url, tmp_path) as h:
        body = {"model": "gpt-5.1", "input": "x"}
        for headers in ({}, {"Authorization": "Bearer sk-proj-openai"},
                        {"Authorization": f"Bearer {vkeys.generate_secret()}"}, {"Authorization": "Basic abc"}):
            status, doc = await _post(h, body, headers=headers)
            assert status == 401
            _assert_openai_error(doc, "invalid_api_key")
        assert h.fake.served == []


async def test_revoked_key_is_refused_within_one_second(db_url: str, tmp_path: Path) -> None:
    """After keys revoke, the running proxy refuses the key in under a second."""
    async with running_proxy(db_url, tmp_path) as h:
        body = {"model": "gpt-5.1", "input": "x"}
        assert (await _post(h, body))[0] == 200
        await vkeys.revoke_key(h.runtime.pool, h.key.key_id)
        revoked_at = time.monotonic()
        sent: list[float] = []

        async def attempt() -> tuple[int, Any]:
            sent.append(time.monotonic())
            return await _post(h, body)

        await eventually(attempt, until=lambda r: r[0] == 401, timeout_s=2.0, what="revoked key refused")
        # the propagation is what is promised: the first request sent after it is refused, however slowly a
        # loaded machine then answers it (timing the answer too failed at 1.009 s under a load of 7)
        assert sent[-1] - revoked_at < 1.0, sent[-1] - revoked_at
        created = await vkeys.create_key(h.runtime.pool, developer="bob", team="web")
        _status, _ = await eventually(
            lambda: _post(h, body, headers={"Authorization": f"Bearer {created.secret}"}),
            until=lambda r: r[0] == 200, timeout_s=1.0, what="new key accepted")


async def test_unknown_model_is_400_naming_it(db_url: str, tmp_path: Path) -> None:
    """A model with no price and no fallback gets 400 model_not_found naming it; the attempt is on record."""
    async with running_proxy(db_url, tmp_path) as h:
        status, doc = await _post(h, {"model": "gpt-9-ultra", "input": "x"})
        assert status == 400
        assert "gpt-9-ultra" in _assert_openai_error(doc, "model_not_found")
        assert h.fake.served == []
        [event] = await eventually(lambda: published_usage(h.runtime.pool), what="refusal on record")
        assert (event.status, event.refusal_reason, event.model_requested, event.cost_micros) == (
            "refused", "unknown_model", "gpt-9-ultra", 0)


async def test_upstream_unreachable_is_502(db_url: str, tmp_path: Path) -> None:
    """Nothing listening upstream gives 502 upstream_unreachable, and the attempt is metered at zero cost."""
    dead = f"http://127.0.0.1:{free_port()}/v1"
    async with running_proxy(db_url, tmp_path, upstream_url=dead) as h:
        status, doc = await _post(h, {"model": "gpt-5.1", "input": "x"})
        assert status == 502
        assert "could not reach" in _assert_openai_error(doc, "upstream_unreachable")
        [event] = await eventually(lambda: published_usage(h.runtime.pool), what="usage event")
        assert (event.status, event.http_status, event.cost_micros) == ("upstream_error", 502, 0)


async def test_upstream_timeout_is_504(db_url: str, tmp_path: Path) -> None:
    """An upstream that never answers gives 504 upstream_timeout after the read timeout."""
    async with running_proxy(db_url, tmp_path, upstream_read_timeout_s=0.5, fake_config=FakeConfig()) as h:
        status, doc = await _post(h, {"model": "gpt-5.1", "input": "x"},
                                  headers=h.headers(**{"x-fake-scenario": "hang"}))
        assert status == 504
        assert "timeout" in _assert_openai_error(doc, "upstream_timeout")


async def test_unknown_route_outside_v1_is_404(db_url: str, tmp_path: Path) -> None:
    """Paths outside /v1 get an OpenAI-format 404."""
    async with running_proxy(db_url, tmp_path) as h, aiohttp.ClientSession() as http, \
            http.get(h.base_url.removesuffix("/v1") + "/nope", headers=h.headers()) as resp:
        assert resp.status == 404
        _assert_openai_error(await resp.json(), "not_found")


async def test_websocket_upgrade_is_426(db_url: str, tmp_path: Path) -> None:
    """A WebSocket upgrade (Codex's built-in provider tries one first) gets 426 so the client falls back to HTTP."""
    async with running_proxy(db_url, tmp_path) as h, aiohttp.ClientSession() as http, http.get(
        f"{h.base_url}/responses", headers={**h.headers(), "Upgrade": "websocket", "Connection": "Upgrade",
                                            "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZQ=="},
    ) as resp:
        assert resp.status == 426
        _assert_openai_error(await resp.json(), "websocket_unsupported")
    assert h.fake.served == []
