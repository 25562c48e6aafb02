"""``spendgate policy suggest`` and ``GET /v1/policy/suggestions``: policy changes the org's own traffic
says are safe, each with its math, its dry-run and the whole policy document it would make.

Reads the last ``days`` of turns in a grouped read (:func:`spendgate.store.outcomes.store.segment_turns`),
scores them, groups them into segments (:mod:`spendgate.domain.segments`), searches routing rules per team
(:mod:`spendgate.domain.optimiser`) and the other knobs (:mod:`spendgate.admin.suggest_knobs`), and checks
every harmless candidate with the dry-run replay of the same days: the live policy and all the candidates over
one read of every team's events (:func:`spendgate.admin.dryrun.checks`), so budgets shared between teams see
all their traffic. A candidate that would pause more sessions than today, anywhere in the org, is not
proposed. ``docs/policy.md``, "Suggestions".
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Literal

import asyncpg
import msgspec
import yaml

from spendgate.admin import suggest_knobs as knobs
from spendgate.admin.dryrun import checks
from spendgate.admin.overlay import Change, Totals
from spendgate.admin.policy import live_policy, to_document
from spendgate.admin.ration import RationProposal, proposals
from spendgate.core.config import Settings
from spendgate.domain.enforcement import Policy
from spendgate.domain.enforcement.routing import NAME_PATTERN, RoutingTable, format_hours
from spendgate.domain.errors import ConfigError, UnknownModelError
from spendgate.domain.learning import CONFIDENCE, MIN_SAMPLE, Regression, TooFew
from spendgate.domain.money import format_usd
from spendgate.domain.optimiser import RuleCandidate, TeamVerdict, search
from spendgate.domain.periods import zone
from spendgate.domain.pricing import ModelPrice, PriceTable
from spendgate.domain.segments import BIASED, Estimate, SegmentTurn, estimate, segment_keys, segment_turn
from spendgate.store.outcomes import store

DEFAULT_DAYS = 30
MAX_DAYS = 90
DEFAULT_TOLERANCE_PCT = 2.0
MAX_TOLERANCE_PCT = 50.0
MAX_DRY_RUNS = 8
"""Routing rules checked by the dry-run per run (the largest estimated savings first). The others are listed
as waiting for the next run."""
MAX_SEGMENTS = 200
"""Segments listed (the ones with the most turns)."""
MAX_TEAM_CHARS = 200
MAX_KNOB_CHECKS = 48
"""Candidates of the other knobs checked per run (every step of every scope's knob counts); the rest are
listed as not checked. All checks share one pass over the window's events."""
SuggestionKind = Literal["routing_rule", "downgrade_limit", "stage_threshold", "budget", "retry_cap", "ration"]


class Evidence(msgspec.Struct, frozen=True, kw_only=True):
    """The quality comparison behind a change: learning.regression's numbers and where the sides came from."""

    regression: float | None
    """Relative drop of the mean quality score (0.004 = 0.4 % worse); null with too few turns."""
    lower: float | None
    upper: float | None
    """The 95 % upper bound: with 95 % confidence the regression is at most this."""
    baseline_n: int
    candidate_n: int
    explored_n: int
    downgraded_n: int
    baseline: Literal["control", "requested model"]
    """``control``: the exploration's control arm alone; else every turn that ran on the requested model."""
    biased: str | None
    """``biased: from budget downgrades`` when no turn was explored and budget-downgraded turns stood in."""
    method: str = f"bootstrap, {CONFIDENCE:.0%} one-sided, at least {MIN_SAMPLE} turns a side"


class DryRunCheck(msgspec.Struct, frozen=True, kw_only=True):
    """The live policy and the proposal replayed over the same days (``spendgate policy dry-run``), over every
    team's events: budgets the changed team shares with others (the org's, a cost center's) see all their
    traffic, and pauses are counted in every team (``docs/policy.md``, "How a candidate is checked")."""

    days: int
    team: str
    """The team whose budget or routing the change touches (empty: a change to the whole policy)."""
    events: int
    """Events replayed: every event of the window."""
    saved_micros: int
    """What the live policy's replay spent minus what the proposal's did."""
    extra_pauses: int
    """Sessions the proposal pauses minus the live policy's (a proposal needs 0 or fewer)."""
    live_spend_micros: int
    spend_micros: int
    live_paused_sessions: int
    paused_sessions: int
    differences: int
    """Requests the proposal decides differently from what happened."""


class Suggestion(msgspec.Struct, frozen=True, kw_only=True):
    """One proposed change, ready to apply: ``document`` is the whole policy it makes."""

    id: str
    kind: SuggestionKind
    scope: str
    summary: str
    """The change and its math in one sentence."""
    estimated_saving_micros: int
    """From the segments: the covered turns' requests on the requested model, repriced at the new model."""
    saving_error_micros: int = 0
    """95 % sampling error of ``estimated_saving_micros``: the same number of days under the same traffic saves
    the estimate give or take this (1.96 × √Σ per-turn saving²)."""
    evidence: Evidence | None
    dry_run: DryRunCheck | None
    """Null for ``ration`` (its own dry-run numbers are in ``ration``)."""
    change: dict[str, Any]
    """The part of the document that changes (for a routing rule, the rule)."""
    diff: str
    """Unified diff of the live policy document against ``document`` (YAML)."""
    document: dict[str, Any]
    ration: RationProposal | None = None
    """``ration``: the rationing proposal as ``policy ration`` shows it (P50 after, its dry-run)."""
    extra_downgrades: int = 0
    """Requests the proposal sends to a cheaper model beyond the live policy's (the turns the evidence covers)."""
    retry_refusals: int = 0
    """``retry_cap``: retry requests the proposal refuses beyond the live policy's (not pauses)."""


class NotProposed(msgspec.Struct, frozen=True, kw_only=True):
    """A change the data does not support (yet), and what it would take."""

    scope: str
    kind: SuggestionKind
    model: str
    candidate_model: str
    verdict: Literal["needs_data", "harmful", "uncertain", "no_saving", "more_pauses", "not_checked"]
    """For the other knobs ``model`` / ``candidate_model`` are empty when the change names none."""
    summary: str
    more_turns: int
    """How many more turns (explored ones on the cheaper model, above all) would settle it; 0 when more
    data would not help."""
    estimated_saving_micros: int
    evidence: Evidence | None


class SegmentOut(msgspec.Struct, frozen=True, kw_only=True):
    team: str
    model: str
    candidate_model: str | None
    size: str
    hours: str
    repo: str
    tools: str
    turns: int
    estimated_saving_micros: int
    evidence: Evidence | None


class Suggestions(msgspec.Struct, frozen=True, kw_only=True):
    days: int
    tolerance_pct: float
    from_at: datetime
    to_at: datetime
    turns: int
    elapsed_ms: int
    suggestions: list[Suggestion]
    not_proposed: list[NotProposed]
    segments: list[SegmentOut]


def check_inputs(*, team: str | None, tolerance_pct: float, days: int) -> None:
    """The bounds the CLI and the API share; :class:`ConfigError` saying which input is wrong."""
    if not (0.0 < tolerance_pct <= MAX_TOLERANCE_PCT) or tolerance_pct != tolerance_pct:
        raise ConfigError(f"tolerance must be a percentage above 0 and at most {MAX_TOLERANCE_PCT:g}, "
                          f"not {tolerance_pct:g}")
    if not 1 <= days <= MAX_DAYS:
        raise ConfigError(f"days must be from 1 to {MAX_DAYS}, not {days}")
    if team is not None and (not team or len(team) > MAX_TEAM_CHARS or not team.isprintable()):
        raise ConfigError(f"team must be printable text of 1 to {MAX_TEAM_CHARS} characters")


async def suggest(pool: asyncpg.Pool, settings: Settings, prices: PriceTable, *, now: datetime,
                  days: int = DEFAULT_DAYS, tolerance_pct: float = DEFAULT_TOLERANCE_PCT,
                  team: str | None = None) -> Suggestions:
    check_inputs(team=team, tolerance_pct=tolerance_pct, days=days)
    started = time.perf_counter()
    tolerance = tolerance_pct / 100
    start = now - timedelta(days=days)
    live = await live_policy(pool, settings.enforcement, now)
    rows = await store.segment_turns(pool, start=start, end=now, team=team)
    if team is not None and not rows and f"team:{team}" not in live.budgets:
        raise ConfigError(f"unknown team {team!r}: no turns in the last {days} days and no budget")

    def timezone_of(t: str) -> str:
        budget = live.budgets.get(f"team:{t}")
        return budget.timezone if budget is not None else "UTC"

    zones = {t: zone(timezone_of(t)) for t in {r.facts.team for r in rows}}
    turns = [segment_turn(r, zones.__getitem__) for r in rows]
    groups: dict[tuple[str, str], list[SegmentTurn]] = {}
    for t in turns:
        groups.setdefault((t.team, t.model_requested), []).append(t)

    def cheaper_of(t: str, model: str) -> str | None:
        return live.next_model(model, (f"team:{t}", "org"))

    verdicts = search(groups, cheaper_of, lambda m: _price(prices, m), timezone_of, tolerance)
    proposed = sorted((v for v in verdicts if v.chosen is not None),
                      key=lambda v: -v.chosen.estimate.saving_micros if v.chosen else 0)
    checked, waiting = proposed[:MAX_DRY_RUNS], proposed[MAX_DRY_RUNS:]
    suggestions: list[Suggestion] = []
    not_proposed = [_not_proposed(v, tolerance) for v in verdicts if v.chosen is None]
    live_doc = to_document(live)
    rules = [(v, _with_rule(live, v.chosen)) for v in checked if v.chosen is not None]
    found, rejected = await _knobs(pool, live, turns, cheaper_of, lambda m: _price(prices, m), tolerance,
                                   start=start, now=now, team=team)
    candidates = [(p, Change(scopes=frozenset({v.chosen.rule.scope}), rule=v.chosen.rule))
                  for v, p in rules if v.chosen is not None]
    candidates += [(k.policy, _change_of(live, k)) for k in found]
    base, results = await checks(pool, live, candidates, prices, days=days, now=now) if candidates else (None, [])
    for (v, policy), result in zip(rules, results, strict=False):
        assert v.chosen is not None and base is not None
        check = _check(base, result, days, v.team)
        if check.extra_pauses > 0:
            not_proposed.append(_more_pauses(v, check))
            continue
        suggestions.append(_suggestion(v.chosen, policy, live_doc, check, days))
    not_proposed.extend(_not_checked(v) for v in waiting)
    if base is not None:
        made, unmade = _best_knobs(found, base, results[len(rules):], days, tolerance, live_doc)
        suggestions += made
        rejected += unmade
    not_proposed += rejected
    suggestions += await _rations(pool, settings, prices, now=now, team=team, live_doc=live_doc)
    return Suggestions(days=days, tolerance_pct=tolerance_pct, from_at=start, to_at=now, turns=len(turns),
                       elapsed_ms=int((time.perf_counter() - started) * 1000), suggestions=suggestions,
                       not_proposed=not_proposed, segments=_segments(turns, cheaper_of, prices))


def _price(prices: PriceTable, model: str) -> ModelPrice | None:
    try:
        return prices.lookup(model).price
    except UnknownModelError:
        return None


def _with_rule(live: Policy, c: RuleCandidate) -> Policy:
    """The live policy with ``c``'s rule first (before the live rules: it is the narrower, newer one)."""
    rules = tuple(r for r in live.routing.rules if r.name != c.rule.name)
    return replace(live, routing=RoutingTable((c.rule, *rules)))


def _change_of(live: Policy, k: knobs.Knob) -> Change:
    """Where a knob's policy differs from the live one, for the shared dry-run pass."""
    if k.kind == "downgrade_limit":
        return Change(size_window=(live.downgrade_max_input_tokens, k.policy.downgrade_max_input_tokens))
    return Change(scopes=frozenset({k.scope}), retry_only=k.kind == "retry_cap")


def _check(base: Totals, result: Totals, days: int, team: str) -> DryRunCheck:
    return DryRunCheck(days=days, events=result.events, team=team, saved_micros=base.spend_micros - result.spend_micros,
                       extra_pauses=result.paused_sessions - base.paused_sessions,
                       live_spend_micros=base.spend_micros, spend_micros=result.spend_micros,
                       live_paused_sessions=base.paused_sessions, paused_sessions=result.paused_sessions,
                       differences=result.differences)


def evidence(e: Estimate) -> Evidence:
    r = e.result if isinstance(e.result, Regression) else None
    return Evidence(regression=r.regression if r else None, lower=r.lower if r else None,
                    upper=r.upper if r else None, baseline_n=e.baseline_n, candidate_n=e.candidate_n,
                    explored_n=e.explored_n, downgraded_n=e.downgraded_n,
                    baseline="control" if e.control_only else "requested model", biased=BIASED if e.biased else None)


def pct(x: float) -> str:
    return f"{x * 100:.1f} %"


def _rule_words(c: RuleCandidate) -> str:
    r = c.rule
    when = "all day" if r.hours is None else "between " + format_hours(r.hours).replace("-", " and ")
    return (f"route turns under {r.max_input_tokens:,} input tokens asking for {c.model} to {r.model} "
            f"{when} {r.timezone}")


def _math(e: Estimate) -> str:
    r = e.result
    if isinstance(r, TooFew):
        return (f"too few turns to tell: {e.baseline_n:,} on the requested model, {e.explored_n:,} explored, "
                f"{e.downgraded_n:,} budget-downgraded")
    side = f"{e.explored_n:,} explored" if not e.biased else f"{e.downgraded_n:,} budget-downgraded, {BIASED}"
    return (f"regression {pct(r.regression)} (95 % upper bound {pct(r.upper)}, "
            f"{e.baseline_n + e.candidate_n:,} turns, {side})")


def _suggestion(c: RuleCandidate, policy: Policy, live_doc: dict[str, Any], check: DryRunCheck,
                days: int) -> Suggestion:
    document = to_document(policy)
    e = c.estimate
    summary = (f"for {c.team}: {_rule_words(c)}; {_math(e)}; estimated saving over {days} days of such traffic "
               f"{format_usd(e.saving_micros)} ± {format_usd(e.saving_error_micros)} (95 %); dry-run of the last "
               f"{days} days: {format_usd(check.saved_micros)} saved, {max(check.extra_pauses, 0)} extra pauses")
    return Suggestion(id=c.rule.name, kind="routing_rule", scope=c.rule.scope, summary=summary,
                      estimated_saving_micros=e.saving_micros, saving_error_micros=e.saving_error_micros,
                      evidence=evidence(e),
                      dry_run=check, change=c.rule.document(), diff=diff(live_doc, document), document=document)


def diff(before: dict[str, Any], after: dict[str, Any]) -> str:
    a = yaml.safe_dump(before, sort_keys=False).splitlines(keepends=True)
    b = yaml.safe_dump(after, sort_keys=False).splitlines(keepends=True)
    return "".join(difflib.unified_diff(a, b, "live policy", "proposed policy"))


def _not_proposed(v: TeamVerdict, tolerance: float) -> NotProposed:
    e = v.widest.estimate
    head = f"for {v.team}: {v.model} → {v.candidate_model} not proposed"
    words = {
        "needs_data": (f"{head}: {_math(e)}; needs {v.more_turns:,} more turns (at least {MIN_SAMPLE} on each "
                       f"side), not a guess"
                       + (f"; none ran on {v.candidate_model}: add {v.team} to the policy's exploration "
                          f"(docs/policy.md, Exploration) to learn it" if e.explored_n == 0 and e.downgraded_n == 0
                          else "; explored ones come from the policy's exploration share")),
        "harmful": f"{head}: the cheaper model's turns score worse than the tolerance of {pct(tolerance)}: {_math(e)}",
        "uncertain": (f"{head}: {_math(e)}: the bound is above the tolerance of {pct(tolerance)}; about "
                      f"{v.more_turns:,} more explored turns would narrow it enough if the regression holds"),
        "no_saving": f"{head}: no turn ran on {v.model} to save on",
    }
    return NotProposed(scope=f"team:{v.team}", kind="routing_rule", model=v.model, candidate_model=v.candidate_model,
                       verdict=v.verdict if v.verdict != "propose" else "uncertain", summary=words[v.verdict],
                       more_turns=v.more_turns, estimated_saving_micros=e.saving_micros, evidence=evidence(e))


def _more_pauses(v: TeamVerdict, check: DryRunCheck) -> NotProposed:
    assert v.chosen is not None
    return NotProposed(scope=v.chosen.rule.scope, kind="routing_rule", model=v.model,
                       candidate_model=v.candidate_model, verdict="more_pauses",
                       summary=(f"for {v.team}: {_rule_words(v.chosen)} not proposed: the dry-run pauses "
                                f"{check.extra_pauses} more sessions than the live policy"),
                       more_turns=0, estimated_saving_micros=v.chosen.estimate.saving_micros,
                       evidence=evidence(v.chosen.estimate))


def _not_checked(v: TeamVerdict) -> NotProposed:
    assert v.chosen is not None
    return NotProposed(scope=v.chosen.rule.scope, kind="routing_rule", model=v.model,
                       candidate_model=v.candidate_model, verdict="not_checked",
                       summary=(f"for {v.team}: {_rule_words(v.chosen)}; {_math(v.chosen.estimate)}; not dry-run "
                                f"yet (the {MAX_DRY_RUNS} largest savings are checked per run: ask with --team "
                                f"{v.team})"),
                       more_turns=0, estimated_saving_micros=v.chosen.estimate.saving_micros,
                       evidence=evidence(v.chosen.estimate))


def _segments(turns: Sequence[SegmentTurn], cheaper_of: Any, prices: PriceTable) -> list[SegmentOut]:
    groups = sorted(segment_keys(turns).items(), key=lambda kv: (-len(kv[1]), str(kv[0])))[:MAX_SEGMENTS]
    out = []
    for key, members in groups:
        cheaper = cheaper_of(key.team, key.model)
        price = _price(prices, cheaper) if cheaper else None
        e = estimate(members, cheaper, price) if cheaper and price else None
        out.append(SegmentOut(team=key.team, model=key.model, candidate_model=cheaper, size=key.size,
                              hours=key.hours, repo=key.repo, tools=key.tools, turns=len(members),
                              estimated_saving_micros=e.saving_micros if e else 0,
                              evidence=evidence(e) if e else None))
    return out


def suggestion_source(suggestion: str | None) -> str | None:
    """The version ``source`` of a policy applied from suggestion ``suggestion`` (``suggestion:<id>``)."""
    if suggestion is None:
        return None
    if NAME_PATTERN.fullmatch(suggestion) is None:
        raise ConfigError(f"a suggestion id is letters, digits, '.', '_' or '-' (at most 64), not {suggestion!r}")
    return f"suggestion:{suggestion}"


async def _knobs(pool: asyncpg.Pool, live: Policy, turns: Sequence[SegmentTurn], cheaper_of: Any, price_of: Any,
                 tolerance: float, *, start: datetime, now: datetime,
                 team: str | None) -> tuple[list[knobs.Knob], list[NotProposed]]:
    """The candidates of the downgrade size limit, stage thresholds, budgets from the forecast and retry caps
    (:mod:`spendgate.admin.suggest_knobs`; every step of each), for the shared dry-run pass, and those the
    evidence already rules out."""
    found: list[knobs.Knob] = []
    rejected: list[NotProposed] = []
    if team is None:
        limit = knobs.downgrade_limit(live, turns, cheaper_of, price_of, tolerance)
        if isinstance(limit, knobs.Knob):
            found.append(limit)
        elif limit is not None:
            rejected.append(NotProposed(scope=limit.scope, kind=limit.kind, model="", candidate_model="",
                                        verdict=limit.verdict, summary=limit.summary, more_turns=0,
                                        estimated_saving_micros=0,
                                        evidence=evidence(limit.estimate) if limit.estimate else None))
    found += knobs.stage_thresholds(live, turns, cheaper_of, price_of, tolerance, team)
    found += await knobs.team_budgets(pool, live, turns, cheaper_of, price_of, now=now, team=team)
    found += knobs.retry_caps(live, await knobs.retry_spend(pool, start=start, end=now, team=team))
    rejected += [_knob_rejected(k, "not_checked", f"not dry-run yet (the first {MAX_KNOB_CHECKS} candidates are "
                                f"checked per run: ask with --team {k.team})") for k in found[MAX_KNOB_CHECKS:]]
    return found[:MAX_KNOB_CHECKS], rejected


def _best_knobs(found: Sequence[knobs.Knob], base: Totals, results: Sequence[Totals], days: int, tolerance: float,
                live_doc: dict[str, Any]) -> tuple[list[Suggestion], list[NotProposed]]:
    """Per knob and scope, the step that passes its check with the largest dry-run saving (ties: the smaller
    step, listed first); with none passing, why the smallest step does not."""
    steps: dict[tuple[str, str], list[Suggestion | NotProposed]] = {}
    for k, result in zip(found, results, strict=True):
        steps.setdefault((k.kind, k.scope), []).append(_knob_checked(k, base, result, days, tolerance, live_doc))
    out: list[Suggestion] = []
    rejected: list[NotProposed] = []
    for made in steps.values():
        passing = [m for m in made if isinstance(m, Suggestion)]
        if passing:
            out.append(max(passing, key=lambda m: m.estimated_saving_micros))
        else:
            first = made[0]
            assert isinstance(first, NotProposed)
            rejected.append(first)
    return out, rejected


def _knob_math(k: knobs.Knob) -> str:
    if not k.estimates:
        return "it moves no turn to a cheaper model"
    more = len(k.estimates) - 1
    return _math(k.estimates[0]) + (f" (and {more} more teams' turns within the tolerance)" if more else "")


def _knob_rejected(k: knobs.Knob, verdict: Literal["needs_data", "harmful", "no_saving", "more_pauses",
                                                   "not_checked"], why: str) -> NotProposed:
    e = k.estimates[0] if k.estimates else None
    return NotProposed(scope=k.scope, kind=k.kind, model="", candidate_model=e.candidate if e else "",
                       verdict=verdict, summary=f"for {k.scope}: {k.words}: not proposed: {why}", more_turns=0,
                       estimated_saving_micros=0, evidence=evidence(e) if e else None)


def _knob_checked(k: knobs.Knob, base: Totals, result: Totals, days: int, tolerance: float,
                  live_doc: dict[str, Any]) -> Suggestion | NotProposed:
    check = _check(base, result, days, k.team or "")
    downgrades = (result.downgrades + result.forced_cheapest) - (base.downgrades + base.forced_cheapest)
    retries = result.retry_refused - base.retry_refused
    if check.extra_pauses > 0:
        return _knob_rejected(k, "more_pauses", f"the dry-run pauses {check.extra_pauses} more sessions than the "
                                                "live policy")
    if k.moves_turns and downgrades > 0:
        e = k.estimates[0] if k.estimates else None
        if e is None or isinstance(e.result, TooFew):
            return _knob_rejected(k, "needs_data", f"it would downgrade {downgrades:,} more requests and there are "
                                                   "too few explored or downgraded turns to tell what that does")
        if not all(isinstance(x.result, Regression) and x.result.within(tolerance) for x in k.estimates):
            return _knob_rejected(k, "harmful", f"{_knob_math(k)}: above the tolerance of {pct(tolerance)}")
    if k.kind != "budget" and check.saved_micros <= 0:
        return _knob_rejected(k, "no_saving", f"the dry-run of the last {days} days saves nothing")
    tail = f", {retries:,} more retry requests refused (refusals, not pauses)" if k.kind == "retry_cap" else ""
    summary = (f"for {k.scope}: {k.words}; {_knob_math(k)}; dry-run of the last {days} days: "
               f"{format_usd(check.saved_micros)} saved, {max(check.extra_pauses, 0)} extra pauses, "
               f"{max(downgrades, 0):,} more requests downgraded{tail}")
    document = to_document(k.policy)
    return Suggestion(id=k.id, kind=k.kind, scope=k.scope, summary=summary,
                      estimated_saving_micros=check.saved_micros,
                      evidence=evidence(k.estimates[0]) if k.estimates else None, dry_run=check, change=k.change,
                      diff=diff(live_doc, document), document=document, extra_downgrades=max(downgrades, 0),
                      retry_refusals=max(retries, 0))


async def _rations(pool: asyncpg.Pool, settings: Settings, prices: PriceTable, *, now: datetime, team: str | None,
                   live_doc: dict[str, Any]) -> list[Suggestion]:
    """Rationing's proposals (``policy ration``) as suggestions of kind ``ration``; with a team, its scope's."""
    found = await proposals(pool, settings, prices, now=now, scope=f"team:{team}" if team else None)
    out = []
    for scope in found.scopes:
        for p in scope.proposals:
            raw = f"ration-{scope.scope}-{p.kind}"
            out.append(Suggestion(
                id="".join(c if c.isalnum() or c in "._-" else "-" for c in raw)[:64], kind="ration",
                scope=p.scope, summary=f"ration {p.summary}" + ("" if p.sufficient else " (not enough alone)"),
                estimated_saving_micros=p.saved_micros, evidence=None, dry_run=None, change={"ration": p.kind},
                diff=diff(live_doc, p.document), document=p.document, ration=p))
    return out
