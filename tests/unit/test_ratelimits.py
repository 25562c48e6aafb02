"""The pure rate-limit rule: sliding-window counts, refusals with sane Retry-After, shares between proxies,
validation of hostile limits, and the 429 shapes (injected clock, no sleeps)."""

from __future__ import annotations

import json

import pytest

from spendgate.domain.errors import ConfigError
from spendgate.domain.ratelimits import MAX_RPM, MAX_TPM, PRESENCE, RateLimit, Windows, minute_of, rate_limit_of
from spendgate.proxy.ratelimit_responses import openai_reset, refusal_response

T0 = 1_800_000_000.0 - 1_800_000_000.0 % 60  # the start of a minute
ALICE = ("key:k1", "developer:alice", "team:platform")


def windows(*limits: RateLimit) -> Windows:
    return Windows(limits)


def test_admits_up_to_rpm_then_refuses_with_retry_after_to_the_minute_end() -> None:
    """Five rpm: five requests pass at the minute's start, the sixth is refused until that minute is over."""
    w = windows(RateLimit("developer:alice", rpm=5))
    assert all(w.admit(ALICE, 100, T0 + i).admitted for i in range(5))
    verdict = w.admit(ALICE, 100, T0 + 10)
    assert not verdict.admitted and verdict.refusal is not None
    assert verdict.refusal.kind == "requests" and verdict.refusal.remaining == 0
    # Next minute the previous one weighs (1 - f): 5 × (1 - f) + 1 <= 5 from f = 0.2, i.e. 12 s into it.
    assert verdict.refusal.retry_after_s == 60  # 50 s left + 12 s, capped at the window


def test_retry_after_is_when_the_sliding_window_has_room() -> None:
    """Refused at 70 s (10 s into the next minute), the request fits again 12 s into it: Retry-After 2."""
    w = windows(RateLimit("developer:alice", rpm=5))
    for i in range(5):
        assert w.admit(ALICE, 0, T0 + i).admitted
    verdict = w.admit(ALICE, 0, T0 + 70)
    assert verdict.refusal is not None and verdict.refusal.retry_after_s == 2
    assert not w.admit(ALICE, 0, T0 + 71).admitted
    assert w.admit(ALICE, 0, T0 + 72).admitted


def test_a_burst_at_a_minute_end_is_not_forgiven_at_the_next_start() -> None:
    """A fixed window would allow 2 × rpm around the boundary; the sliding estimate does not."""
    w = windows(RateLimit("team:platform", rpm=10))
    admitted = sum(w.admit(ALICE, 0, T0 + 59.5).admitted for _ in range(10))
    admitted += sum(w.admit(ALICE, 0, T0 + 60.5).admitted for _ in range(10))
    assert admitted == 10


def test_tpm_counts_input_at_admission_and_output_when_known() -> None:
    """1,000 tpm: 600 input admitted; 300 output added; a 200-token request is then refused (tokens)."""
    w = windows(RateLimit("key:k1", tpm=1_000))
    assert w.admit(ALICE, 600, T0).admitted
    w.add("key:k1", 0, 300, T0 + 1)
    verdict = w.admit(ALICE, 200, T0 + 2)
    assert verdict.refusal is not None and verdict.refusal.kind == "tokens"
    assert verdict.refusal.remaining == 100
    assert w.admit(ALICE, 100, T0 + 3).admitted


def test_a_request_larger_than_the_whole_tpm_passes_only_in_an_empty_window() -> None:
    """Else it could never pass: once, in an empty window; then refused."""
    w = windows(RateLimit("key:k1", tpm=1_000))
    assert w.admit(ALICE, 5_000, T0).admitted
    assert not w.admit(ALICE, 5_000, T0 + 1).admitted


def test_refused_requests_are_not_counted_and_other_scopes_are_untouched() -> None:
    """A refusal on the team limit counts nothing on the key's or developer's window."""
    w = windows(RateLimit("team:platform", rpm=1), RateLimit("developer:alice", rpm=100))
    assert w.admit(ALICE, 0, T0).admitted
    for _ in range(3):
        assert not w.admit(ALICE, 0, T0 + 1).admitted
    assert w.used("developer:alice", "requests", T0 + 1) == 1
    bob = ("key:k2", "developer:bob", "team:data")
    assert w.admit(bob, 0, T0 + 1).admitted


