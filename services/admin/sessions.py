"""Session drill-down: a Codex session as one chargeback line, its turns under it, and every model
request under its turn (time, model requested and used, stage at decision, tokens, cost, retry, status).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import msgspec

from spendgate.admin.reports import ChargebackLine, chargeback
from spendgate.admin.window import Filters, Window
from spendgate.core.db import Queryable
from spendgate.domain.pricing import PriceTable
from spendgate.store.usage.reports import SessionRequest, session_bounds, session_developers, session_requests


class RequestLine(msgspec.Struct, frozen=True, kw_only=True):
    event_id: str
    occurred_at: datetime
    endpoint: str
    """The API path the client called, e.g. ``/v1/responses``."""
    stream: bool | None
    """Whether the client asked for a streamed answer; null for requests recorded before spendgate noted it."""
    model_requested: str
    model_used: str
    route_reason: str
    stage: str
    """The enforcement stage the proxy decided at: ok, alert, downgrade or pause."""
    status: str
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cost_micros: int
    retry: bool
    intent_estimate: bool = False
    """Usage estimated from the request's intent: the proxy died before it finished (``docs/ledger.md``)."""


class TurnLine(msgspec.Struct, frozen=True, kw_only=True):
    turn_id: str | None
    first_at: datetime
    last_at: datetime
    requests: int
    cost_micros: int
    retries: int
    downgraded: int
    request_lines: list[RequestLine]


class SessionDetail(msgspec.Struct, frozen=True, kw_only=True):
    session_id: str
    line: ChargebackLine
    turns: list[TurnLine]


class SessionNotFound(LookupError):
    def __init__(self, session_id: str, developer: str | None = None) -> None:
        whose = f" of developer {developer!r}" if developer else ""
        super().__init__(f"no usage recorded for session {session_id!r}{whose}")
        self.session_id = session_id


class SessionAmbiguous(LookupError):
    """Several developers' keys sent this session id (it is a client-chosen header): name one."""

    def __init__(self, session_id: str, developers: list[str]) -> None:
        super().__init__(f"session {session_id!r} was used by several developers ({', '.join(developers)}): "
                         "name one with --developer (API: ?developer=)")
        self.session_id, self.developers = session_id, developers


_EPSILON = timedelta(microseconds=1)


async def session_detail(conn: Queryable, prices: PriceTable, session_id: str,
                         developer: str | None = None) -> SessionDetail:
    """The whole session of one developer, however long it ran; :class:`SessionNotFound` when it has no
    usage. Session ids are client-chosen, so a session is namespaced by the key's developer: without
    ``developer``, the one developer who used the id, or :class:`SessionAmbiguous` when several did."""
    if developer is None:
        developers = await session_developers(conn, session_id)
        if len(developers) > 1:
            raise SessionAmbiguous(session_id, developers)
        developer = developers[0] if developers else None
    bounds = await session_bounds(conn, session_id, developer)
    if bounds is None:
        raise SessionNotFound(session_id, developer)
    first_at, last_at = bounds
    window = Window(first_at.date(), last_at.date(), first_at, last_at + _EPSILON)
    report = await chargeback(conn, prices, by="session", window=window,
                              filters=Filters(session_id=session_id, developer=developer))
    turns: dict[str | None, list[SessionRequest]] = {}
    for r in await session_requests(conn, session_id, developer):
        turns.setdefault(r.turn_id, []).append(r)
    return SessionDetail(session_id=session_id, line=report.lines[0],
                         turns=[_turn(turn_id, reqs) for turn_id, reqs in turns.items()])


def _turn(turn_id: str | None, rows: list[SessionRequest]) -> TurnLine:
    return TurnLine(
        turn_id=turn_id, first_at=rows[0].occurred_at, last_at=rows[-1].occurred_at,
        requests=sum(1 for r in rows if r.status != "refused"), cost_micros=sum(r.cost_micros for r in rows),
        retries=sum(1 for r in rows if r.retry),
        downgraded=sum(1 for r in rows if r.route_reason != "requested"),
        request_lines=[
            RequestLine(
                event_id=r.event_id, occurred_at=r.occurred_at, endpoint=r.endpoint, stream=r.stream,
                model_requested=r.model_requested, model_used=r.model_used, route_reason=r.route_reason,
                stage=r.stage, status=r.status, input_tokens=r.input_tokens, cached_tokens=r.cached_tokens,
                output_tokens=r.output_tokens, reasoning_tokens=r.reasoning_tokens,
                cost_micros=r.cost_micros, retry=r.retry, intent_estimate=r.intent_estimate,
            )
            for r in rows
        ],
    )
