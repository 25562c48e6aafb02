"""Issue 11, item 5: bad input gets a 4xx in OpenAI's error format, never a 500, and nothing a client
sent is echoed back or logged: invalid UTF-8, JSON nested past any real request (in the body or in
``x-codex-turn-metadata``), compressed bodies, oversized headers, megabyte model names, and
connections that never finish their headers."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from tests.support.proxy_harness import Harness, published_usage, running_proxy
from tests.support.rawhttp import RawResponse, raw_request
from tests.support.waiting import eventually


def _openai_error(resp: RawResponse, status: int) -> dict[str, object]:
    assert resp.status == status, (resp.status, resp.body[:300])
    assert resp.headers["content-type"].startswith("application/json")
    error = resp.json()["error"]
    assert set(error) >= {"message", "type", "code"}
    return error  # type: ignore[no-any-return]


async def _post(h: Harness, body: bytes, **headers: str) -> RawResponse:
    return await raw_request(h.server.port, "POST", "/v1/responses", body=body, headers={
        "Authorization": f"Bearer {h.secret}", "Content-Type": "application/json", **headers})


@pytest.mark.parametrize("body", [b'{"model": "gpt-5.1\xff", "input": "hi"}',
                                  b'{"model": "gpt-5.1", "input": "\xff\xfe bad"}'])
async def test_invalid_utf8_body_is_a_400(db_url: str, tmp_path: Path, body: bytes) -> None:
    """A body with bytes that are not UTF-8 inside a JSON string (the model or any other field) is
    refused as invalid JSON, not a 500, and not forwarded."""
    async with running_proxy(db_url, tmp_path) as h:
        resp = await _post(h, body)
        assert _openai_error(resp, 400)["code"] == "invalid_json"
        assert h.fake.received == []


@pytest.mark.parametrize("depth", [2_000, 100_000])
async def test_deeply_nested_body_is_a_400(db_url: str, tmp_path: Path, depth: int) -> None:
    """JSON nested thousands deep (a RecursionError in the decoder) is refused as invalid JSON."""
    async with running_proxy(db_url, tmp_path) as h:
        body = b'{"model": "gpt-5.1", "input": ' + b"[" * depth + b"]" * depth + b"}"
        resp = await _post(h, body)
        assert _openai_error(resp, 400)["code"] == "invalid_json"
        assert h.fake.received == []


async def test_deeply_nested_turn_metadata_is_ignored(db_url: str, tmp_path: Path) -> None:
    """A metadata header nested past the decoder's limit does not break the request: it is served and
    metered without a turn id."""
    async with running_proxy(db_url, tmp_path) as h:
        meta = '{"turn_id": "t1", "workspaces": {"/r": ' + "[" * 3_000 + "]" * 3_000 + "}}"
        resp = await _post(h, b'{"model": "gpt-5.1", "input": "hi"}', **{"x-codex-turn-metadata": meta})
        assert resp.status == 200, resp.body[:300]
        [event] = await eventually(lambda: published_usage(h.runtime.pool), what="the request metered")
        assert event.turn_id is None and event.status == "ok"


async def test_gzip_body_is_refused_not_forwarded_mislabelled(db_url: str, tmp_path: Path) -> None:
    """A compressed body is a 415: it is never forwarded with a Content-Encoding that no longer holds."""
    async with running_proxy(db_url, tmp_path) as h:
        body = gzip.compress(b'{"model": "gpt-5.1", "input": "hi"}')
        resp = await _post(h, body, **{"Content-Encoding": "gzip"})
        assert _openai_error(resp, 415)["code"] == "unsupported_content_encoding"
        assert h.fake.received == []


async def test_oversized_header_is_answered_without_echo_or_log(db_url: str, tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    """A header past the limit (a pasted key of 20 KB) gets a JSON 400 that quotes nothing, and neither
    the proxy's nor aiohttp's logs carry the value."""
    marker = "sk-sg-LEAKED" + "k" * 20_000
    async with running_proxy(db_url, tmp_path) as h:
        with capture_logs() as logs, caplog.at_level(logging.DEBUG):
            resp = await raw_request(h.server.port, "POST", "/v1/responses", body=b"{}",
                                     headers={"Authorization": f"Bearer {marker}"})
        _openai_error(resp, 400)
        assert b"LEAKED" not in resp.body
        assert "LEAKED" not in caplog.text
        assert not any("LEAKED" in json.dumps(entry, default=str) for entry in logs)
        assert h.fake.received == []


@pytest.mark.parametrize("header", [{"X Bad": "1"}, {"Content-Encoding": "br"}, {"x-big": "a" * 20_000}])
async def test_unreadable_request_on_the_anthropic_route_gets_an_anthropic_shaped_error(
        db_url: str, tmp_path: Path, header: dict[str, str]) -> None:
    """A request aiohttp cannot read (a header name with a space, an encoding it cannot decode, a header past
    the limit) on ``/v1/messages`` is answered in a shape Anthropic's clients read (``type: error``,
    ``error.type``, ``error.message``), which is OpenAI's too; nothing reaches the provider."""
    async with running_proxy(db_url, tmp_path) as h:
        resp = await raw_request(h.server.port, "POST", "/v1/messages", body=b'{"model": "claude-sonnet-4-5"}',
                                 headers={"x-api-key": h.secret, "anthropic-version": "2023-06-01", **header})
        assert resp.status == 400 and resp.headers.get("content-type", "").startswith("application/json")
        doc = resp.json()
        assert doc["type"] == "error" and doc["error"]["type"] == "invalid_request_error"
        assert doc["error"]["code"] == "bad_http_request" and "could not read" in doc["error"]["message"]
        assert h.fake.received == []


