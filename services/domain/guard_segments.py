"""What a policy version changed, as the guard's segments, and which turns each one touched. Pure: no I/O.

:func:`affected` diffs a version's document against its parent's and returns one :class:`Segment` per
changed part: a routing rule added or changed, the downgrade size limit, a budget's stage thresholds (or
``at_pause``), a budget's amounts (new, changed or removed), a retry cap (a budget's or the policy-wide
one), the exploration block. Each segment says which turns are its **candidates** (turns decided under the
version that the change touched) and which its **baseline** (the same kind of turns before it), by
:attr:`Segment.picks` (docs/policy.md, "The guard"):

- ``routed``: a routing rule's turns since, against the turns before that its predicate matches;
- ``downgraded``: the change made more turns cheaper (a larger size limit, a lower downgrade threshold, a
  smaller or new budget): the scope's turns since that a budget stage ran on a cheaper model (not a
  routing rule, not exploration), against the scope's turns of that size before that ran on the model they
  asked for;
- ``in_scope``: the change only moves pauses or retries, or loosens (a higher pause threshold, a lower or
  higher retry cap, a removed budget or exploration): all the scope's turns since, against all before;
- ``explored``: the exploration block: its explored turns since, against its control arm since (drawn at
  random from the same turns: no week-to-week drift).

A first version (no parent) is judged on its routing rules only: the parts it wrote down were in force
before it, not changed by it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from spendgate.domain.enforcement.exploration import Exploration, stored_exploration
from spendgate.domain.enforcement.policy import Budget, policy_from_document
from spendgate.domain.enforcement.routing import RoutingRule, stored_rules
from spendgate.domain.enforcement.scopes import split_scope
from spendgate.domain.enforcement.settings import EnforcementSettings
from spendgate.domain.money import format_usd
from spendgate.domain.outcomes import TurnFacts
from spendgate.domain.periods import zone

Kind = Literal["routing_rule", "downgrade_limit", "stage_thresholds", "budget", "retry_cap", "exploration"]
Change = Literal["added", "changed", "removed"]
Picks = Literal["routed", "downgraded", "in_scope", "explored"]
NO_LIMIT = 1 << 62
"""The upper end of a segment's size band when it has none."""
MAX_LISTED = 5
"""Teams or models a summary names before ``and N more`` (a block may list 500)."""


@dataclass(frozen=True, slots=True)
class Segment:
    """One changed part of a version: what changed, in one plain sentence, and which turns it touched."""

    change: Change
    rule: RoutingRule | None = None
    """The routing rule (``routing_rule`` segments only)."""
    kind: Kind = "routing_rule"
    name: str = ""
    """A routing rule's name; for the other kinds, what changed (``budget team:platform``, …)."""
    scope: str = "org"
    summary: str = ""
    picks: Picks = "routed"
    timezone: str = "UTC"
    """Hours of the day are matched in this time zone (the rule's or the budget's)."""
    sizes: tuple[int, int] = (0, NO_LIMIT)
    """Starting input tokens the segment covers: ``[low, high)``."""
    teams: frozenset[str] | None = None
    """The exploration block's teams (then ``scope`` is only shown)."""
    models: frozenset[str] | None = None
    """Requested models it covers; None: those its candidates asked for."""

    def fits(self, f: TurnFacts) -> bool:
        """The turn is of the segment's scope (or teams), size band and models."""
        if not self.sizes[0] <= f.input_tokens < self.sizes[1]:
            return False
        if self.models is not None and f.model_requested not in self.models:
            return False
        return f.team in self.teams if self.teams is not None else in_scope(self.scope, f)

    def candidate(self, f: TurnFacts, version_id: str) -> bool:
        """A turn decided under the version that the change touched."""
        if self.picks == "routed":
            assert self.rule is not None
            return routed(self.rule, f, version_id)
        if f.policy_version != version_id or not self.fits(f):
            return False
        if self.picks == "downgraded":
            return stage_downgraded(f)
        return f.experiment_arm == "explore" if self.picks == "explored" else True

    def baseline(self, f: TurnFacts, version_id: str, requested: Collection[str]) -> bool:
        """A turn of the same kind as the candidates, to compare them with (before the version, or for
        exploration its control arm since)."""
        if f.model_requested not in requested:
            return False
        if self.picks == "routed":
            assert self.rule is not None
            return matches(self.rule, f, requested)
        if not self.fits(f):
            return False
        if self.picks == "downgraded":
            return not f.downgraded
        if self.picks == "explored":
            return f.policy_version == version_id and f.experiment_arm == "control"
        return True

    @property
    def baseline_before(self) -> bool:
        """The baseline is turns before the version (else: turns since, the control arm)."""
        return self.picks != "explored"

    def hour(self, f: TurnFacts) -> int:
        """The hour of the day (0-23, the segment's time zone) the turn started in."""
        return f.started_at.astimezone(zone(self.timezone)).hour

    def requested_models(self, candidates: Iterable[TurnFacts]) -> set[str]:
        """The requested models it applies to: its own list, or those its candidates asked for."""
        if self.rule is not None:
            return requested_models(self.rule, candidates)
        return set(self.models) if self.models is not None else {f.model_requested for f in candidates}


