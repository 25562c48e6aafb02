"""Issue 11, item 3: every route is classified and nothing is forwarded unmetered. The route table
decides, not the declared content type: a paused key is refused on every route that can spend
(JSON sent as text/plain, octet-stream or a form, images, multipart audio, batches, thread runs), PUT
and PATCH are not routes, a stored prompt without a model cannot be priced, and every request the
upstream sees leaves exactly one usage event, $0 ones included."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from spendgate.domain.enforcement import Principal
from tests.support.enforced_proxy import Enforced, enforced_proxies
from tests.support.factories import usage_event
from tests.support.ledger import publish
from tests.support.proxy_harness import Harness, published_usage, running_proxy
from tests.support.rawhttp import RawResponse, raw_request
from tests.support.waiting import eventually

RESPONSES = json.dumps({"model": "gpt-5.1", "input": "hi"}).encode()
BOUNDARY = "sgboundary42"


def multipart(fields: dict[str, str], file_name: str = "audio.mp3", file_bytes: bytes = b"\x00" * 8_000) -> bytes:
    parts = [f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n' for k, v in fields.items()]
    parts.append(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{file_name}"\r\n'
                 "Content-Type: application/octet-stream\r\n\r\n")
    return "".join(parts).encode() + file_bytes + f"\r\n--{BOUNDARY}--\r\n".encode()


MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"

SPENDING = [
    ("POST", "/v1/responses", "text/plain", RESPONSES),
    ("POST", "/v1/responses", "application/octet-stream", RESPONSES),
    ("POST", "/v1/responses", "application/x-www-form-urlencoded", RESPONSES),
    ("POST", "/v1/chat/completions", "text/plain",
     json.dumps({"model": "gpt-5.1", "messages": [{"role": "user", "content": "hi"}]}).encode()),
    ("POST", "/v1/images/generations", "application/json", b'{"model": "dall-e-3", "prompt": "a cat"}'),
    ("POST", "/v1/images/generations", "text/plain", b'{"model": "dall-e-3", "prompt": "a cat", "n": 3}'),
    ("POST", "/v1/images/edits", MULTIPART, multipart({"model": "dall-e-2", "prompt": "x"}, "i.png")),
    ("POST", "/v1/audio/transcriptions", MULTIPART, multipart({"model": "whisper-1"})),
    ("POST", "/v1/audio/translations", MULTIPART, multipart({"model": "whisper-1"})),
    ("POST", "/v1/batches", "application/json",
     b'{"input_file_id": "file-1", "endpoint": "/v1/responses", "completion_window": "24h"}'),
    ("POST", "/v1/threads/thread_1/runs", "application/json", b'{"assistant_id": "asst_1", "model": "gpt-5.1"}'),
    ("POST", "/v1/threads/runs", "text/plain", b'{"assistant_id": "asst_1", "model": "gpt-5.1"}'),
]
NOT_ROUTES = [("PUT", "/v1/responses"), ("PATCH", "/v1/responses"), ("PATCH", "/v1/chat/completions")]


async def _send(port: int, secret: str, method: str, path: str, content_type: str | None, body: bytes) -> RawResponse:
    headers = {"Authorization": f"Bearer {secret}"}
    if content_type:
        headers["Content-Type"] = content_type
    return await raw_request(port, method, path, headers=headers, body=body)


async def _pause(e: Enforced) -> None:
    """Spend $2 against the key's $1 daily budget (an event the ledger folds) and wait for the pause."""
    await publish(e.ledger_runtime.bus, [usage_event(
        key_id=e.key.key_id, developer=e.key.developer, team=e.key.team, occurred_at=datetime.now(UTC),
        session_id="seed", cost_micros=2_000_000)])
    enforcer = e.deciders[0].inner.enforcer
    principal = Principal(e.key.key_id, e.key.developer, e.key.team)

    async def stage() -> str:
        return str(enforcer.standing(principal).stage.label)

    await eventually(stage, until=lambda s: s == "pause", what="the key paused")


