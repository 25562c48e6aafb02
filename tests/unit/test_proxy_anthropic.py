"""Anthropic specifics: cache-aware prices, usage from Messages streams and bodies, Claude Code's
attribution, and the gateway's errors rewritten to Anthropic's shape."""

from __future__ import annotations

import json

import msgspec
from aiohttp import web

from spendgate.domain.pricing import SHIPPED_PRICES, ModelPrice, PriceTable, batch_price, cost_micros
from spendgate.proxy import anthropic, errors
from spendgate.proxy.anthropic_usage import AnthropicTap, usage_from_anthropic, usage_from_message
from spendgate.proxy.fake_anthropic import message_body, message_events
from spendgate.proxy.usage import Usage

# all input, cache reads, 5-minute writes, 1-hour writes, output
USAGE = (10_000, 6_000, 2_000, 1_000, 300)
EXPECTED = Usage(10_000, 6_000, 300, 0, cache_write_5m_tokens=2_000, cache_write_1h_tokens=1_000)


def test_cache_write_prices_follow_anthropics_multipliers_unless_named() -> None:
    """5-minute writes 1.25x input, 1-hour writes 2x input; a price that names them wins; batch halves them."""
    sonnet = SHIPPED_PRICES["claude-sonnet-4-5"]
    assert (sonnet.write_5m_micros, sonnet.write_1h_micros, sonnet.cached_input_micros) == (
        3_750_000, 6_000_000, 300_000)
    named = ModelPrice(1_000_000, 100_000, 5_000_000, cache_write_5m_micros=1_300_000, cache_write_1h_micros=2_100_000)
    assert (named.write_5m_micros, named.write_1h_micros) == (1_300_000, 2_100_000)
    assert batch_price(named).write_5m_micros == 650_000
    assert PriceTable().lookup("claude-haiku-4-5-20251001").model == "claude-haiku-4-5"


def test_cost_with_cache_writes_and_reads() -> None:
    """1,000 plain + 6,000 read + 2,000 5m-written + 1,000 1h-written input and 300 output on Sonnet 4.5:
    $0.003 + $0.0018 + $0.0075 + $0.006 + $0.0045 = $0.0228; writes never exceed the uncached input."""
    price = SHIPPED_PRICES["claude-sonnet-4-5"]
    assert cost_micros(price, input_tokens=10_000, cached_tokens=6_000, output_tokens=300,
                       cache_write_5m_tokens=2_000, cache_write_1h_tokens=1_000) == 22_800
    clamped = cost_micros(price, input_tokens=100, cached_tokens=0, output_tokens=0, cache_write_5m_tokens=0,
                          cache_write_1h_tokens=10_000)
    assert clamped == 600  # 100 tokens at the 1-hour write price, not 10,000


def test_stream_usage_merges_message_start_and_message_delta_at_any_chunking() -> None:
    """Input from message_start, cumulative output from message_delta; relayed byte for byte."""
    stream = b"".join(message_events(1, "claude-sonnet-4-5", "a b c", USAGE, None, 4))
    for size in (1, 13, 200, len(stream)):
        tap = AnthropicTap()
        relayed = b"".join(tap.feed(stream[i:i + size]) for i in range(0, len(stream), size)) + tap.flush()
        assert relayed == stream
        assert (tap.usage, tap.outcome) == (EXPECTED, "completed")
    assert tap.streamed_text() == "a b c"


def test_stream_cut_before_message_stop_and_error_event() -> None:
    """No message_delta: no usage (the proxy estimates instead), no outcome; an ``error`` event fails it."""
    events = list(message_events(1, "claude-sonnet-4-5", "a b c", USAGE, "ls", 4))
    tap = AnthropicTap()
    tap.feed(b"".join(events[:3]))
    assert tap.outcome is None and tap.usage is None
    assert '{"command"' in tap.streamed_text()
    tap.feed(b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"x"}}\n\n')
    assert tap.outcome == "failed"


def test_body_usage_split_gaps_and_absurd_counts() -> None:
    """A body's usage; a write total the split does not explain is priced as a 5-minute write; an absurd
    count is an anomaly (the proxy estimates instead)."""
    assert usage_from_message(msgspec.json.encode(message_body(1, "m", "hi", USAGE, None))) == EXPECTED
    assert usage_from_anthropic({"input_tokens": 10, "cache_creation_input_tokens": 50, "output_tokens": 2}) == Usage(
        60, 0, 2, 0, cache_write_5m_tokens=50)
    assert usage_from_anthropic({"input_tokens": 10**20, "output_tokens": 1}).anomalous  # type: ignore[union-attr]
    assert usage_from_message(b"not json") is None


def test_claude_code_attribution() -> None:
    """Session from the header, else metadata.user_id's JSON; repo from the system prompt; client from the
    User-Agent; garbage in metadata or system is ignored."""
    system = [{"type": "text", "text": "x"}, {"type": "text", "text": "<env>\nPrimary working directory: /src/a\n"}]
    user_id = json.dumps({"device_id": "d", "account_uuid": "", "session_id": "s-body"})
    body = msgspec.json.encode({"model": "m", "system": system, "metadata": {"user_id": user_id}})
    found = anthropic.attribute({"user-agent": "claude-cli/2.1.197 (external, sdk-cli)"}, body)
    assert (found.session_id, found.repo, found.client) == ("s-body", "/src/a", "claude-code")
    found = anthropic.attribute({"x-claude-code-session-id": "s-head"}, body)
    assert (found.session_id, found.client) == ("s-head", None)
    junk = msgspec.json.encode({"system": 7, "metadata": {"user_id": "{broken"}})
    assert anthropic.attribute({}, junk).session_id is None and anthropic.attribute({}, junk).repo is None


def test_gateway_errors_become_anthropic_errors_and_others_pass() -> None:
    """OpenAI-format errors of the gateway are rewritten (x-should-retry false where retrying is useless);
    Anthropic's own errors and successes pass untouched."""
    response = anthropic.translate_error(errors.unauthorized("no key"))
    assert json.loads(response.body) == {"type": "error", "error": {"type": "authentication_error",  # type: ignore[arg-type]
                                                                     "message": "no key", "code": "invalid_api_key"}}
    assert response.headers["x-should-retry"] == "false" and "WWW-Authenticate" not in response.headers
    unreachable = anthropic.translate_error(errors.upstream_unreachable("host down"))
    assert json.loads(unreachable.body)["error"]["type"] == "api_error"  # type: ignore[arg-type]
    assert "x-should-retry" not in unreachable.headers
    theirs = web.Response(status=529, body=b'{"type":"error","error":{"type":"overloaded_error","message":"m"}}')
    assert anthropic.translate_error(theirs).body == theirs.body
    assert anthropic.serves("/v1/messages?beta=true") and not anthropic.serves("/v1/messagesx")


def test_stream_with_ping_and_words_that_look_like_markers() -> None:
    """A ping before message_start and answer text naming "error", "usage" and "message_stop" change
    nothing: usage and outcome come from the stream's real opening and closing events."""
    events = list(message_events(1, "claude-sonnet-4-5", 'error "usage" message_stop', USAGE, None, 4))
    ping = b'event: ping\ndata: {"type": "ping"}\n\n'
    tap = AnthropicTap()
    tap.feed(ping + b"".join(events))
    assert (tap.usage, tap.outcome) == (EXPECTED, "completed")
    cut = AnthropicTap()
    cut.feed(ping + b"".join(events[:-2]))  # broken off after the content: no message_delta, no stop
    assert cut.outcome is None and cut.usage is None and cut.streamed_text() == 'error "usage" message_stop'
