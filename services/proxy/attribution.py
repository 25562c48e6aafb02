"""Who and what a request is for: session, turn, repo and client, from Codex's headers and body.

Session: ``session-id`` or ``session_id`` header (Codex), else the body's ``prompt_cache_key``, else an
``x-spendgate-session`` header (other clients). Turn and repo come from ``x-codex-turn-metadata``
(``turn_id``; the first key of ``workspaces``); client is the ``originator`` header. All of them are
client-controlled: each loses its control characters and is capped (:mod:`spendgate.proxy.normalise`);
a metadata header that is not JSON, or nests past msgspec's recursion limit, is ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from spendgate.proxy.normalise import MAX_ID_CHARS, MAX_REPO_CHARS, clean


class _TurnMetadata(msgspec.Struct):
    session_id: str | None = None
    turn_id: str | None = None
    workspaces: dict[str, Any] | None = None


_metadata_decoder = msgspec.json.Decoder(_TurnMetadata)


@dataclass(frozen=True, slots=True)
class Attribution:
    session_id: str | None
    turn_id: str | None
    repo: str | None
    client: str | None


def _clip(value: str | None) -> str | None:
    return clean(value, MAX_ID_CHARS)


def attribute(headers: Mapping[str, str], prompt_cache_key: str | None) -> Attribution:
    meta = _TurnMetadata()
    raw_meta = headers.get("x-codex-turn-metadata")
    if raw_meta:
        try:
            meta = _metadata_decoder.decode(raw_meta)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            meta = _TurnMetadata()
    session = (
        headers.get("session-id")
        or headers.get("session_id")
        or meta.session_id
        or prompt_cache_key
        or headers.get("x-spendgate-session")
    )
    repo = next(iter(meta.workspaces), None) if meta.workspaces else None
    return Attribution(
        session_id=_clip(session),
        turn_id=_clip(meta.turn_id or headers.get("x-spendgate-turn")),
        repo=clean(repo, MAX_REPO_CHARS),
        client=_clip(headers.get("originator") or headers.get("x-spendgate-client")),
    )
