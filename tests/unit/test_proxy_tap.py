"""The stream tap: usage found in Responses and Chat streams, chunk boundaries anywhere, stripping."""

from __future__ import annotations

import msgspec

from spendgate.proxy.fake_streams import chat_chunks, responses_events
from spendgate.proxy.tap import StreamTap
from spendgate.proxy.usage import Usage, count_tokens, usage_from_body

USAGE = (5200, 4096, 40, 12)


def _feed_in_pieces(tap: StreamTap, data: bytes, size: int) -> bytes:
    out = b"".join(tap.feed(data[i : i + size]) for i in range(0, len(data), size))
    return out + tap.flush()


def test_responses_usage_from_completed_event_split_at_every_size() -> None:
    """response.completed → usage is found however the stream is cut into chunks, and relayed unchanged."""
    stream = b"".join(responses_events(1, "gpt-5.1", "a b c d e f", USAGE, False, 4))
    for size in (1, 7, 64, len(stream)):
        tap = StreamTap()
        relayed = _feed_in_pieces(tap, stream, size)
        assert relayed == stream
        assert tap.usage == Usage(5200, 4096, 40, 12)
        assert tap.outcome == "completed"


def test_chat_injected_usage_chunk_is_stripped() -> None:
    """With include_usage added by the proxy, the usage chunk is read and not relayed; [DONE] still is."""
    stream = b"".join(chat_chunks(1, "gpt-4.1-mini", "x y z", USAGE, True, 3))
    tap = StreamTap(strip_usage_chunk=True)
    relayed = _feed_in_pieces(tap, stream, 5)
    assert tap.usage == Usage(5200, 4096, 40, 12)
    assert b'"prompt_tokens"' not in relayed
    assert relayed.endswith(b"data: [DONE]\n\n")
    assert relayed.count(b"data: ") == stream.count(b"data: ") - 1


def test_chat_usage_kept_when_client_asked_for_it() -> None:
    """A client that asked for include_usage itself still receives the usage chunk."""
    stream = b"".join(chat_chunks(1, "gpt-4.1-mini", "x y z", USAGE, True, 3))
    tap = StreamTap()
    assert _feed_in_pieces(tap, stream, 11) == stream
    assert tap.usage is not None and tap.usage.input_tokens == 5200


def test_truncated_stream_counts_streamed_text_offline() -> None:
    """A stream cut before response.completed has no usage; its streamed text is counted with o200k."""
    events = list(responses_events(1, "gpt-5.1", "hello there general kenobi", USAGE, False, 4))
    tap = StreamTap()
    for event in events[:-3]:
        tap.feed(event)
    assert tap.usage is None and tap.outcome is None
    assert tap.streamed_text() == "hello there general kenobi"
    assert tap.estimated_output_tokens() == count_tokens("hello there general kenobi") > 0


def test_failed_stream_is_flagged() -> None:
    """response.failed marks the stream failed and still yields its usage when present."""
    tap = StreamTap()
    for event in responses_events(1, "gpt-5.1", "a b", USAGE, False, 2, failed=True):
        tap.feed(event)
    assert tap.outcome == "failed"
    assert tap.usage == Usage(5200, 4096, 40, 12)


def test_chat_stream_text_includes_tool_arguments() -> None:
    """Chat deltas contribute content and tool-call arguments to the estimate."""
    chunk = {"choices": [{"index": 0, "delta": {"content": "hi ", "tool_calls": [
        {"index": 0, "function": {"name": "f", "arguments": "{\"a\":1}"}}]}}]}
    tap = StreamTap()
    tap.feed(b"data: " + msgspec.json.encode(chunk) + b"\n\n")
    assert tap.streamed_text() == 'hi {"a":1}'


def test_usage_from_non_stream_bodies() -> None:
    """Non-streamed Responses and Chat bodies yield their usage; other documents yield none."""
    responses = {"usage": {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 4}, "output_tokens": 3,
                           "output_tokens_details": {"reasoning_tokens": 1}}}
    chat = {"usage": {"prompt_tokens": 9, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": 0}}}
    assert usage_from_body(msgspec.json.encode(responses)) == Usage(10, 4, 3, 1)
    assert usage_from_body(msgspec.json.encode(chat)) == Usage(9, 0, 2, 0)
    assert usage_from_body(b'{"object": "list", "data": []}') is None
    assert usage_from_body(b"not json") is None
