"""Issue 11 item 10: a stream the upstream breaks off or stalls ends in an error event; a mislabelled
stream is still metered and its injected usage chunk still stripped."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp
import msgspec
import pytest

from spendgate.domain.events import UsageRecorded
from tests.support.proxy_harness import Harness, published_usage, running_proxy
from tests.support.waiting import eventually

RESPONSES = {"model": "gpt-5.1", "input": "hello", "stream": True}
CHAT = {"model": "gpt-5.1", "messages": [{"role": "user", "content": "hello"}], "stream": True}


def data_docs(body: bytes) -> list[dict[str, object]]:
    """The JSON documents of the ``data:`` lines of an SSE body (``[DONE]`` left out)."""
    docs = []
    for line in body.replace(b"\r\n", b"\n").split(b"\n"):
        if line.startswith(b"data:") and line[5:].strip() != b"[DONE]":
            docs.append(msgspec.json.decode(line[5:].strip()))
    return docs


async def one_event(h: Harness) -> UsageRecorded:
    events = await eventually(lambda: published_usage(h.runtime.pool), until=lambda e: len(e) == 1,
                              what="the request's usage event")
    return events[0]


async def post(h: Harness, path: str, body: dict[str, object], scenario: str) -> tuple[int, str, bytes]:
    async with aiohttp.ClientSession() as http, http.post(
            f"{h.base_url}/{path}", json=body, headers=h.headers(**{"x-fake-scenario": scenario})) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.read()


@pytest.mark.parametrize("scenario", ["cut", "truncated"])
async def test_a_broken_responses_stream_ends_in_response_failed(db_url: str, tmp_path: Path, scenario: str) -> None:
    """A Responses stream the upstream ends (or drops) before response.completed ends in response.failed."""
    async with running_proxy(db_url, tmp_path) as h:
        status, _, body = await post(h, "responses", RESPONSES, scenario)
        event = await one_event(h)
    last = data_docs(body)[-1]
    assert status == 200 and last["type"] == "response.failed"
    assert last["response"]["error"]["code"] == "server_error"  # type: ignore[index]
    assert (event.status, event.usage_source) == ("incomplete", "estimated") and event.cost_micros > 0


async def test_a_broken_chat_stream_ends_in_an_error_chunk(db_url: str, tmp_path: Path) -> None:
    """A chat stream cut before [DONE] ends in a data: {"error": ...} chunk, never a clean EOF."""
    async with running_proxy(db_url, tmp_path) as h:
        status, _, body = await post(h, "chat/completions", CHAT, "cut")
        event = await one_event(h)
    assert status == 200 and b"[DONE]" not in body
    assert data_docs(body)[-1]["error"]["code"] == "server_error"  # type: ignore[index]
    assert event.status == "incomplete" and event.cost_micros > 0


async def test_a_stalled_stream_ends_in_response_failed_after_the_read_timeout(db_url: str, tmp_path: Path) -> None:
    """A stream that stalls past the read timeout is ended with response.failed, not left hanging or closed clean."""
    async with running_proxy(db_url, tmp_path, upstream_read_timeout_s=0.5) as h:
        started = time.monotonic()
        status, _, body = await post(h, "responses", RESPONSES, "stall")
        elapsed_s = time.monotonic() - started
        event = await one_event(h)
    last = data_docs(body)[-1]
    assert status == 200 and last["type"] == "response.failed" and elapsed_s < 10
    assert "0.5 s" in last["response"]["error"]["message"]  # type: ignore[index]
    assert event.status == "incomplete" and event.cost_micros > 0


async def test_a_stream_labelled_text_plain_is_metered_and_its_usage_chunk_stripped(db_url: str,
                                                                                     tmp_path: Path) -> None:
    """A chat SSE stream labelled text/plain is metered from its usage chunk, which never reaches the client."""
    async with running_proxy(db_url, tmp_path) as h:
        status, content_type, body = await post(h, "chat/completions", CHAT, "mislabelled")
        event = await one_event(h)
    assert status == 200 and content_type.startswith("text/event-stream")
    assert not any(doc.get("usage") for doc in data_docs(body))
    assert (event.status, event.usage_source) == ("ok", "reported") and event.cost_micros > 0
    assert event.input_tokens == h.fake.served[0].input_tokens


async def test_a_mislabelled_responses_stream_is_metered_from_response_completed(db_url: str,
                                                                                  tmp_path: Path) -> None:
    """A Responses stream labelled text/plain is metered with the usage of its response.completed."""
    async with running_proxy(db_url, tmp_path) as h:
        status, _, body = await post(h, "responses", RESPONSES, "mislabelled")
        event = await one_event(h)
    assert status == 200 and data_docs(body)[-1]["type"] == "response.completed"
    assert (event.status, event.usage_source) == ("ok", "reported")
    assert event.output_tokens == h.fake.served[0].output_tokens and event.cost_micros > 0
