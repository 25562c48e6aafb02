"""The route table: every OpenAI route spendgate forwards, and how it is metered. Deny by default.

A request is resolved from its raw path (as sent, before any decoding or dot-segment folding) in three
steps: :func:`check_path` rejects anything that could walk out of ``/v1`` (``..`` and ``.`` segments,
raw or percent-encoded once or several times, backslashes, encoded slashes, control characters) with a
400; the method and path are then looked up (a dict for fixed paths, a few precompiled patterns for
paths with an id); what matches names the upstream path, built from the table's template and the
validated ids only, never from the client's string. Anything else is a 404, unless the operator lists
the path in ``proxy_allowed_paths`` (forwarded as a free pass-through, still evented).

The Anthropic Messages routes (``/messages``, ``/messages/count_tokens``) go to the Anthropic upstream
(:mod:`spendgate.proxy.anthropic`); every other route to the OpenAI one.

Metering kinds: ``tokens`` (the body names a priced model; usage from the answer), ``image`` (per image
at the model's per-image price), ``audio`` (per second of audio at the model's per-second price),
``batch`` (its input file's requests, estimated, at the batch price: :mod:`spendgate.proxy.batches`), ``free``
(spends nothing; a $0 usage event). Body kinds say how the body is read, whatever its declared content
type: ``json`` (a JSON object), ``multipart`` (form fields), ``none`` (ignored).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote

Metering = Literal["tokens", "image", "audio", "batch", "free"]
BodyKind = Literal["json", "multipart", "none"]
Api = Literal["openai", "anthropic"]
"""Which pool a route goes to (the OpenAI-API upstreams, or the ``kind: anthropic`` ones) and in which shape its
errors are answered."""

ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_\-.:]{0,254}"
"""An id in a path (``resp_…``, ``file-…``, ``ft:gpt-4o:org::id``): starts with a letter or digit, so it
is never ``.`` or ``..``, and carries no ``%``, ``/`` or ``\\``."""


@dataclass(frozen=True, slots=True)
class RouteSpec:
    method: str
    template: str
    """The path under ``/v1``, ids as ``{id}``: ``/responses/{id}``."""
    metering: Metering
    body: BodyKind
    api: Api = "openai"

    @property
    def endpoint(self) -> str:
        """What the usage event names: the template (ids never become event dimensions)."""
        return "/v1" + self.template

    @property
    def spends(self) -> bool:
        return self.metering != "free"


def _r(method: str, template: str, metering: Metering, body: BodyKind = "none", api: Api = "openai") -> RouteSpec:
    return RouteSpec(method, template, metering, body, api)


ROUTES: tuple[RouteSpec, ...] = (
    _r("POST", "/responses", "tokens", "json"),
    _r("POST", "/responses/compact", "tokens", "json"),
    _r("POST", "/chat/completions", "tokens", "json"),
    _r("POST", "/completions", "tokens", "json"),
    _r("POST", "/embeddings", "tokens", "json"),
    _r("POST", "/threads/runs", "tokens", "json"),
    _r("POST", "/threads/{id}/runs", "tokens", "json"),
    _r("POST", "/images/generations", "image", "json"),
    _r("POST", "/images/edits", "image", "multipart"),
    _r("POST", "/images/variations", "image", "multipart"),
    _r("POST", "/audio/transcriptions", "audio", "multipart"),
    _r("POST", "/audio/translations", "audio", "multipart"),
    _r("POST", "/batches", "batch", "json"),
    _r("GET", "/batches", "free"),
    _r("GET", "/batches/{id}", "free"),
    _r("POST", "/batches/{id}/cancel", "free"),
    _r("GET", "/responses/{id}", "free"),
    _r("DELETE", "/responses/{id}", "free"),
    _r("POST", "/responses/{id}/cancel", "free"),
    _r("GET", "/responses/{id}/input_items", "free"),
    _r("GET", "/models", "free"),
    _r("GET", "/models/{id}", "free"),
    _r("POST", "/files", "free", "multipart"),
    _r("GET", "/files", "free"),
    _r("GET", "/files/{id}", "free"),
    _r("DELETE", "/files/{id}", "free"),
    _r("GET", "/files/{id}/content", "free"),
    _r("POST", "/messages", "tokens", "json", "anthropic"),
    _r("POST", "/messages/count_tokens", "free", "json", "anthropic"),
)


@dataclass(frozen=True, slots=True)
class Resolved:
    spec: RouteSpec
    upstream_path: str
    """The path to append to the upstream base (``/responses/resp_1``): from the table, ids validated."""
    query: str


class RouteError(Exception):
    """The request's path is refused: ``status`` 400 (escape attempt, malformed) or 404 (not a route)."""

    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