def test_unlimited_scopes_cost_nothing() -> None:
    """No limit on any of the request's scopes: admitted, nothing counted or marked for publication."""
    w = windows(RateLimit("team:other", rpm=1))
    assert w.admit(ALICE, 10, T0).admitted
    assert w.changed == set()


def test_peers_counts_add_to_the_window() -> None:
    """Three requests counted by a peer leave two of five rpm: this proxy's share is one until the next
    sync; the window alone admits the second and refuses the third."""
    w = windows(RateLimit("developer:alice", rpm=5))
    w.synced([("p2", "developer:alice", minute_of(T0), 3, 0)], T0)
    assert w.admit(ALICE, 0, T0 + 1).admitted
    assert w.admit(ALICE, 0, T0 + 1).wait
    assert w.admit(ALICE, 0, T0 + 1, ignore_share=True).admitted
    third = w.admit(ALICE, 0, T0 + 1, ignore_share=True)
    assert not third.admitted and third.refusal is not None


def test_with_an_active_peer_a_proxy_admits_only_its_share_between_syncs() -> None:
    """rpm 30, one live peer that counted nothing: this proxy's share is 15 until the next sync, then half
    of what is left; the window alone still decides once the peers cannot be synced."""
    w = windows(RateLimit("developer:alice", rpm=30))
    assert w.admit(ALICE, 0, T0).admitted and w.changed == {"developer:alice"}  # alone: no share cap
    w.add("developer:alice", -1, 0, T0)
    w.synced([("p2", PRESENCE, minute_of(T0) - 1, 0, 0)], T0)  # live, counted nothing
    assert w.live_peers == 1
    verdicts = [w.admit(ALICE, 0, T0 + 1) for _ in range(16)]
    assert sum(v.admitted for v in verdicts) == 15 and verdicts[-1].wait
    w.take_changed(T0 + 2)  # published: the 15 no longer count against the next share
    w.synced([("p2", PRESENCE, minute_of(T0), 0, 0)], T0 + 2)
    assert sum(w.admit(ALICE, 0, T0 + 2).admitted for _ in range(10)) == 8  # ceil(15 / 2)
    busy = w.admit(ALICE, 0, T0 + 2, may_wait=False)
    assert busy.refusal is not None and busy.refusal.retry_after_s == 1 and busy.refusal.remaining == 7
    assert w.admit(ALICE, 0, T0 + 2, ignore_share=True).admitted


def test_admissions_made_while_a_sync_runs_count_against_the_next_share() -> None:
    """Counts taken for publication, then two more admitted before the peers' counts arrive: those two
    were not published, so they use up the new share (else a peer could miss them twice)."""
    w = windows(RateLimit("developer:alice", rpm=40))
    w.synced([("p2", PRESENCE, minute_of(T0), 0, 0)], T0)
    assert sum(w.admit(ALICE, 0, T0).admitted for _ in range(4)) == 4
    w.take_changed(T0)
    assert w.admit(ALICE, 0, T0).admitted and w.admit(ALICE, 0, T0).admitted
    w.synced([("p2", PRESENCE, minute_of(T0), 0, 0)], T0)  # left 34: share 17, 2 of it used
    assert sum(w.admit(ALICE, 0, T0).admitted for _ in range(20)) == 15


def test_published_counts_are_the_changed_scopes_current_and_previous_minute() -> None:
    """take_changed hands over each changed scope's counts once."""
    w = windows(RateLimit("developer:alice", rpm=50, tpm=10_000))
    w.admit(ALICE, 40, T0 + 59)
    w.admit(ALICE, 60, T0 + 61)
    out = w.take_changed(T0 + 61)
    assert [(s, m - minute_of(T0), c.requests, c.tokens) for s, m, c in out] == [
        ("developer:alice", 0, 1, 40), ("developer:alice", 1, 1, 60)]
    assert w.take_changed(T0 + 62) == []


