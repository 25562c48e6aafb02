"""The admin API's operations, declared once: the app routes them and the OpenAPI 3.1 document is
generated from the same declarations and the same msgspec types the handlers encode, so the document
cannot describe a route, parameter or body the app does not have (a test checks both directions).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

VERSION = "0.1.0"


class ErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    type: str
    """A stable machine name: unauthorized, bad_request, not_found, conflict, internal."""
    message: str


class Error(msgspec.Struct, frozen=True, kw_only=True):
    error: ErrorBody


@dataclass(frozen=True)
class Param:
    name: str
    schema: dict[str, Any]
    description: str
    where: str = "query"
    required: bool = False


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    operation_id: str
    summary: str
    handler: Handler
    response: Any
    status: int = 200
    params: Sequence[Param] = ()
    body: Any = None
    errors: Sequence[int] = (400,)
    tags: Sequence[str] = field(default_factory=tuple)


_ERROR_TEXT = {400: "invalid request", 401: "missing, wrong, expired or revoked credential",
               403: "the caller's role may not do this", 404: "not found",
               409: "conflicts with the current state", 500: "internal error"}


def document(operations: Sequence[Operation]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``operations``; component schemas come from the msgspec types."""
    types = [Error, *(o.response for o in operations), *(o.body for o in operations if o.body is not None)]
    refs, components = msgspec.json.schema_components(types, ref_template="#/components/schemas/{name}")
    ref_of = dict(zip(types, refs, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        responses: dict[str, Any] = {
            str(op.status): {"description": "success", "content": {"application/json": {"schema": ref_of[op.response]}}}
        }
        for status in sorted({*op.errors, 401, 403}):
            responses[str(status)] = {"description": _ERROR_TEXT[status],
                                      "content": {"application/json": {"schema": ref_of[Error]}}}
        spec: dict[str, Any] = {
            "operationId": op.operation_id, "summary": op.summary, "tags": list(op.tags),
            "parameters": [
                {"name": p.name, "in": p.where, "required": p.required or p.where == "path",
                 "description": p.description, "schema": p.schema}
                for p in op.params
            ],
            "responses": responses,
            "security": [{"adminToken": []}],
        }
        if op.body is not None:
            spec["requestBody"] = {"required": True,
                                   "content": {"application/json": {"schema": ref_of[op.body]}}}
        paths.setdefault(op.path, {})[op.method.lower()] = spec
    return {
        "openapi": "3.1.0",
        "info": {"title": "spendgate admin API", "version": VERSION,
                 "description": "Keys, teams, budgets, chargeback and cache reports, sessions, forecasts "
                                "and policy dry-runs. Every call needs a bearer credential: a named API token "
                                "(its role decides what it may do) or the break-glass admin token."},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"adminToken": {"type": "http", "scheme": "bearer",
                                               "description": "a named API token (sg-at-…, spendgate tokens create) or "
                                                               "SPENDGATE_ADMIN_TOKEN (never a virtual key)"}},
        },
        "security": [{"adminToken": []}],
    }
