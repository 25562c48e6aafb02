"""Turn outcomes as the admin API and ``spendgate turns`` show them, and external evaluations recorded.

The API's handlers and the CLI's database source call these same functions; the score's formula is
:mod:`spendgate.domain.outcomes` (``docs/policy.md``, "Turn outcomes and the quality score").
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import msgspec

from spendgate.core.db import Queryable
from spendgate.domain.outcomes import (
    EvalError,
    ScoreSource,
    TurnEvaluation,
    TurnFacts,
    check,
    derived_score,
    quality,
)
from spendgate.store.outcomes import store

DEFAULT_SINCE = timedelta(days=7)
MAX_TURNS = 5_000
DEFAULT_TURNS = 200


class TurnOutcome(TurnFacts, frozen=True, kw_only=True):
    """One turn: what its requests added up to (:class:`TurnFacts`), how long it took, and its quality score."""

    duration_ms: int
    score: float
    """Quality in [0, 1]: the external evaluation where one was recorded, else the derived score."""
    score_source: ScoreSource
    derived_score: float
    evaluator: str | None
    """Who gave the external score (null when the score is derived)."""


class TurnList(msgspec.Struct, frozen=True, kw_only=True):
    since: datetime
    turns: list[TurnOutcome]


class EvalsRecorded(msgspec.Struct, frozen=True, kw_only=True):
    recorded: int
    """Evaluations stored (an older evaluation than the one stored for a turn is not)."""


class UnknownTurns(EvalError):
    def __init__(self, turn_ids: Sequence[str]) -> None:
        shown = ", ".join(repr(t) for t in sorted(turn_ids)[:5])
        more = f" and {len(turn_ids) - 5} more" if len(turn_ids) > 5 else ""
        super().__init__(f"no usage recorded for turn {shown}{more}: nothing was stored (evaluate a turn after "
                         "its requests went through spendgate)")
        self.turn_ids = list(turn_ids)


async def turn_list(db: Queryable, *, now: datetime, since: datetime | None = None, session_id: str | None = None,
                    team: str | None = None, limit: int = DEFAULT_TURNS) -> TurnList:
    """The newest turns (at most ``limit``) with an event at or after ``since`` (default: a week ago)."""
    start = since if since is not None else now - DEFAULT_SINCE
    found = await store.turn_facts(db, since=start, session_id=session_id, team=team, limit=limit)
    turns = []
    for facts, external in found:
        score, source = quality(facts, external)
        turns.append(TurnOutcome(
            **msgspec.structs.asdict(facts),
            duration_ms=max(0, round((facts.ended_at - facts.started_at).total_seconds() * 1000)),
            score=score, score_source=source, derived_score=derived_score(facts),
            evaluator=external.evaluator if external else None,
        ))
    return TurnList(since=start, turns=turns)


async def record_evaluations(db: Queryable, evaluations: Sequence[TurnEvaluation], *,
                             now: datetime) -> EvalsRecorded:
    """Validate and store a batch, all or nothing: :class:`EvalError` (an invalid item) or
    :class:`UnknownTurns` (turns without usage) and nothing stored."""
    for evaluation in evaluations:
        check(evaluation)
    unknown = {e.turn_id for e in evaluations} - await store.known_turns(db, [e.turn_id for e in evaluations])
    if unknown:
        raise UnknownTurns(sorted(unknown))
    return EvalsRecorded(recorded=await store.record_evals(db, evaluations, received_at=now))