_BAD_CHARS = re.compile(r"[\x00-\x20\x7f\\]")
_DOT_SEGMENT = re.compile(r"(?:^|/)\.{1,2}(?:/|$)")
_MAX_DECODES = 4


def check_path(path: str) -> None:
    """Nothing if ``path`` (raw, without its query) cannot escape its prefix; :class:`RouteError` (400) if
    it could, however it is encoded (percent-decoded until stable, so ``%252e%252e`` is caught too)."""
    if ("%" not in path and "/." not in path and "//" not in path and "\\" not in path and " " not in path
            and path.isascii() and path.isprintable()):
        return  # the common case, in a few C-level scans: nothing to decode, no dot segment
    decoded = path
    for _ in range(_MAX_DECODES):
        if _BAD_CHARS.search(decoded) or _DOT_SEGMENT.search(decoded) or "//" in decoded:
            raise RouteError(400, "The request path is not allowed: it contains dot segments, backslashes, "
                                  "empty segments or control characters.", "invalid_path")
        if "%" not in decoded:
            return
        try:
            step = unquote(decoded, errors="strict")
        except UnicodeDecodeError:
            raise RouteError(400, "The request path is not allowed: it is not UTF-8.", "invalid_path") from None
        if step == decoded:
            break
        decoded = step
    if "%" in decoded:
        raise RouteError(400, "The request path is not allowed: it is encoded too many times.", "invalid_path")


class RouteTable:
    """Method and raw path to :class:`Resolved`; built once, looked up per request."""

    def __init__(self, routes: Iterable[RouteSpec] = ROUTES, *, allowed_paths: Iterable[str] = ()) -> None:
        self._fixed: dict[tuple[str, str], Resolved] = {}
        self._patterns: dict[str, list[tuple[re.Pattern[str], RouteSpec]]] = {}
        for spec in routes:
            if "{" in spec.template:
                regex = re.escape(spec.template).replace(r"\{id\}", f"({ID_PATTERN})")
                self._patterns.setdefault(spec.method, []).append((re.compile(regex + r"\Z"), spec))
            else:
                self._fixed[(spec.method, spec.template)] = Resolved(spec, spec.template, "")
        self._allowed = [re.compile(p + r"\Z") for p in allowed_paths]

    def resolve(self, method: str, raw_path: str) -> Resolved:
        path, _, query = raw_path.partition("?")
        check_path(path)
        if not path.startswith("/v1/"):
            raise RouteError(404, "spendgate serves OpenAI and Anthropic routes under /v1/ only.", "not_found")
        tail = path[3:]
        fixed = self._fixed.get((method, tail))
        if fixed is not None:
            return fixed if not query else Resolved(fixed.spec, tail, query)
        for pattern, candidate in self._patterns.get(method, ()):
            if pattern.match(tail):
                return Resolved(candidate, tail, query)
        if "%" not in tail:
            for allowed in self._allowed:
                if allowed.match(tail):
                    return Resolved(RouteSpec(method, tail, "free", "none"), tail, query)
        raise RouteError(404, f"spendgate does not forward {method} to this path: it is not in its route "
                              "table.", "unknown_route")
