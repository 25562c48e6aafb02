"""The guard: after a policy version goes live, compare each affected segment's quality with its
pre-deploy baseline and roll the version back when one got worse past the tolerance with confidence.

:func:`check` judges the active version (``spendgate policy guard``); with ``act=True`` (the guard worker,
``policy guard --act``) a ``regressed`` segment rolls the version back to its parent as a new signed
version (approver ``spendgate-guard``, the reason carrying the math) and records a ``PolicyRolledBack``
event in the ``policy_rollbacks`` outbox, which :func:`serve`'s loop publishes for the alerter. The
judgement itself is :mod:`spendgate.domain.guard`; the statistics :mod:`spendgate.domain.learning`.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from functools import partial

import asyncpg
import msgspec

from spendgate.admin.policy_versions import rollback
from spendgate.admin.ration import auto_ration
from spendgate.core.bus import Bus
from spendgate.core.config import Settings
from spendgate.core.logs import get_logger
from spendgate.core.supervisor import Beat, wait_or_stop
from spendgate.domain.enforcement.scopes import split_scope
from spendgate.domain.errors import ConfigError, StoreError
from spendgate.domain.events import PolicyRolledBack, new_id
from spendgate.domain.guard import (
    GUARD_APPROVER,
    Judged,
    Kind,
    Segment,
    Verdict,
    affected,
    judge,
    rollback_reason,
)
from spendgate.domain.outcomes import ExternalScore, TurnFacts, quality
from spendgate.domain.policy_versions import PolicyVersion
from spendgate.domain.pricing import PriceTable
from spendgate.runtime import Runtime
from spendgate.store.access import store as access
from spendgate.store.outcomes import store as outcomes
from spendgate.store.policies import store

log = get_logger(__name__)
MAX_TURNS = 50_000
"""Turns read per side (the newest): the bootstrap thins larger samples anyway."""

Clock = Callable[[], datetime]


class SegmentCheck(msgspec.Struct, frozen=True, kw_only=True):
    """One affected segment (a part of the policy the version added, changed or removed) and its verdict."""

    rule: str
    """A routing rule's name; for the other kinds, the part that changed (``budget team:platform``)."""
    scope: str
    change: str
    """``added``, ``changed`` or ``removed`` against the parent version."""
    kind: Kind = "routing_rule"
    """``routing_rule``, ``downgrade_limit``, ``stage_thresholds``, ``budget``, ``retry_cap`` or ``exploration``."""
    summary: str = ""
    """What changed, in a sentence (``budget team:platform monthly $2,000 → $1,500``)."""
    baseline_n: int
    candidate_n: int
    baseline_mean: float | None
    candidate_mean: float | None
    regression: float | None
    """Relative drop of the mean score (0.05 = 5 % worse); null with too few turns."""
    lower: float | None
    upper: float | None
    verdict: Verdict
    """``regressed`` (lower bound past the tolerance), ``harmless`` (upper bound within it), ``unsure``,
    ``too_few`` (``needed`` more turns)."""
    needed: int


class GuardCheck(msgspec.Struct, frozen=True, kw_only=True):
    version_id: str | None
    approver: str | None
    activated_at: datetime | None
    checked_at: datetime
    tolerance_pct: float
    min_turns: int
    note: str
    """Why nothing was judged (no version, too old, nothing changed), or empty."""
    segments: list[SegmentCheck]
    rolled_back_to: str | None = None
    """With ``act``: the version restored, when the guard rolled back."""
    rollback_version: str | None = None


def _out(j: Judged) -> SegmentCheck:
    e = j.estimate
    return SegmentCheck(
        rule=j.segment.name, scope=j.segment.scope, change=j.segment.change, kind=j.segment.kind,
        summary=j.segment.summary, baseline_n=j.baseline_n,
        candidate_n=j.candidate_n, baseline_mean=e.baseline_mean if e else None,
        candidate_mean=e.candidate_mean if e else None, regression=e.regression if e else None,
        lower=e.lower if e else None, upper=e.upper if e else None, verdict=j.verdict, needed=j.needed)


