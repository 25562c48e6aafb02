"""Intents: no spend is lost in flight, even to SIGKILL.

Before a metered request is forwarded, the handler spools an *intent*: the usage event the request
would get if the proxy died before it ended, estimated from the request's size (the one
``SessionEstimator`` estimate enforcement reserved with), ``status`` ``incomplete``, ``usage_source``
``estimated`` and ``intent_estimate`` true. It has the same ``event_id`` the request's real event will
have. An intent is one more line in the same spool segment as the events (``intent:<event_id>:<key id>``
as the record's key, the encoded event as its value): one ``write(2)``, no fsync, like every append.

The real event settles the intent (same id). While the proxy runs, the writer never publishes intent
lines: it drops settled ones and carries the still-open ones into the active segment before deleting
the segment it published (:class:`OpenIntents`). When a proxy starts, :func:`recover` reads the
segments a previous process left: an intent whose event is not among them was cut off by the crash,
and its estimated event is appended as an ordinary record (published with the rest). Because the two
share the event id, the ledger (idempotent on ``event_id``) cannot count a request twice even if both
were ever published.
"""

from __future__ import annotations

import msgspec

from spendgate.core.logs import get_logger
from spendgate.proxy.spool import Spool

log = get_logger(__name__)

INTENT_PREFIX = "intent:"


class _Envelope(msgspec.Struct):
    id: str


_envelope = msgspec.json.Decoder(_Envelope)


def intent_key(event_id: str, key_id: str) -> str:
    return f"{INTENT_PREFIX}{event_id}:{key_id}"


def parse_intent_key(key: str | None) -> tuple[str, str] | None:
    """``(event_id, key_id)`` of an intent record's key; None for an event record."""
    if key is None or not key.startswith(INTENT_PREFIX):
        return None
    event_id, _, key_id = key[len(INTENT_PREFIX):].partition(":")
    return event_id, key_id


class OpenIntents:
    """The intents of requests still in flight in this process (event ids)."""

    def __init__(self) -> None:
        self._open: set[str] = set()

    def add(self, event_id: str) -> None:
        self._open.add(event_id)

    def settle(self, event_id: str) -> None:
        self._open.discard(event_id)

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._open

    def __len__(self) -> int:
        return len(self._open)


def recover(spool: Spool) -> int:
    """Turn the intents a previous process left without an event into their estimated events (appended
    to the spool, so the writer publishes them); returns how many. Call once, after the spool is open
    and before requests are served."""
    intents: dict[str, tuple[str, bytes]] = {}
    settled: set[str] = set()
    for segment in spool.segments():
        for record in Spool.read(segment):
            parsed = parse_intent_key(record.key)
            if parsed is not None:
                intents[parsed[0]] = (parsed[1], record.value)
                continue
            try:
                settled.add(_envelope.decode(record.value).id)
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue  # the writer dead-letters or skips it; it settles nothing
    cut_off = [(key_id, value) for event_id, (key_id, value) in intents.items() if event_id not in settled]
    for key_id, value in cut_off:
        spool.append(key_id or None, value)
    if cut_off:
        log.warning("requests cut off by a crash recorded from their intents (estimated usage)",
                    requests=len(cut_off))
    return len(cut_off)
