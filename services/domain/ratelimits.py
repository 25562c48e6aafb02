"""Requests- and tokens-per-minute limits per scope: the rule, pure (no I/O, the clock passed in).

A limit names a scope (``key:<id>``, ``developer:<name>`` or ``team:<name>``) and a requests-per-minute
(``rpm``) and/or tokens-per-minute (``tpm``) figure. Usage is counted in windows aligned on the wall-clock
minute, and a scope's use at time ``t`` is the *sliding-window estimate*

    used(t) = previous_minute × (1 − f) + this_minute,        f = the fraction of this minute elapsed

so a burst at a minute's end is not forgiven at the next minute's start (a fixed window lets through
twice the limit around the boundary).

Several proxies share a limit (:class:`Windows` holds this proxy's own counts and its peers' as last
synced). To keep the proxies together within a bound that does not depend on the traffic, while other
proxies are live each one admits, between two syncs, at most its *share* of what was left at the last
sync, ``ceil(remaining / live proxies)``: see docs/rate-limits.md for the bound this gives.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Literal

from spendgate.domain.errors import ConfigError

WINDOW_S = 60
Kind = Literal["requests", "tokens"]
KINDS: tuple[Kind, ...] = ("requests", "tokens")
LIMIT_KINDS = ("key", "developer", "team")
MAX_RPM = 1_000_000
"""Above any provider's per-key figure; a larger value is a typo, refused with its reason."""
MAX_TPM = 1_000_000_000
PRESENCE = "*"
"""The scope of the row a proxy publishes once a minute to say it is live (it shares every limit)."""
MAX_RETRY_AFTER_S = 60
"""Retry-After is capped at the window: Claude Code gives up at once on a longer one; a client retrying
after it sees a fresh (smaller) figure if the window has not freed enough yet."""
_NAME = re.compile(r"^[^\x00-\x1f\x7f\s](?:[^\x00-\x1f\x7f]{0,198}[^\x00-\x1f\x7f\s])?$")


@dataclass(frozen=True, slots=True)
class RateLimit:
    """One scope's limits; ``None`` means no limit of that kind."""

    scope: str
    rpm: int | None = None
    tpm: int | None = None

    def of(self, kind: Kind) -> int | None:
        return self.rpm if kind == "requests" else self.tpm


