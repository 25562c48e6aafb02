"""Admin API handlers for turn outcomes: ``GET /v1/turns`` and ``POST /v1/evals`` (issue 13 item 1).

Each handler parses and checks its input, then calls the function the CLI calls against the database
(:mod:`spendgate.admin.turns`).
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from spendgate.admin.alerts import parse_since
from spendgate.admin.console.auth_chain import identity_of
from spendgate.admin.console.identity import may_read_team, may_record_evals, reads_everything
from spendgate.admin.deps import DEPS
from spendgate.admin.middleware import ApiError, bad_request, json_response
from spendgate.admin.openapi import Operation, Param
from spendgate.admin.turns import DEFAULT_TURNS, MAX_TURNS, EvalsRecorded, TurnList, record_evaluations, turn_list
from spendgate.domain.outcomes import MAX_EVAL_BATCH, EvalBatch, EvalError

MAX_TEXT = 256
MAX_EVAL_BODY_BYTES = 512 * 1024
"""A full batch of evaluations is about 200 KB; anything much larger is refused before it is read."""
_TEXT = {"type": "string", "minLength": 1, "maxLength": MAX_TEXT}
_batch_decoder = msgspec.json.Decoder(EvalBatch)


def _text(request: web.Request, name: str) -> str | None:
    value = request.query.get(name)
    if value is not None and not 1 <= len(value) <= MAX_TEXT:
        raise bad_request(f"{name} must be 1 to {MAX_TEXT} characters")
    return value


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit")
    if raw is None:
        return DEFAULT_TURNS
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_TURNS:
        raise bad_request(f"limit must be a whole number from 1 to {MAX_TURNS}, not {raw[:20]!r}")
    return int(raw)


async def get_turns(request: web.Request) -> web.Response:
    team = _text(request, "team")
    who = identity_of(request)
    if not reads_everything(who) and (team is None or not may_read_team(who, team)):
        raise ApiError(403, "forbidden", "your role may read the turns of your own teams only: name one with ?team=")
    deps = request.app[DEPS]
    found = await turn_list(deps.pool, now=deps.now(), since=parse_since(request.query.get("since")),
                            session_id=_text(request, "session"), team=team, limit=_limit(request))
    return json_response(found)


async def post_evals(request: web.Request) -> web.Response:
    if not may_record_evals(identity_of(request)):
        raise ApiError(403, "forbidden", "only admins and FinOps may record evaluation scores")
    if request.content_length is not None and request.content_length > MAX_EVAL_BODY_BYTES:
        raise ApiError(413, "too_large", f"at most {MAX_EVAL_BODY_BYTES // 1024} KB of evaluations per request "
                       f"({MAX_EVAL_BATCH} evaluations): split the batch")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):  # a chunked upload has no Content-Length
        size += len(chunk)
        if size > MAX_EVAL_BODY_BYTES:
            raise ApiError(413, "too_large", f"at most {MAX_EVAL_BODY_BYTES // 1024} KB of evaluations per request")
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        batch = _batch_decoder.decode(raw)
    except msgspec.ValidationError as exc:  # before DecodeError: it is one
        raise bad_request(f"invalid evaluations: {exc} (each needs turn_id, a score from 0 to 1 and "
                          f"evaluator; at most {MAX_EVAL_BATCH} per request)") from None
    except msgspec.DecodeError as exc:
        raise bad_request(f"the body is not valid JSON (NaN and Infinity are not JSON numbers): {exc}") from None
    deps = request.app[DEPS]
    try:
        recorded = await record_evaluations(deps.pool, batch.evaluations, now=deps.now())
    except EvalError as exc:
        raise bad_request(str(exc)) from None
    return json_response(recorded)


def operations() -> list[Operation]:
    tags = ("outcomes",)
    return [
        Operation("GET", "/v1/turns", "listTurns",
                  "Turn outcomes, newest first: requests, tools and failures, retries, final message, cost and the "
                  "quality score (external where recorded, else derived)", get_turns, TurnList, tags=tags,
                  errors=(400, 403), params=(
                      Param("session", _TEXT, "only this session's turns"),
                      Param("team", _TEXT, "only this team's turns"),
                      Param("since", {"type": "string", "minLength": 10, "maxLength": 64},
                            "turns with a request at or after this time (ISO 8601 with a timezone, or a day); "
                            "default: 7 days ago"),
                      Param("limit", {"type": "integer", "minimum": 1, "maximum": MAX_TURNS},
                            f"at most this many turns (default {DEFAULT_TURNS})"))),
        Operation("POST", "/v1/evals", "recordEvals",
                  f"Record external evaluation scores of turns (1 to {MAX_EVAL_BATCH}; all or nothing; every turn "
                  "must have usage)", post_evals, EvalsRecorded, body=EvalBatch, tags=tags,
                  errors=(400, 403, 413)),
    ]