class _ByScope:
    """Turns indexed by who made them, so each segment reads only its scope's turns (a version may change
    hundreds of budgets)."""

    def __init__(self, turns: Sequence[tuple[TurnFacts, ExternalScore | None]]) -> None:
        self.all = turns
        self.by: defaultdict[tuple[str, str | None], list[tuple[TurnFacts, ExternalScore | None]]] = \
            defaultdict(list)
        for t in turns:
            f = t[0]
            for key in (("team", f.team), ("developer", f.developer), ("key", f.key_id),
                        ("cost_center", f.cost_center)):
                self.by[key].append(t)

    def turns(self, segment: Segment) -> Sequence[tuple[TurnFacts, ExternalScore | None]]:
        if segment.teams is not None:
            return [t for team in sorted(segment.teams) for t in self.by.get(("team", team), ())]
        kind, _, name = split_scope(segment.scope)[0].partition(":")
        return self.all if kind == "org" else self.by.get((kind, name), [])


def _score(pair: tuple[TurnFacts, ExternalScore | None]) -> float:
    return quality(*pair)[0]


async def judge_version(pool: asyncpg.Pool, settings: Settings, version: PolicyVersion, *,
                        now: datetime) -> list[Judged]:
    """Every affected segment of ``version`` judged on the turns before and since it went live."""
    cfg = settings.guard
    parent = await store.get_version(pool, version.parent) if version.parent else None
    segments = affected(version.document, parent.document if parent else None)
    if not segments:
        return []
    since = await outcomes.turns_started(pool, start=version.created_at, end=now, limit=MAX_TURNS)
    before = await outcomes.turns_started(pool, start=version.created_at - timedelta(days=cfg.baseline_days),
                                          end=version.created_at, limit=MAX_TURNS)
    since_of, before_of = _ByScope(since), _ByScope(before)
    vid = version.version_id
    judged = []
    for segment in segments:
        candidate = [t for t in since_of.turns(segment) if segment.candidate(t[0], vid)]
        models = segment.requested_models(t[0] for t in candidate)
        hours = {segment.hour(t[0]) for t in candidate}
        source = before_of if segment.baseline_before else since_of
        baseline = [t for t in source.turns(segment) if segment.baseline(t[0], vid, models)
                    and segment.hour(t[0]) in hours]
        judged.append(judge(segment, [_score(t) for t in baseline], [_score(t) for t in candidate],
                            tolerance=cfg.tolerance_pct / 100, min_turns=cfg.min_turns))
    return judged


async def check(pool: asyncpg.Pool, settings: Settings, prices: PriceTable, *, now: datetime,
                act: bool = False) -> GuardCheck:
    """Judge the active version; with ``act``, roll it back when a segment regressed (the worst one, by its
    lower bound, is named in the reason and the event)."""
    cfg = settings.guard
    active = await store.active_version(pool)
    base = GuardCheck(version_id=active.version_id if active else None, approver=active.approver if active else None,
                      activated_at=active.created_at if active else None, checked_at=now,
                      tolerance_pct=cfg.tolerance_pct, min_turns=cfg.min_turns, note="", segments=[])
    if active is None:
        return msgspec.structs.replace(base, note="no policy versions yet: nothing to guard")
    if active.approver == GUARD_APPROVER:
        return msgspec.structs.replace(base, note="the active version is the guard's own rollback: not judged "
                                                  "(rolling it back would restore the harmful version)")
    if now - active.created_at > timedelta(days=cfg.watch_days):
        return msgspec.structs.replace(base, note=f"the active version is older than guard.watch_days "
                                                  f"({cfg.watch_days}): no longer watched")
    judged = await judge_version(pool, settings, active, now=now)
    out = msgspec.structs.replace(base, segments=[_out(j) for j in judged],
                                  note="" if judged else "the version changes no routing rule, downgrade size limit, "
                                                         "budget, stage threshold, retry cap or exploration")
    bad = [j for j in judged if j.verdict == "regressed"]
    if not (act and bad):
        return out
    worst = max(bad, key=lambda j: j.estimate.lower if j.estimate else 0.0)
    restored = await _roll_back(pool, settings, prices, active, worst, now=now)
    if restored is None:
        return out
    return msgspec.structs.replace(out, rolled_back_to=restored[0], rollback_version=restored[1])


