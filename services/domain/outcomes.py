"""Turn outcomes and their quality score (issue 13 item 1). Pure: no I/O.

A turn is what a developer asked once and everything the agent did about it: every model request that
carries the same turn id. Its outcome is read from the usage events the proxy recorded (requests, the
tool outputs the client sent back and how many failed, retries, whether the last answer was a final
assistant message, failed / incomplete / aborted requests, duration, models, downgrade, cost). From it, a
quality score in [0, 1] (``docs/policy.md``, "Turn outcomes and the quality score"):

    score = 0.40 × finished + 0.30 × (1 − failed tool share) + 0.15 × (1 − retry share)
            + 0.15 × (1 − failed request share)

An org's own evaluation of a turn (``spendgate.eval.v1``, ``POST /v1/evals``) replaces the derived score
where present; the outcome says which one it carries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal

import msgspec

WEIGHT_FINISHED, WEIGHT_TOOLS, WEIGHT_RETRIES, WEIGHT_REQUESTS = 0.40, 0.30, 0.15, 0.15
MAX_EVAL_BATCH = 1_000
"""Evaluations one ``POST /v1/evals`` may carry (the Kafka topic takes one per record)."""
MAX_ID_CHARS = 200
MAX_EVALUATOR_CHARS = 100

ScoreSource = Literal["derived", "external"]


class TurnFacts(msgspec.Struct, frozen=True, kw_only=True):
    """What the usage events of one turn add up to (the admin API's turn outcome adds its score to these)."""

    developer: str
    team: str
    session_id: str | None
    turn_id: str
    started_at: datetime
    ended_at: datetime
    requests: int
    tool_calls: int
    """Tool outputs the client sent back during the turn (the most any request of it carried)."""
    tool_failures: int
    retry_requests: int
    final_message: bool
    """The turn's last request was answered with an assistant message, not a tool call."""
    failed: int
    """Requests that ended in an upstream error (``response.failed`` included)."""
    incomplete: int
    aborted: int
    refused: int
    model_requested: str
    model_used: str
    downgraded: bool
    cost_micros: int
    policy_version: str | None = None
    """The policy version the turn's last request was decided under (null before the first apply)."""
    repo: str | None = None
    """The repository the turn's first request named (``x-codex-turn-metadata``), if any."""
    input_tokens: int = 0
    """The turn's first request's input tokens: the size the turn started at (its segment's size bucket)."""
    experiment_arm: str | None = None
    """The turn's exploration arm (``explore`` / ``control``, from its first request); null when the turn
    was not eligible for exploration."""
    key_id: str | None = None
    """The virtual key of the turn's first request."""
    cost_center: str | None = None
    routing_rule: str | None = None
    """The routing rule that routed the turn's first routed request (null: no rule routed any of them)."""


@dataclass(frozen=True, slots=True)
class ExternalScore:
    score: float
    evaluator: str
    evaluated_at: datetime


def derived_score(f: TurnFacts) -> float:
    """The documented score of a turn from what the gateway saw, in [0, 1], three decimals."""
    requests = max(f.requests, 1)
    tools = 1.0 - min(f.tool_failures, f.tool_calls) / f.tool_calls if f.tool_calls else 1.0
    retries = 1.0 - min(f.retry_requests, requests) / requests
    broken = min(f.failed + f.incomplete + f.aborted + f.refused, requests)
    score = (WEIGHT_FINISHED * (1.0 if f.final_message else 0.0) + WEIGHT_TOOLS * tools
             + WEIGHT_RETRIES * retries + WEIGHT_REQUESTS * (1.0 - broken / requests))
    return round(min(max(score, 0.0), 1.0), 3)


def quality(f: TurnFacts, external: ExternalScore | None) -> tuple[float, ScoreSource]:
    """The score the outcome carries: the external one where present, else the derived one."""
    if external is not None:
        return external.score, "external"
    return derived_score(f), "derived"


Score = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
TurnId = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_CHARS)]


class TurnEvaluation(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One external evaluation of a turn: a record of ``spendgate.eval.v1`` (JSON), or an item of
    ``POST /v1/evals``. A later evaluation of the same turn replaces the earlier one."""

    schema_version: Literal[1] = 1
    turn_id: TurnId
    """The turn id the agent sent (Codex's ``x-codex-turn-id``, as on the usage events)."""
    score: Score
    """Quality in [0, 1], 1 the best: a finite number (NaN and infinities are refused)."""
    evaluator: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_EVALUATOR_CHARS)]
    """Who scored it (the eval system's name), shown beside the score."""
    evaluated_at: datetime | None = None
    """When it was scored (RFC 3339 with a timezone); the time spendgate received it when left out."""


class EvalBatch(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The body of ``POST /v1/evals``."""

    evaluations: Annotated[list[TurnEvaluation], msgspec.Meta(min_length=1, max_length=MAX_EVAL_BATCH)]


class EvalError(ValueError):
    """An evaluation spendgate refuses (the message says why)."""


_eval_decoder = msgspec.json.Decoder(TurnEvaluation)


def decode_evaluation(raw: bytes) -> TurnEvaluation:
    """A ``spendgate.eval.v1`` record, validated; :class:`EvalError` with the reason otherwise."""
    try:
        evaluation = _eval_decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise EvalError(f"not a valid evaluation: {exc}") from None
    check(evaluation)
    return evaluation


def check(evaluation: TurnEvaluation) -> None:
    """What the types cannot say: a finite score, a timezone, printable ids."""
    if not math.isfinite(evaluation.score):
        raise EvalError(f"score of turn {evaluation.turn_id!r} must be a finite number in [0, 1]")
    if evaluation.evaluated_at is not None and evaluation.evaluated_at.tzinfo is None:
        raise EvalError("evaluated_at needs a timezone, e.g. 2026-12-01T08:00:00Z")
    for name, value in (("turn_id", evaluation.turn_id), ("evaluator", evaluation.evaluator)):
        if not value.isprintable():
            raise EvalError(f"{name} must be printable text")
