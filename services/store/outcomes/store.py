"""Turn outcomes: the usage events of each turn added up, beside the turn's external evaluation.

The read picks turns first (the newest ``limit`` turns with an event at or after ``since``, for one
session or team if asked), then adds up every event of each picked turn through the ``usage_events_turn``
index, so a turn that began before ``since`` is still counted whole. Evaluations are one row per turn id,
the latest replacing the one before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from spendgate.core.db import Queryable
from spendgate.domain.outcomes import ExternalScore, TurnEvaluation, TurnFacts
from spendgate.domain.segments import OwnModelUsage, SegmentRow

_PICK_NEWEST = """
WITH picked AS (
    SELECT developer, turn_id, max(occurred_at) AS last_at
    FROM usage_events
    WHERE turn_id IS NOT NULL AND occurred_at >= $1
      AND ($2::text IS NULL OR session_id = $2) AND ($3::text IS NULL OR team = $3)
    GROUP BY developer, turn_id
    ORDER BY last_at DESC
    LIMIT $4
)"""

_PICK_STARTED = """
WITH picked AS (
    -- Turns whose first event is in [$1, $2), at most $3 of them (the newest).
    SELECT developer, turn_id, max(occurred_at) AS last_at
    FROM usage_events
    WHERE turn_id IS NOT NULL AND occurred_at >= $1::timestamptz AND occurred_at < $2::timestamptz + interval '1 day'
    GROUP BY developer, turn_id
    HAVING min(occurred_at) >= $1 AND min(occurred_at) < $2
    ORDER BY last_at DESC
    LIMIT $3
)"""

_ADD_UP = """
SELECT p.developer, p.turn_id, p.last_at, a.sessions[1] AS session_id, a.teams[a.n] AS team,
       a.started_at, a.ended_at, a.n AS requests, a.tool_calls, a.tool_failures, a.retry_requests,
       coalesce(a.finals[a.n], false) AS final_message, a.failed, a.incomplete, a.aborted, a.refused,
       a.requested[1] AS model_requested, a.used[a.n] AS model_used, a.downgraded, a.cost_micros,
       a.versions[a.n] AS policy_version, a.repos[1] AS repo,
       a.inputs[1] AS input_tokens, a.arms[1] AS experiment_arm, v.score AS eval_score, v.evaluator, v.evaluated_at,
       a.keys[1] AS key_id, a.centers[1] AS cost_center, a.rules[1] AS routing_rule
