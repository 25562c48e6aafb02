"""Turn outcomes, pure parts: the quality score and the evaluation records' validation."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from spendgate.domain.outcomes import EvalError, ExternalScore, TurnFacts, decode_evaluation, derived_score, quality

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def _facts(**overrides: object) -> TurnFacts:
    values: dict[str, object] = dict(
        developer="alice", team="platform", session_id="s", turn_id="t", started_at=T0, ended_at=T0, requests=4,
        tool_calls=3, tool_failures=0, retry_requests=0, final_message=True, failed=0, incomplete=0, aborted=0,
        refused=0, model_requested="gpt-5.1", model_used="gpt-5.1", downgraded=False, cost_micros=1000)
    values.update(overrides)
    return TurnFacts(**values)  # type: ignore[arg-type]


def test_score_is_one_for_a_clean_turn_and_falls_with_each_kind_of_trouble() -> None:
    """Clean = 1; no final answer costs 0.4; all tools failing 0.3; every request a retry or broken 0.15."""
    assert derived_score(_facts()) == 1.0
    assert derived_score(_facts(final_message=False)) == 0.6
    assert derived_score(_facts(tool_failures=3)) == 0.7
    assert derived_score(_facts(tool_failures=1)) == 0.9
    assert derived_score(_facts(retry_requests=4, failed=4)) == 0.7
    worst = _facts(final_message=False, tool_failures=3, retry_requests=4, incomplete=2, refused=2)
    assert derived_score(worst) == 0.0
    assert derived_score(_facts(tool_calls=0, tool_failures=0)) == 1.0
    assert quality(_facts(), None) == (1.0, "derived")
    assert quality(_facts(), ExternalScore(0.25, "evals", T0)) == (0.25, "external")


@pytest.mark.parametrize("raw", [
    b"not json", b'{"turn_id": "t", "score": NaN, "evaluator": "e"}',
    b'{"turn_id": "t", "score": 1.5, "evaluator": "e"}', b'{"turn_id": "t", "score": -0.1, "evaluator": "e"}',
    b'{"turn_id": "t", "score": 1e999, "evaluator": "e"}', b'{"turn_id": "", "score": 0.5, "evaluator": "e"}',
    b'{"turn_id": "t", "score": "0.5", "evaluator": "e"}', b'{"turn_id": "t", "score": 0.5}',
    b'{"turn_id": "t", "score": 0.5, "evaluator": "e", "prompt": "leaked"}',
    b'{"turn_id": "t\\u0000x", "score": 0.5, "evaluator": "e"}',
    b'{"turn_id": "t", "score": 0.5, "evaluator": "e", "evaluated_at": "2026-11-28T09:00:00"}',
])
def test_hostile_evaluation_records_are_refused_with_a_reason(raw: bytes) -> None:
    """NaN, out of range, infinities, strings, missing or unknown fields, control characters: refused."""
    with pytest.raises(EvalError) as caught:
        decode_evaluation(raw)
    assert str(caught.value)


def test_a_valid_evaluation_decodes() -> None:
    """The documented record decodes with its fields."""
    e = decode_evaluation(b'{"turn_id": "t-1", "score": 0.75, "evaluator": "ci-evals", '
                          b'"evaluated_at": "2026-11-28T09:00:00Z"}')
    assert (e.turn_id, e.score, e.evaluator, e.evaluated_at) == ("t-1", 0.75, "ci-evals", T0)
