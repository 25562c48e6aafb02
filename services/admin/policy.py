"""The live policy as a document, and ``policy apply``: make the live budgets what a proposal says.

The document format is the one :func:`spendgate.domain.enforcement.policy_from_document` reads (see
its module docs), so ``policy show > p.yaml``, edit, ``policy dry-run p.yaml``, ``policy apply p.yaml``
round-trips. Budgets and raises live in the database and are applied through the enforcement budgets
store (audited, NOTIFYing the proxies); the downgrade size limit and the policy-wide retry cap, the
routing rules and exploration live in the signed version (``admin/policy_versions``) the proxies load;
cascades live in the settings file, so ``apply`` reports a difference there instead of pretending to
apply it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from spendgate.core.yamltext import parse_yaml
from spendgate.domain.enforcement import Budget, BudgetRaise, Policy
from spendgate.domain.enforcement.settings import EnforcementSettings
from spendgate.domain.errors import ConfigError
from spendgate.domain.money import usd_str
from spendgate.store.budgets import store
from spendgate.store.policies import store as versions


def parse_proposal(text: str, *, source: str) -> dict[str, Any]:
    """A proposal document (YAML, so JSON too) as ``policy dry-run`` / ``apply`` and the console read it;
    a :class:`ConfigError` naming ``source`` when it is not YAML, not a mapping or empty.

    An empty file (or only comments, or ``null``) is refused rather than read as "no budgets": applied,
    it would delete every budget and routing rule, and an empty file is far more often a truncated copy
    or the wrong file than a wish. A document that means "none" says so: ``budgets: []``."""
    doc = parse_yaml(text, source=source)
    if doc is None:
        raise ConfigError(f"{source} is empty: a proposal lists budgets:, raises:, … "
                          "(to remove every budget, say so: budgets: [])")
    if not isinstance(doc, dict):
        raise ConfigError(f"{source} must be a mapping with budgets:, raises:, …")
    return doc


async def live_policy(pool: asyncpg.Pool, defaults: EnforcementSettings, now: datetime) -> Policy:
    """The policy the proxies enforce right now: stored budgets and active raises, the active version's
    id and routing rules, settings for the rest."""
    budgets, raises = await store.load_budgets(pool, now)
    policy = Policy.from_settings(defaults, budgets, raises)
    active = await versions.active_version(pool)
    if active is None:
        return policy
    return policy.under_version(active.version_id, active.document)


def _budget_doc(b: Budget) -> dict[str, Any]:
    doc: dict[str, Any] = {"scope": b.base_scope}
    if b.model is not None:
        doc["model"] = b.model
    for name, micros in (("daily", b.daily_micros), ("weekly", b.weekly_micros), ("monthly", b.monthly_micros)):
        if micros is not None:
            doc[name] = usd_str(micros)
    doc.update(timezone=b.timezone, thresholds=b.thresholds.as_list(), at_pause=b.at_pause)
    if b.retry_cap is not None:
        doc["retry_cap"] = b.retry_cap
    if b.cascades is not None:
        doc["cascades"] = b.cascade_dict()
    return doc


def _raise_doc(r: BudgetRaise) -> dict[str, Any]:
    doc: dict[str, Any] = {"scope": r.scope, "by": usd_str(r.amount_micros)}
    if r.created_at is not None:
        doc["from"] = r.created_at.isoformat()  # a dry-run counts the raise from when it was made
    return {**doc, "until": r.until.isoformat(), "reason": r.reason}


def to_document(policy: Policy) -> dict[str, Any]:
    """``policy`` in the proposal format (dollar amounts as exact strings)."""
    doc = {
        "budgets": [_budget_doc(policy.budgets[s]) for s in sorted(policy.budgets)],
        "raises": [_raise_doc(r) for r in policy.raises],
        "cascades": {m: list(c) for m, c in sorted(policy.cascades.items())},
        "downgrade_max_input_tokens": policy.downgrade_max_input_tokens,
        "retry_cap": policy.retry_cap,
        "routing_rules": [r.document() for r in policy.routing.rules],
    }
    if policy.exploration is not None:  # only when set: documents of versions before it stay as they were
        doc["exploration"] = policy.exploration.document()
    return doc


class Applied(msgspec.Struct, frozen=True, kw_only=True):
    set_budgets: list[str]
    deleted_budgets: list[str]
    unchanged_budgets: list[str]
    added_raises: list[str]
    kept_raises: list[str]
    """Active live raises the proposal does not list: raises run out by themselves, none are cut short."""
    settings_differences: list[str]
    """Parts of the proposal that live in the settings file (the cascades) and differ from it."""
    ended_raises: list[str] = msgspec.field(default_factory=list)
    """Raises of the proposal that ended before now, so not added (a mistyped year said nothing before)."""


def _same_raise(a: BudgetRaise, b: BudgetRaise) -> bool:
    return (a.scope, a.amount_micros, a.until, a.reason) == (b.scope, b.amount_micros, b.until, b.reason)


async def apply(pool: asyncpg.Pool, proposal: Policy, defaults: EnforcementSettings, *, now: datetime,
                actor: str) -> Applied:
    """Make the live budgets and raises those of ``proposal``; unchanged budgets are left alone.

    A new raise starts when it is applied (its ``from`` says when a dry-run counts it from); one whose
    ``from`` is still to come is refused, since a stored raise cannot wait to start.
    """
    for r in proposal.raises:
        if r.created_at is not None and r.created_at > now and r.until > now:
            raise ConfigError(f"raise for {r.scope} starts at {r.created_at.isoformat()}, after now: "
                              "a raise starts when it is applied; apply it then")
    live = await live_policy(pool, defaults, now)
    set_, unchanged = [], []
    for scope in sorted(proposal.budgets):
        if live.budgets.get(scope) == proposal.budgets[scope]:
            unchanged.append(scope)
        else:
            await store.set_budget(pool, proposal.budgets[scope], actor=actor)
            set_.append(scope)
    deleted = []
    for scope in sorted(set(live.budgets) - set(proposal.budgets)):
        await store.delete_budget(pool, scope, actor=actor)
        deleted.append(scope)
    added = []
    ended = [f"{r.scope} +{usd_str(r.amount_micros)} until {r.until.isoformat()}" for r in proposal.raises
             if r.until <= now]
    for r in proposal.raises:
        if r.until > now and not any(_same_raise(r, old) for old in live.raises if old.scope not in deleted):
            await store.raise_budget(pool, r, actor=actor)
            added.append(f"{r.scope} +{usd_str(r.amount_micros)} until {r.until.isoformat()}")
    kept = [f"{r.scope} +{usd_str(r.amount_micros)} until {r.until.isoformat()}" for r in live.raises
            if r.scope in proposal.budgets and not any(_same_raise(r, p) for p in proposal.raises)]
    base = Policy.from_settings(defaults)
    differences = [
        f"{name}: proposal {getattr(proposal, name)!r}, settings {getattr(base, name)!r}"
        for name in ("cascades",)
        if getattr(proposal, name) != getattr(base, name)
    ]
    return Applied(set_budgets=set_, deleted_budgets=deleted, unchanged_budgets=unchanged, added_raises=added,
                   kept_raises=kept, settings_differences=differences, ended_raises=ended)