def rate_limit_of(scope: str, *, rpm: int | None, tpm: int | None) -> RateLimit:
    """A validated limit; :class:`ConfigError` names what is wrong (scope form, range, neither given)."""
    text = scope.strip()
    kind, sep, name = text.partition(":")
    if not sep or kind not in LIMIT_KINDS or not _NAME.match(name.strip()):
        raise ConfigError(f"bad rate-limit scope {scope[:210]!r}: use key:<id>, developer:<name> or team:<name>")
    if rpm is None and tpm is None:
        raise ConfigError("give a requests-per-minute (rpm) or tokens-per-minute (tpm) limit, or both")
    for what, value, top in (("rpm", rpm, MAX_RPM), ("tpm", tpm, MAX_TPM)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{what} must be a whole number, not {value!r}")
        if not 1 <= value <= top:
            raise ConfigError(f"{what} must be between 1 and {top:,}, not {value:,}")
    return RateLimit(f"{kind}:{name.strip()}", rpm, tpm)


def minute_of(now_s: float) -> int:
    return int(now_s // WINDOW_S)


@dataclass(slots=True)
class Counts:
    """Requests and tokens counted in one minute."""

    requests: int = 0
    tokens: int = 0

    def get(self, kind: Kind) -> int:
        return self.requests if kind == "requests" else self.tokens


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request is refused: the scope and kind of the limit it hit, and what the headers say."""

    limit: RateLimit
    kind: Kind
    limit_value: int
    remaining: int
    retry_after_s: int
    """Seconds until the window has room for the request (at least 1, at most :data:`MAX_RETRY_AFTER_S`)."""
    reset_s: dict[Kind, int] = field(default_factory=dict)
    """Per limited kind, seconds until that window would be empty again (the x-ratelimit-reset-* header)."""
    remaining_of: dict[Kind, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Verdict:
    """``admitted``; or refused (``refusal``); or ``wait``: the window has room, but this proxy has used
    its share since the last sync: wait for the next one and ask again."""

    admitted: bool
    refusal: Refusal | None = None
    wait: bool = False


ADMIT = Verdict(True)
WAIT = Verdict(False, wait=True)


@dataclass(slots=True)
class _Scope:
    own: dict[int, Counts] = field(default_factory=dict)
    peers: dict[int, Counts] = field(default_factory=dict)
    share: dict[Kind, float] = field(default_factory=lambda: {"requests": math.inf, "tokens": math.inf})
    since_sync: Counts = field(default_factory=Counts)
    """Admitted since the counts last handed to the peers: what the share caps."""
    handed: Counts = field(default_factory=Counts)
    """``since_sync`` when the counts were last taken for publication (:meth:`Windows.take_changed`)."""


class Windows:
    """The limits in force and the counts behind them, for one proxy; every method is memory only."""

    def __init__(self, limits: Iterable[RateLimit] = ()) -> None:
        self.limits: dict[str, RateLimit] = {}
        self._scopes: dict[str, _Scope] = {}
        self.changed: set[str] = set()
        """Scopes whose own counts changed since :meth:`take_changed`."""
        self.live_peers = 0
        """Other proxies live at the last sync (they share the limits with this one)."""
        self.set_limits(limits)

    def set_limits(self, limits: Iterable[RateLimit]) -> None:
        self.limits = {lim.scope: lim for lim in limits}
        for scope in [s for s in self._scopes if s not in self.limits]:
            del self._scopes[scope]

    def _scope(self, scope: str) -> _Scope:
        found = self._scopes.get(scope)
        if found is None:
            found = self._scopes[scope] = _Scope()
        return found

    # -- the request path -------------------------------------------------------------------------

    def admit(self, scopes: Iterable[str], tokens: int, now_s: float, *, ignore_share: bool = False,
              may_wait: bool = True) -> Verdict:
        """Count a request of ``tokens`` (input estimate) against every limited scope, or refuse it.

        A request is refused when, on a limited scope, the sliding-window use plus the request exceeds
        the limit (tokens: a request larger than the whole limit passes only when the window is empty,
        else it could never pass). Nothing is counted unless every scope admits it. ``ignore_share``: decide
        on the window alone (the peers could not be synced in time). Without ``may_wait`` a used-up share
        is a refusal (Retry-After 1 s) instead of :data:`WAIT`."""
        limited = [(s, lim) for s in scopes if (lim := self.limits.get(s)) is not None]
        if not limited:
            return ADMIT
        minute = minute_of(now_s)
        frac = (now_s - minute * WINDOW_S) / WINDOW_S
        tokens = max(tokens, 0)
        wait = False
        states: list[_Scope] = []
        for scope, lim in limited:
            state = self._scope(scope)
            states.append(state)
            checks: tuple[tuple[Kind, int | None, int], ...] = (("requests", lim.rpm, 1), ("tokens", lim.tpm, tokens))
            for kind, value, cost in checks:
                if value is None:
                    continue
                used = self._used(state, kind, minute, frac)
                if used + cost > value and not (kind == "tokens" and used < 1):
                    return Verdict(False, self._refusal(lim, kind, state, minute, frac, cost))
                if not ignore_share and state.since_sync.get(kind) >= state.share[kind]:
                    if not may_wait:
                        busy = self._refusal(lim, kind, state, minute, frac, cost)
                        return Verdict(False, replace(busy, retry_after_s=1))
                    wait = True
        if wait:
            return WAIT
        for (scope, _), state in zip(limited, states, strict=True):
            self._count(scope, state, minute, 1, tokens)
        return ADMIT

    def add(self, scope: str, requests: int, tokens: int, now_s: float) -> None:
        """Count (or, negative, uncount) use on ``scope`` in the minute of ``now_s``."""
        if scope in self.limits:
            self._count(scope, self._scope(scope), minute_of(now_s), requests, tokens)

    def _count(self, scope: str, state: _Scope, minute: int, requests: int, tokens: int) -> None:
        counts = state.own.get(minute)
        if counts is None:
            counts = state.own[minute] = Counts()
            state.own.pop(minute - 2, None)
        counts.requests += requests
        counts.tokens += tokens
        if counts.requests < 0 or counts.tokens < 0:
            counts.requests, counts.tokens = max(counts.requests, 0), max(counts.tokens, 0)
        since = state.since_sync
        since.requests += requests
        since.tokens += tokens
        self.changed.add(scope)

    def used(self, scope: str, kind: Kind, now_s: float) -> float:
        """The sliding-window use of ``scope`` (own and peers'), as this proxy knows it now."""
        minute = minute_of(now_s)
        return self._used(self._scope(scope), kind, minute, (now_s - minute * WINDOW_S) / WINDOW_S)

    @staticmethod
    def _used(state: _Scope, kind: Kind, minute: int, frac: float) -> float:
        prev = cur = 0
        requests = kind == "requests"
        for source in (state.own, state.peers):
            if (c := source.get(minute - 1)) is not None:
                prev += c.requests if requests else c.tokens
            if (c := source.get(minute)) is not None:
                cur += c.requests if requests else c.tokens
        return prev * (1.0 - frac) + cur

    def _refusal(self, lim: RateLimit, kind: Kind, state: _Scope, minute: int, frac: float, cost: int) -> Refusal:
        value = lim.of(kind)
        assert value is not None
        reset: dict[Kind, int] = {}
        remaining: dict[Kind, int] = {}
        for k in KINDS:
            v = lim.of(k)
            if v is not None:
                reset[k] = _seconds_until(state, k, minute, frac, v, v)  # until the window is empty
                remaining[k] = max(0, math.floor(v - self._used(state, k, minute, frac)))
        retry = _seconds_until(state, kind, minute, frac, value, min(cost, value))
        return Refusal(lim, kind, value, remaining[kind], max(1, min(retry, MAX_RETRY_AFTER_S)), reset, remaining)

    # -- syncing with the peers ---------------------------------------------------------------------

    def take_changed(self, now_s: float) -> list[tuple[str, int, Counts]]:
        """This proxy's counts of the scopes changed since the last call, for the current and previous
        minute (scope, minute, counts), to publish to the peers."""
        changed, self.changed = self.changed, set()
        for each in self._scopes.values():
            each.handed = Counts(each.since_sync.requests, each.since_sync.tokens)
        minute = minute_of(now_s)
        out: list[tuple[str, int, Counts]] = []
        for scope in sorted(changed):
            state = self._scopes.get(scope)
            if state is None:
                continue
            for m in (minute - 1, minute):
                counts = state.own.get(m)
                if counts is not None:
                    out.append((scope, m, Counts(counts.requests, counts.tokens)))
        return out

    def synced(self, peers: Iterable[tuple[str, str, int, int, int]], now_s: float) -> None:
        """Take the peers' counts (instance, scope, minute, requests, tokens) just read, and start a new
        share period: per scope and kind, ``ceil(remaining / (1 + live peers))``; no share cap while no
        other proxy is live (none published a row, a :data:`PRESENCE` row included, in the last two
        minutes)."""
        minute = minute_of(now_s)
        frac = (now_s - minute * WINDOW_S) / WINDOW_S
        totals: dict[str, dict[int, Counts]] = {}
        live: set[str] = set()
        for instance, scope, m, requests, tokens in peers:
            if m < minute - 1:
                continue
            live.add(instance)
            if scope not in self.limits:
                continue
            counts = totals.setdefault(scope, {}).setdefault(m, Counts())
            counts.requests += requests
            counts.tokens += tokens
        self.live_peers = len(live)
        for scope, lim in self.limits.items():
            state = self._scope(scope)
            state.peers = totals.get(scope, {})
            # What was admitted while the sync ran is not in the published counts: it stays on the new share.
            state.since_sync = Counts(max(0, state.since_sync.requests - state.handed.requests),
                                      max(0, state.since_sync.tokens - state.handed.tokens))
            state.handed = Counts()
            for kind in KINDS:
                value = lim.of(kind)
                if value is None or not live:
                    state.share[kind] = math.inf
                    continue
                left = max(0.0, value - self._used(state, kind, minute, frac))
                state.share[kind] = math.ceil(left / (1 + len(live)))


def _seconds_until(state: _Scope, kind: Kind, minute: int, frac: float, limit: int, cost: int) -> int:
    """Seconds from now until the sliding-window use leaves room for ``cost`` (no new admissions)."""
    def total(m: int) -> int:
        own, peers = state.own.get(m), state.peers.get(m)
        return (own.get(kind) if own else 0) + (peers.get(kind) if peers else 0)

    prev, cur = total(minute - 1), total(minute)
    room = limit - cost
    left_in_minute = (1.0 - frac) * WINDOW_S
    if cur <= room:
        # Within this minute the previous minute's weight decays: prev × (1 − f) + cur ≤ room.
        if prev == 0:
            return 0
        need = max(0.0, 1.0 - (room - cur) / prev)  # the fraction of this minute that must have elapsed
        return math.ceil(max(0.0, need - frac) * WINDOW_S)
    # Next minute this minute's count becomes the decaying one: cur × (1 − f') ≤ room.
    need_next = max(0.0, 1.0 - room / cur) if cur else 0.0
    return math.ceil(left_in_minute + need_next * WINDOW_S)