@pytest.mark.parametrize(("scope", "rpm", "tpm", "says"), [
    ("developer:alice", -1, None, "between 1 and"),
    ("developer:alice", 0, None, "between 1 and"),
    ("developer:alice", MAX_RPM + 1, None, "between 1 and"),
    ("developer:alice", None, MAX_TPM + 1, "between 1 and"),
    ("developer:alice", None, None, "give a requests-per-minute"),
    ("org", 10, None, "use key:<id>"),
    ("dev:alice", 10, None, "use key:<id>"),
    ("developer:", 10, None, "use key:<id>"),
    ("team:a\nb", 10, None, "use key:<id>"),
])
def test_hostile_limits_are_refused_with_a_reason(scope: str, rpm: int | None, tpm: int | None, says: str) -> None:
    """Negative, zero, huge, missing or mis-scoped limits raise a ConfigError naming the problem."""
    with pytest.raises(ConfigError, match=says.replace("<", ".").replace(">", ".")):
        rate_limit_of(scope, rpm=rpm, tpm=tpm)


def test_openai_shape_backs_off_not_stops() -> None:
    """OpenAI route: 429 type requests, code rate_limit_exceeded, Retry-After and x-ratelimit-* headers,
    never the pause's usage_limit_reached."""
    w = windows(RateLimit("developer:alice", rpm=1, tpm=500))
    w.admit(ALICE, 10, T0)
    refusal = w.admit(ALICE, 10, T0 + 30).refusal
    assert refusal is not None
    status, body, headers, _ = refusal_response(refusal, "/v1/responses")
    error = json.loads(body)["error"]
    h = dict(headers)
    assert status == 429 and error["type"] == "requests" and error["code"] == "rate_limit_exceeded"
    assert "try again in" in error["message"]
    assert h["Retry-After"] == str(refusal.retry_after_s) and 1 <= refusal.retry_after_s <= 60
    assert h["x-ratelimit-limit-requests"] == "1" and h["x-ratelimit-remaining-requests"] == "0"
    assert h["x-ratelimit-limit-tokens"] == "500" and h["x-ratelimit-remaining-tokens"] == "490"
    assert h["x-ratelimit-reset-requests"] == "1m30s" and h["x-should-retry"] == "true"


def test_anthropic_shape_is_retried_by_claude_code() -> None:
    """/v1/messages: Anthropic's rate_limit_error, retry-after <= 60 and x-should-retry true (false stops it)."""
    w = windows(RateLimit("key:k1", rpm=1))
    w.admit(ALICE, 0, T0)
    refusal = w.admit(ALICE, 0, T0 + 1).refusal
    assert refusal is not None
    status, body, headers, _ = refusal_response(refusal, "/v1/messages")
    doc, h = json.loads(body), dict(headers)
    assert status == 429 and doc["type"] == "error" and doc["error"]["type"] == "rate_limit_error"
    assert h["x-should-retry"] == "true" and 1 <= int(h["retry-after"]) <= 60
    assert h["anthropic-ratelimit-requests-limit"] == "1" and h["anthropic-ratelimit-requests-reset"].endswith("Z")


def test_codex_streaming_gets_the_retry_event_it_waits_on() -> None:
    """Codex streaming Responses: a 200 stream of one response.failed rate_limit_exceeded event whose message
    says "try again in Ns" (Codex ignores Retry-After); another client streaming gets the 429."""
    w = windows(RateLimit("key:k1", rpm=1))
    w.admit(ALICE, 0, T0)
    refusal = w.admit(ALICE, 0, T0 + 50).refusal
    assert refusal is not None
    status, body, headers, content_type = refusal_response(refusal, "/v1/responses", client="codex_exec", stream=True)
    event = json.loads(body.split(b"data: ", 1)[1])
    assert status == 200 and content_type == "text/event-stream" and body.startswith(b"event: response.failed\n")
    assert event["response"]["error"]["code"] == "rate_limit_exceeded"
    assert f"try again in {refusal.retry_after_s}s" in event["response"]["error"]["message"]
    assert dict(headers)["Retry-After"] == str(refusal.retry_after_s)
    assert refusal_response(refusal, "/v1/responses", client="my-sdk", stream=True)[0] == 429
    assert refusal_response(refusal, "/v1/responses", client="codex_exec", stream=False)[0] == 429


def test_openai_reset_format() -> None:
    """Durations as OpenAI writes them."""
    assert [openai_reset(s) for s in (0, 7, 60, 64)] == ["0s", "7s", "1m0s", "1m4s"]