def in_scope(scope: str, f: TurnFacts) -> bool:
    base, model = split_scope(scope)
    if model is not None and f.model_requested != model:
        return False
    kind, _, name = base.partition(":")
    if kind == "org":
        return True
    value = {"key": f.key_id, "developer": f.developer, "team": f.team, "cost_center": f.cost_center}.get(kind)
    return value == name


def stage_downgraded(f: TurnFacts) -> bool:
    """The turn ran on a cheaper model because of a budget stage (not a routing rule, not exploration)."""
    return f.downgraded and f.routing_rule is None and f.experiment_arm != "explore"


def matches(rule: RoutingRule, f: TurnFacts, requested: Collection[str]) -> bool:
    """Whether the rule's predicate holds for a turn: scope, starting size, local start time, and a
    requested model among ``requested`` (the rule's ``models``, or the models it routed from)."""
    if not in_scope(rule.scope, f) or f.input_tokens >= rule.max_input_tokens:
        return False
    local = f.started_at.astimezone(zone(rule.timezone))
    return rule.in_hours(local.hour * 60 + local.minute) and f.model_requested in requested


def routed(rule: RoutingRule, f: TurnFacts, version_id: str) -> bool:
    """A turn the rule routed under the version."""
    return f.policy_version == version_id and f.routing_rule == rule.name


def requested_models(rule: RoutingRule, candidates: Iterable[TurnFacts]) -> set[str]:
    """The requested models a rule applies to: its ``models``, or those it actually routed from."""
    if rule.models is not None:
        return set(rule.models)
    return {f.model_requested for f in candidates}


def affected(document: Mapping[str, Any], parent: Mapping[str, Any] | None) -> list[Segment]:
    """Every changed part of ``document`` against ``parent`` (None: no parent, only its routing rules)."""
    out = _rules(document, parent or {})
    if parent is None:
        return out
    out += _limit(document, parent)
    before, after = _budgets(parent), _budgets(document)
    limit = document.get("downgrade_max_input_tokens")
    for scope in sorted(before.keys() | after.keys()):
        out += _budget(scope, before.get(scope), after.get(scope), limit if isinstance(limit, int) else NO_LIMIT)
    cap = _changed(parent.get("retry_cap"), document.get("retry_cap"))
    if cap is not None:
        out.append(Segment("changed", kind="retry_cap", name="retry_cap", picks="in_scope",
                           summary=f"policy-wide retry cap {_cap(cap[0])} → {_cap(cap[1])}"))
    out += _exploration(stored_exploration(parent), stored_exploration(document))
    return out


def _rules(document: Mapping[str, Any], parent: Mapping[str, Any]) -> list[Segment]:
    before = {r.name: r for r in stored_rules(parent).rules}
    out = []
    for rule in stored_rules(document).rules:
        old = before.get(rule.name)
        if old is None or old != rule:
            change: Change = "added" if old is None else "changed"
            out.append(Segment(change, rule, name=rule.name, scope=rule.scope, timezone=rule.timezone,
                               summary=f"routing rule {rule.name} ({rule.scope}) {change}"))
    return out


def _changed(old: object, new: object) -> tuple[int, int] | None:
    """Both whole numbers and different (a stored document writes both out)."""
    if isinstance(old, int) and isinstance(new, int) and old != new:
        return old, new
    return None


def _limit(document: Mapping[str, Any], parent: Mapping[str, Any]) -> list[Segment]:
    limit = _changed(parent.get("downgrade_max_input_tokens"), document.get("downgrade_max_input_tokens"))
    if limit is None:
        return []
    old, new = limit
    return [Segment("changed", kind="downgrade_limit", name="downgrade_max_input_tokens",
                    picks="downgraded" if new > old else "in_scope", sizes=(min(old, new), max(old, new)),
                    summary=f"downgrade size limit {old:,} → {new:,} input tokens")]


def _budgets(document: Mapping[str, Any]) -> Mapping[str, Budget]:
    return policy_from_document({"budgets": document.get("budgets") or []}, EnforcementSettings()).budgets