async def test_huge_model_name_is_capped_in_the_error_and_the_event(db_url: str, tmp_path: Path) -> None:
    """A 5 MB model name is refused with a short message, and its refusal event carries a capped name."""
    async with running_proxy(db_url, tmp_path) as h:
        model = "m" * 5_000_000
        resp = await _post(h, json.dumps({"model": model, "input": "hi"}).encode())
        assert _openai_error(resp, 400)["code"] == "model_not_found"
        assert len(resp.body) < 2_000
        [event] = await eventually(lambda: published_usage(h.runtime.pool), what="the refusal evented")
        assert event.status == "refused" and len(event.model_requested) <= 100


async def test_connection_that_never_finishes_its_headers_is_closed(db_url: str, tmp_path: Path) -> None:
    """A client that sends half a request and stalls is disconnected after ``header_timeout_s``."""
    async with running_proxy(db_url, tmp_path, header_timeout_s=0.5) as h:
        reader, writer = await asyncio.open_connection("127.0.0.1", h.server.port)
        try:
            writer.write(b"POST /v1/responses HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ")
            await writer.drain()
            assert await asyncio.wait_for(reader.read(), timeout=10) == b""  # closed by the proxy
        finally:
            writer.close()


async def test_a_body_that_never_finishes_arriving_is_answered_408_and_closed(db_url: str, tmp_path: Path) -> None:
    """A key holder who sends the headers and part of the body, then stalls, is answered 408 in OpenAI's
    format after ``body_timeout_s`` (the connection was held for as long as the client liked, its buffer up
    to ``max_body_bytes``; aiohttp closes it after its 10 s lingering read); nothing reaches the provider."""
    async with running_proxy(db_url, tmp_path, body_timeout_s=0.5) as h:
        reader, writer = await asyncio.open_connection("127.0.0.1", h.server.port)
        try:
            writer.write(b"POST /v1/responses HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + h.secret.encode()
                         + b"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"model\"")
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(4096), timeout=10)
        finally:
            writer.close()
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408")
        assert json.loads(body)["error"]["code"] == "body_timeout"
        assert h.fake.received == []