FROM picked p
CROSS JOIN LATERAL (
    -- One turn's events through usage_events_turn, already in time order: every array_agg shares one
    -- ORDER BY, so PostgreSQL sorts each turn once (or not at all), and [1] / [n] are its first / last.
    SELECT count(*) AS n,
           array_agg(e.session_id ORDER BY e.occurred_at, e.event_id) AS sessions,
           array_agg(e.team ORDER BY e.occurred_at, e.event_id) AS teams,
           array_agg(e.final_message ORDER BY e.occurred_at, e.event_id) AS finals,
           array_agg(e.model_requested ORDER BY e.occurred_at, e.event_id) AS requested,
           array_agg(e.model_used ORDER BY e.occurred_at, e.event_id) AS used,
           array_agg(e.policy_version ORDER BY e.occurred_at, e.event_id) AS versions,
           array_agg(e.repo ORDER BY e.occurred_at, e.event_id) AS repos,
           array_agg(e.input_tokens ORDER BY e.occurred_at, e.event_id) AS inputs,
           array_agg(e.experiment_arm ORDER BY e.occurred_at, e.event_id) AS arms,
           array_agg(e.key_id ORDER BY e.occurred_at, e.event_id) AS keys,
           array_agg(e.cost_center ORDER BY e.occurred_at, e.event_id) AS centers,
           array_agg(e.routing_rule ORDER BY e.occurred_at, e.event_id)
               FILTER (WHERE e.routing_rule IS NOT NULL) AS rules,
           min(e.occurred_at - make_interval(secs => e.latency_ms / 1000.0)) AS started_at,
           max(e.occurred_at) AS ended_at,
           max(e.tool_outputs) AS tool_calls,
           max(e.tool_failures) AS tool_failures,
           count(*) FILTER (WHERE e.retry) AS retry_requests,
           count(*) FILTER (WHERE e.status = 'upstream_error') AS failed,
           count(*) FILTER (WHERE e.status = 'incomplete') AS incomplete,
           count(*) FILTER (WHERE e.status = 'client_aborted') AS aborted,
           count(*) FILTER (WHERE e.status = 'refused') AS refused,
           bool_or(e.route_reason <> 'requested') AS downgraded,
           sum(e.cost_micros)::bigint AS cost_micros
    FROM usage_events e
    WHERE e.turn_id = p.turn_id AND e.developer = p.developer
) a
LEFT JOIN turn_evals v ON v.turn_id = p.turn_id
ORDER BY p.last_at DESC, p.turn_id
"""
_TURNS = _PICK_NEWEST + _ADD_UP
_STARTED_TURNS = _PICK_STARTED + _ADD_UP


async def turn_facts(db: Queryable, *, since: datetime, session_id: str | None = None, team: str | None = None,
                     limit: int) -> list[tuple[TurnFacts, ExternalScore | None]]:
    """The newest ``limit`` turns active at or after ``since``, newest first, each with its evaluation."""
    rows = await db.fetch(_TURNS, since, session_id, team, limit)
    return [(_facts(r), _external(r)) for r in rows]


async def turns_started(db: Queryable, *, start: datetime, end: datetime,
                        limit: int) -> list[tuple[TurnFacts, ExternalScore | None]]:
    """The turns that began in ``[start, end)`` (their first event; at most ``limit``, the newest), each
    added up whole (events up to a day after ``end`` count) with its evaluation."""
    rows = await db.fetch(_STARTED_TURNS, start, end, limit)
    return [(_facts(r), _external(r)) for r in rows]


def _facts(r: asyncpg.Record) -> TurnFacts:
    return TurnFacts(
        developer=r["developer"], team=r["team"], session_id=r["session_id"], turn_id=r["turn_id"],
        started_at=r["started_at"], ended_at=r["ended_at"], requests=r["requests"], tool_calls=r["tool_calls"],
        tool_failures=r["tool_failures"], retry_requests=r["retry_requests"], final_message=r["final_message"],
        failed=r["failed"], incomplete=r["incomplete"], aborted=r["aborted"], refused=r["refused"],
        model_requested=r["model_requested"], model_used=r["model_used"], downgraded=r["downgraded"],
        cost_micros=r["cost_micros"], policy_version=r["policy_version"],
        repo=r["repo"], input_tokens=r["input_tokens"], experiment_arm=r["experiment_arm"],
        key_id=r["key_id"], cost_center=r["cost_center"], routing_rule=r["routing_rule"],
    )


def _external(r: asyncpg.Record) -> ExternalScore | None:
    if r["eval_score"] is None:
        return None
    return ExternalScore(r["eval_score"], r["evaluator"], r["evaluated_at"])


async def known_turns(db: Queryable, turn_ids: Sequence[str]) -> set[str]:
    """Which of ``turn_ids`` have at least one usage event."""
    rows = await db.fetch("""SELECT DISTINCT turn_id FROM usage_events
                             WHERE turn_id IS NOT NULL AND turn_id = ANY($1::text[])""", list(set(turn_ids)))
    return {r["turn_id"] for r in rows}


async def record_evals(db: Queryable, evaluations: Sequence[TurnEvaluation], *, received_at: datetime) -> int:
    """Store evaluations (one statement; the last of a turn in the batch wins, and it replaces a stored one
    unless that one was evaluated later). Returns how many rows were written."""
    latest: dict[str, TurnEvaluation] = {}
    for e in evaluations:
        latest[e.turn_id] = e
    if not latest:
        return 0
    rows = list(latest.values())
    result = await db.execute(
        """INSERT INTO turn_evals (turn_id, score, evaluator, evaluated_at, received_at)
           SELECT t, s, ev, at, $5 FROM unnest($1::text[], $2::float8[], $3::text[], $4::timestamptz[])
               AS x(t, s, ev, at)
           ON CONFLICT (turn_id) DO UPDATE SET score = excluded.score, evaluator = excluded.evaluator,
               evaluated_at = excluded.evaluated_at, received_at = excluded.received_at
           WHERE turn_evals.evaluated_at <= excluded.evaluated_at""",
        [e.turn_id for e in rows], [e.score for e in rows], [e.evaluator for e in rows],
        [e.evaluated_at or received_at for e in rows], received_at,
    )
    return int(result.rsplit(" ", 1)[-1])


# -- segments (policy suggest) ------------------------------------------------------------------------------

_SEGMENT_TURNS = """
SELECT a.developer, a.turn_id, a.n, a.sessions[1] AS session_id, a.teams[a.n] AS team,
       coalesce(a.finals[a.n], false) AS final_message, a.requested[1] AS model_requested,
       a.used[a.n] AS model_used, a.reasons[1] AS route_reason, a.repos[1] AS repo, a.inputs[1] AS input_tokens,
       a.arms[1] AS experiment_arm, a.started_at, a.ended_at, a.tool_calls, a.tool_failures, a.retry_requests,
       a.failed, a.incomplete, a.aborted, a.refused, a.downgraded, a.cost_micros, a.own_requests, a.own_input,
       a.own_cached, a.own_output, a.own_write_5m, a.own_write_1h, a.own_cost,
       v.score AS eval_score, v.evaluator, v.evaluated_at