def _usd(micros: int | None) -> str:
    return "none" if micros is None else format_usd(micros).removesuffix(".00")


def _amounts(b: Budget) -> list[tuple[str, int | None]]:
    return [("daily", b.daily_micros), ("weekly", b.weekly_micros), ("monthly", b.monthly_micros)]


def _budget(scope: str, old: Budget | None, new: Budget | None, limit: int) -> list[Segment]:
    """The segments of one budget's change: its amounts, its stage thresholds, its retry cap. ``limit``: the
    downgrade size limit (only turns under it are downgraded, so only those are compared)."""
    either = new or old
    assert either is not None

    def seg(kind: Kind, what: str, summary: str, cheaper: bool, change: Change = "changed") -> Segment:
        return Segment(change, kind=kind, name=f"{what} {scope}", scope=scope, summary=summary,
                       picks="downgraded" if cheaper else "in_scope", timezone=either.timezone,
                       sizes=(0, limit) if cheaper else (0, NO_LIMIT))

    if new is None or old is None:
        amounts = ", ".join(f"{k} {_usd(v)}" for k, v in _amounts(either) if v is not None)
        if new is None:
            return [seg("budget", "budget", f"budget {scope} removed (was {amounts})", False, "removed")]
        return [seg("budget", "budget", f"budget {scope} {amounts} (new)", True, "added")]
    out = []
    moved = [(k, o, n) for (k, o), (_, n) in zip(_amounts(old), _amounts(new), strict=True) if o != n]
    if moved:
        text = "; ".join(f"{k} {_usd(o)} → {_usd(n)}" for k, o, n in moved)
        tighter = any(n is not None and (o is None or n < o) for _, o, n in moved)
        out.append(seg("budget", "budget", f"budget {scope} {text}", tighter))
    if (old.thresholds, old.at_pause) != (new.thresholds, new.at_pause):
        parts = []
        if old.thresholds != new.thresholds:
            parts.append(f"stage thresholds {scope} {_pcts(old)} % → {_pcts(new)} %")
        if old.at_pause != new.at_pause:
            parts.append(f"at pause {scope} {old.at_pause} → {new.at_pause}")
        out.append(seg("stage_thresholds", "thresholds", "; ".join(parts),
                       new.thresholds.downgrade_pct < old.thresholds.downgrade_pct))
    if old.retry_cap != new.retry_cap:
        out.append(seg("retry_cap", "retry_cap", f"retry cap {scope} {_cap(old.retry_cap)} → {_cap(new.retry_cap)}",
                       False))
    return out


def _pcts(b: Budget) -> str:
    return "/".join(str(p) for p in b.thresholds.as_list())


def _cap(cap: int | None) -> str:
    return "the policy-wide cap" if cap is None else f"{cap} {'retry' if cap == 1 else 'retries'}"


def _listed(names: Iterable[str]) -> str:
    ordered = sorted(names)
    shown = ", ".join(ordered[:MAX_LISTED])
    return shown + (f" and {len(ordered) - MAX_LISTED} more" if len(ordered) > MAX_LISTED else "")


def _block(e: Exploration) -> str:
    models = f", models {_listed(e.models)}" if e.models is not None else ""
    return (f"{e.share_pct.normalize():f} % of turns under {e.max_input_tokens:,} input tokens in teams "
            f"{_listed(e.teams)}{models}")


def _exploration(old: Exploration | None, new: Exploration | None) -> list[Segment]:
    if old == new or (old is None and new is None):
        return []
    e = new or old
    assert e is not None
    teams = _listed(f"team:{t}" for t in e.teams)

    def seg(change: Change, summary: str, picks: Picks) -> list[Segment]:
        return [Segment(change, kind="exploration", name="exploration", scope=teams, summary=summary, picks=picks,
                        sizes=(0, e.max_input_tokens), teams=e.teams, models=e.models)]

    if old is None:
        return seg("added", f"exploration {_block(e)} (new)", "explored")
    if new is None:
        return seg("removed", f"exploration removed (was {_block(old)})", "in_scope")
    diffs: list[tuple[str, Callable[[Exploration], str]]] = [
        ("share", lambda x: f"{x.share_pct.normalize():f} %"), ("teams", lambda x: _listed(x.teams)),
        ("size limit", lambda x: f"{x.max_input_tokens:,} input tokens"),
        ("models", lambda x: "every model with a cheaper step" if x.models is None else _listed(x.models))]
    text = "; ".join(f"{label} {show(old)} → {show(new)}" for label, show in diffs if show(old) != show(new))
    return seg("changed", f"exploration {text}", "explored")