async def _roll_back(pool: asyncpg.Pool, settings: Settings, prices: PriceTable, version: PolicyVersion,
                     worst: Judged, *, now: datetime) -> tuple[str, str] | None:
    """Restore ``version``'s parent and keep the event; None when it cannot be (logged)."""
    cfg = settings.guard
    if version.parent is None or await store.rolled_back(pool, version.version_id):
        log.error("guard: a version regressed but cannot be rolled back", version=version.version_id,
                  segment=worst.segment.name,
                  why="it is the first version" if version.parent is None else "it was rolled back before")
        return None
    reason = rollback_reason(version.version_id, worst, cfg.tolerance_pct)
    try:
        done = await rollback(pool, settings, prices, now=now, approver=GUARD_APPROVER, reason=reason,
                              expected_active=version.version_id)
    except (ConfigError, StoreError) as exc:  # another change landed meanwhile, or the parent does not verify
        log.error("guard: rollback refused", version=version.version_id, reason=exc.message)
        return None
    e = worst.estimate
    assert e is not None
    await store.record_rollback(pool, PolicyRolledBack(
        rollback_id=new_id(), version_id=version.version_id, approver=version.approver,
        restored_version=version.parent, rollback_version=done.version_id, segment=worst.segment.name,
        scope=worst.segment.scope, kind=worst.segment.kind, summary=worst.segment.summary, baseline_n=e.baseline_n,
        candidate_n=e.candidate_n,
        baseline_mean=e.baseline_mean, candidate_mean=e.candidate_mean, regression=e.regression, lower=e.lower,
        upper=e.upper, tolerance_pct=cfg.tolerance_pct, reason=reason, detected_at=now))
    await access.record(pool, actor=GUARD_APPROVER, action="policy.rollback", target="policy",
                        detail={"version": done.version_id, "rolled_back": version.version_id,
                                "restored": version.parent, "rule": worst.segment.name,
                                "kind": worst.segment.kind})
    log.warning("guard rolled a policy version back", version=version.version_id, restored=version.parent,
                segment=worst.segment.name, kind=worst.segment.kind, regression=round(e.regression, 4),
                lower=round(e.lower, 4))
    return version.parent, done.version_id


def utc_now() -> datetime:
    return datetime.now(UTC)


async def run_once(pool: asyncpg.Pool, bus: Bus, settings: Settings, prices: PriceTable, *, now: datetime,
                   rationed: set[tuple[str, date]] | None = None) -> GuardCheck | None:
    """One pass of the worker: publish pending rollback events, guard (if enabled), ration (if
    ``auto_ration``; ``rationed``: the forecasts already weighed), publish again."""
    await store.publish_rollbacks(pool, bus)
    result = None
    if settings.guard.enabled:
        result = await check(pool, settings, prices, now=now, act=True)
        await store.publish_rollbacks(pool, bus)
    if settings.guard.auto_ration and (result is None or result.rolled_back_to is None):
        await auto_ration(pool, settings, prices, now=now, tried=rationed)
    return result


async def _loop(runtime: Runtime, clock: Clock, stop: asyncio.Event, beat: Beat) -> None:
    settings = runtime.settings
    prices = settings.pricing.table()
    rationed: set[tuple[str, date]] = set()
    while not stop.is_set():
        await run_once(runtime.pool, runtime.bus, settings, prices, now=clock(), rationed=rationed)
        beat()
        await wait_or_stop(settings.guard.interval_s, stop)


async def serve(runtime: Runtime, stop: asyncio.Event, *, clock: Clock = utc_now) -> None:
    """What ``spendgate up`` runs: the guard (and rationing) every ``guard.interval_s`` until ``stop``."""
    cfg = runtime.settings.guard
    if not cfg.enabled and not cfg.auto_ration:
        log.info("policy guard off (guard.enabled: false) and no auto_ration")
        await stop.wait()
        return
    log.info("policy guard started", interval_s=cfg.interval_s, tolerance_pct=cfg.tolerance_pct,
             min_turns=cfg.min_turns, auto_ration=cfg.auto_ration)
    await runtime.supervisor.run("policy.guard", partial(_loop, runtime, clock), stop)