FROM (
    -- One pass over the window's events, grouped per turn; every array_agg shares one ORDER BY, so
    -- PostgreSQL sorts the rows once and [1] / [n] are each turn's first / last request.
    SELECT e.developer, e.turn_id, count(*) AS n,
           array_agg(e.session_id ORDER BY e.occurred_at, e.event_id) AS sessions,
           array_agg(e.team ORDER BY e.occurred_at, e.event_id) AS teams,
           array_agg(e.final_message ORDER BY e.occurred_at, e.event_id) AS finals,
           array_agg(e.model_requested ORDER BY e.occurred_at, e.event_id) AS requested,
           array_agg(e.model_used ORDER BY e.occurred_at, e.event_id) AS used,
           array_agg(e.route_reason ORDER BY e.occurred_at, e.event_id) AS reasons,
           array_agg(e.repo ORDER BY e.occurred_at, e.event_id) AS repos,
           array_agg(e.input_tokens ORDER BY e.occurred_at, e.event_id) AS inputs,
           array_agg(e.experiment_arm ORDER BY e.occurred_at, e.event_id) AS arms,
           min(e.occurred_at - make_interval(secs => e.latency_ms / 1000.0)) AS started_at,
           max(e.occurred_at) AS ended_at,
           max(e.tool_outputs) AS tool_calls, max(e.tool_failures) AS tool_failures,
           count(*) FILTER (WHERE e.retry) AS retry_requests,
           count(*) FILTER (WHERE e.status = 'upstream_error') AS failed,
           count(*) FILTER (WHERE e.status = 'incomplete') AS incomplete,
           count(*) FILTER (WHERE e.status = 'client_aborted') AS aborted,
           count(*) FILTER (WHERE e.status = 'refused') AS refused,
           bool_or(e.route_reason <> 'requested') AS downgraded,
           sum(e.cost_micros)::bigint AS cost_micros,
           -- the requests that ran on the model they asked for: what a cheaper route would reprice
           count(*) FILTER (WHERE e.model_used = e.model_requested AND e.status <> 'refused') AS own_requests,
           coalesce(sum(e.input_tokens) FILTER (WHERE e.model_used = e.model_requested), 0)::bigint AS own_input,
           coalesce(sum(e.cached_tokens) FILTER (WHERE e.model_used = e.model_requested), 0)::bigint AS own_cached,
           coalesce(sum(e.output_tokens) FILTER (WHERE e.model_used = e.model_requested), 0)::bigint AS own_output,
           coalesce(sum(e.cache_write_5m_tokens) FILTER (WHERE e.model_used = e.model_requested), 0)::bigint
               AS own_write_5m,
           coalesce(sum(e.cache_write_1h_tokens) FILTER (WHERE e.model_used = e.model_requested), 0)::bigint
               AS own_write_1h,
           coalesce(sum(e.cost_micros) FILTER (WHERE e.model_used = e.model_requested), 0)::bigint AS own_cost
    FROM usage_events e
    WHERE e.turn_id IS NOT NULL AND e.occurred_at >= $1 AND e.occurred_at < $2
      AND ($3::text IS NULL OR e.team = $3) AND mod(hashtext(e.turn_id)::bigint + 2147483648, $5) = $4
    GROUP BY e.developer, e.turn_id
) a
LEFT JOIN turn_evals v ON v.turn_id = a.turn_id
"""


SEGMENT_READS = 2
"""The turn read is split by a hash of the turn id into this many grouped queries run side by side on the
pool's connections: the grouping is the server's work, and with two it uses two cores (a million events: about
12 s alone, 8 s in two)."""


async def segment_turns(pool: asyncpg.Pool, *, start: datetime, end: datetime, team: str | None = None,
                        reads: int = SEGMENT_READS) -> list[SegmentRow]:
    """Every turn with an event in ``[start, end)`` (of ``team`` if given), in ``reads`` grouped reads: its
    facts, its evaluation, its first request's route, and the tokens and cost of its requests that ran on the
    model they asked for (the part a cheaper route would reprice). Ordered by turn id, then developer: the
    bootstrap resamples by position, so the order is part of the answer."""
    parts = await asyncio.gather(*(pool.fetch(_SEGMENT_TURNS, start, end, team, i, reads) for i in range(reads)))
    rows = sorted((r for part in parts for r in part), key=lambda r: (r["turn_id"], r["developer"]))
    return [_segment_row(r) for r in rows]


def _segment_row(r: asyncpg.Record) -> SegmentRow:
    facts = TurnFacts(
        developer=r["developer"], team=r["team"], session_id=r["session_id"], turn_id=r["turn_id"],
        started_at=r["started_at"], ended_at=r["ended_at"], requests=r["n"], tool_calls=r["tool_calls"],
        tool_failures=r["tool_failures"], retry_requests=r["retry_requests"], final_message=r["final_message"],
        failed=r["failed"], incomplete=r["incomplete"], aborted=r["aborted"], refused=r["refused"],
        model_requested=r["model_requested"], model_used=r["model_used"], downgraded=r["downgraded"],
        cost_micros=r["cost_micros"], repo=r["repo"], input_tokens=r["input_tokens"],
        experiment_arm=r["experiment_arm"],
    )
    own = OwnModelUsage(requests=r["own_requests"], input_tokens=r["own_input"], cached_tokens=r["own_cached"],
                        output_tokens=r["own_output"], cache_write_5m_tokens=r["own_write_5m"],
                        cache_write_1h_tokens=r["own_write_1h"], cost_micros=r["own_cost"])
    return SegmentRow(facts=facts, external=_external(r), route_reason=r["route_reason"], own=own)
