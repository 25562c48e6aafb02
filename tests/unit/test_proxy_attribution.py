"""Attribution, header filtering, the upstream URL and the per-session estimator."""

from __future__ import annotations

import json

from multidict import CIMultiDict, CIMultiDictProxy

from spendgate.domain.enforcement.estimate import BYTES_PER_TOKEN_X10, SessionEstimator
from spendgate.proxy.attribution import attribute
from spendgate.proxy.forwarding import budget_headers, client_headers, upstream_headers, upstream_url

META = json.dumps({"session_id": "s-meta", "turn_id": "t-1", "workspaces": {"/home/a/src/api": {"has_changes": False}}})


def test_codex_headers_give_session_turn_repo_client() -> None:
    """Codex's session-id, turn metadata and originator become session, turn, repo and client."""
    a = attribute({"session-id": "s-1", "x-codex-turn-metadata": META, "originator": "codex_exec"}, "pck")
    assert (a.session_id, a.turn_id, a.repo, a.client) == ("s-1", "t-1", "/home/a/src/api", "codex_exec")


def test_session_fallbacks_in_order() -> None:
    """session_id (underscore), then prompt_cache_key, then x-spendgate-session name the session."""
    assert attribute({"session_id": "old"}, "pck").session_id == "old"
    assert attribute({}, "pck").session_id == "pck"
    assert attribute({"x-spendgate-session": "mine"}, None).session_id == "mine"
    assert attribute({"x-codex-turn-metadata": "{not json"}, None).session_id is None


def test_upstream_headers_replace_authorization_and_drop_hop_by_hop() -> None:
    """The virtual key never goes upstream; hop-by-hop and Connection-named headers are dropped."""
    client = CIMultiDictProxy(CIMultiDict([
        ("Authorization", "Bearer sk-sg-virtual"), ("Connection", "keep-alive, X-Secret-Hop"),
        ("X-Secret-Hop", "1"), ("Keep-Alive", "timeout=5"), ("Transfer-Encoding", "chunked"),
        ("Accept-Encoding", "gzip"), ("session-id", "s-1"), ("x-spendgate-session", "s"), ("Host", "gw"),
    ]))
    out = upstream_headers(client, "sk-upstream")
    assert out.getall("Authorization") == ["Bearer sk-upstream"]
    assert out["session-id"] == "s-1" and out["Accept-Encoding"] == "identity"
    for gone in ("Connection", "X-Secret-Hop", "Keep-Alive", "Transfer-Encoding", "x-spendgate-session", "Host"):
        assert gone not in out
    assert "Authorization" not in upstream_headers(client, None)

    with_api_key = CIMultiDictProxy(CIMultiDict([("x-api-key", "sk-sg-virtual"), ("anthropic-version", "v")]))
    assert "x-api-key" not in upstream_headers(with_api_key, "sk-upstream")  # Anthropic-style key: never forwarded


def test_client_headers_drop_model_headers_after_a_rewrite() -> None:
    """After a downgrade the openai-model headers are dropped so Codex shows no reroute warning."""
    up = CIMultiDictProxy(CIMultiDict([("openai-model", "gpt-5.1-mini"), ("x-request-id", "r"),
                                        ("Content-Length", "3"), ("Connection", "close")]))
    assert "openai-model" in client_headers(up)
    out = client_headers(up, drop_model_headers=True)
    assert "openai-model" not in out and out["x-request-id"] == "r" and "Content-Length" not in out


def test_upstream_spendgate_headers_never_reach_the_client() -> None:
    """x-spendgate-* answers are the gateway's own: an upstream cannot set a client's stage or budget."""
    up = CIMultiDictProxy(CIMultiDict([("X-Spendgate-Stage", "ok"), ("x-request-id", "r")]))
    assert list(client_headers(up).items()) == [("x-request-id", "r")]


def test_budget_headers_name_the_stage_and_the_tightest_budget_left_in_decimal_usd() -> None:
    """Remaining is exact decimal dollars (negative past the budget); without a budget only the stage."""
    assert budget_headers("downgrade", 12_345) == [("x-spendgate-stage", "downgrade"),
                                                   ("x-spendgate-budget-remaining-usd", "0.012345")]
    assert budget_headers("pause", -1_500_000)[1] == ("x-spendgate-budget-remaining-usd", "-1.500000")
    assert budget_headers("ok", None) == [("x-spendgate-stage", "ok")]


def test_upstream_url_joins_paths() -> None:
    """The route table's upstream path maps onto the upstream base, keeping the query string."""
    assert str(upstream_url("https://api.openai.com/v1", "/responses", "")) == "https://api.openai.com/v1/responses"
    assert str(upstream_url("http://h:1/v1/", "/models", "a=1")) == "http://h:1/v1/models?a=1"


def test_estimator_corrects_per_session() -> None:
    """Body size / 4.6 at first, then the session's own bytes-per-token from the reported input tokens."""
    book = SessionEstimator(output_cap_tokens=8192, max_sessions=2)
    assert book.estimate("s", 4600).input_tokens == 4600 * 10 // BYTES_PER_TOKEN_X10
    book.observe("s", body_bytes=3000, input_tokens=1000, output_tokens=5)
    assert book.estimate("s", 6000).input_tokens == 2000
    book.observe("a", body_bytes=1, input_tokens=1, output_tokens=0)
    book.observe("b", body_bytes=1, input_tokens=1, output_tokens=0)
    assert book.session("s") is None and len(book) == 2