async def test_paused_key_is_refused_on_every_spending_route(db_url: str, tmp_path: Path) -> None:
    """Paused: every spending route is a 429 (or a 404 for what is not a route) and the upstream sees
    nothing, whatever the content type; each refusal is evented."""
    async with enforced_proxies(db_url, tmp_path, budgets={"key": {"usd": 1.0}}) as e:
        await _pause(e)
        port = e.servers[0].port
        statuses = []
        for method, path, content_type, body in SPENDING:
            resp = await _send(port, e.secret, method, path, content_type, body)
            statuses.append((path, content_type, resp.status))
            assert resp.json()["error"]["type"] in ("usage_limit_reached", "invalid_request_error")
        for method, path in NOT_ROUTES:
            resp = await _send(port, e.secret, method, path, "application/json", RESPONSES)
            statuses.append((path, method, resp.status))
        assert [s for s in statuses if s[2] not in (404, 429)] == []
        assert [(r.method, r.raw_path) for r in e.upstream.fake.received] == []
        refusals = await eventually(
            lambda: e.pool.fetch("SELECT endpoint FROM usage_events WHERE status = 'refused'"),
            until=lambda rows: len(rows) >= len(SPENDING), what="every refusal evented")
        assert len(refusals) == len(SPENDING)


async def test_stored_prompt_without_a_model_is_refused(db_url: str, tmp_path: Path) -> None:
    """A Responses body naming a stored prompt but no model cannot be priced: a clear 400, not forwarded."""
    async with running_proxy(db_url, tmp_path) as h:
        body = b'{"prompt": {"id": "pmpt_123", "version": "2"}, "input": "hi"}'
        resp = await _send(h.server.port, h.secret, "POST", "/v1/responses", "application/json", body)
        assert resp.status == 400 and resp.json()["error"]["code"] == "model_required"
        unpriced = await _send(h.server.port, h.secret, "POST", "/v1/images/generations", "application/json",
                               b'{"model": "dall-e-9", "prompt": "x"}')
        assert unpriced.status == 400 and unpriced.json()["error"]["code"] == "model_not_found"
        assert h.fake.received == []


async def _events(h: Harness, n: int) -> list:  # type: ignore[type-arg]
    return await eventually(lambda: published_usage(h.runtime.pool), until=lambda evs: len(evs) >= n,
                            what=f"{n} usage events")


async def test_every_forwarded_request_leaves_one_priced_event(db_url: str, tmp_path: Path) -> None:
    """JSON labelled text/plain is metered by its tokens (and forwarded as JSON); images per image, audio
    per second, batches at the batch price, stored responses and files at $0: one event per request
    forwarded."""
    async with running_proxy(db_url, tmp_path) as h:
        port, secret = h.server.port, h.secret
        sent = [
            ("POST", "/v1/responses", "text/plain", RESPONSES),
            ("POST", "/v1/images/generations", "application/octet-stream",
             b'{"model": "dall-e-3", "prompt": "a cat", "n": 2}'),
            ("POST", "/v1/audio/transcriptions", MULTIPART, multipart({"model": "whisper-1"})),
            ("GET", "/v1/responses/resp_1", None, b""),
            ("POST", "/v1/files", MULTIPART, multipart({"purpose": "batch"}, "b.jsonl")),
            ("POST", "/v1/batches", "application/json",
             b'{"input_file_id": "file-1", "endpoint": "/v1/responses", "completion_window": "24h"}'),
            ("GET", "/v1/models", None, b""),
        ]
        h.fake.files["file-1"] = b'{"custom_id": "a", "body": {"model": "gpt-5.1", "input": "hi"}}\n'
        for method, path, content_type, body in sent:
            resp = await _send(port, secret, method, path, content_type, body)
            assert resp.status == 200, (path, resp.status, resp.body[:200])
        events = await _events(h, len(sent))
        forwarded = [r for r in h.fake.received if not r.raw_path.endswith("/content")]  # the batch's file read
        assert len(forwarded) == len(events) == len(sent)
        by_endpoint = {e.endpoint: e for e in events}
        tokens = by_endpoint["/v1/responses"]
        [served] = h.fake.served
        assert (tokens.usage_source, tokens.input_tokens) == ("reported", served.input_tokens)
        assert tokens.cost_micros > 0
        assert h.fake.received[0].headers["Content-Type"] == "application/json"
        image = by_endpoint["/v1/images/generations"]
        assert (image.model_used, image.cost_micros) == ("dall-e-3", 2 * 40_000)
        audio = by_endpoint["/v1/audio/transcriptions"]
        assert (audio.model_used, audio.cost_micros, audio.usage_source) == ("whisper-1", 7 * 100, "reported")
        assert by_endpoint["/v1/batches"].cost_micros > 0 and by_endpoint["/v1/batches"].usage_source == "estimated"
        for free in ("/v1/responses/{id}", "/v1/files", "/v1/models"):
            assert by_endpoint[free].cost_micros == 0 and by_endpoint[free].status == "ok"
