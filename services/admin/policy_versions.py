"""Versioned, signed policies: apply a proposal as a new version, roll back, list, verify.

Every ``policy apply`` and ``policy rollback`` makes the live budgets, raises and routing rules those of a
document (:func:`spendgate.admin.policy.apply`), then stores a new version signed with the policy key
(:mod:`spendgate.core.policy_keys`) over the document now in force, its approver and reason. The newest
version is the active one; a rollback is a new version whose document is an older one's, so history
only grows. Storing the version NOTIFYs the proxies, which load its id and routing rules. The first apply
stores the policy it replaces as a baseline version first (:func:`_baseline`), so it can be judged and
rolled back like any later one.

Budgets and raises are written before the version (each write its own audited transaction), so for a
moment a proxy may enforce the new budgets under the previous version's id and rules; the version's own
insert is refused (409 / exit 1) when another version became active since this one was built.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import asyncpg
import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from spendgate.admin.policy import Applied, apply, live_policy, to_document
from spendgate.core.config import Settings
from spendgate.core.policy_keys import signing_key, verify_key
from spendgate.domain.enforcement import Policy, policy_from_document
from spendgate.domain.errors import ConfigError, StoreError, shown
from spendgate.domain.events import new_id
from spendgate.domain.policy_versions import (
    MAX_APPROVER_CHARS,
    MAX_REASON_CHARS,
    PolicyVersion,
    Verdict,
    VersionAction,
    sign,
    verify,
)
from spendgate.domain.pricing import PriceTable
from spendgate.store.policies import store

MAX_VERIFY = 100_000
"""``verify --all`` checks at most this many of the newest versions."""


class VersionApplied(Applied, frozen=True, kw_only=True):
    """What ``apply`` / ``rollback`` changed, and the version it stored."""

    version_id: str
    parent: str | None
    key_id: str
    unmetered_budgets: list[str] = msgspec.field(default_factory=list)
    """Per-model budgets on a model with no price (``Policy.unmetered_budgets``): stored, but they count nothing."""


class VersionOut(msgspec.Struct, frozen=True, kw_only=True):
    version_id: str
    parent: str | None
    action: str
    source: str | None
    """For a rollback, the version whose document it restored; for an apply of a ``policy suggest``
    suggestion, ``suggestion:<id>``."""
    approver: str
    reason: str
    created_at: datetime
    key_id: str
    active: bool
    routing_rules: int
    budgets: int


class VersionList(msgspec.Struct, frozen=True, kw_only=True):
    versions: list[VersionOut]


class VersionDetail(VersionOut, frozen=True, kw_only=True):
    document: dict[str, Any]
    signature: str


class Verification(msgspec.Struct, frozen=True, kw_only=True):
    version_id: str
    ok: bool
    problem: str


class Verifications(msgspec.Struct, frozen=True, kw_only=True):
    checked: int
    bad: int
    versions: list[Verification]


VERSION_PATTERN = r"^[0-9A-Za-z-]{1,64}$"
"""What a version id may look like (they are UUIDv7s); anything else is refused before it reaches SQL or a
message."""


def version_id_of(text: str) -> str:
    """``text`` when it can be a version id; a :class:`ConfigError` quoting it short otherwise."""
    if re.fullmatch(VERSION_PATTERN, text) is None:
        raise ConfigError(f"bad version id {shown(text)}")
    return text


def _text(value: str, name: str, limit: int) -> str:
    value = " ".join(value.split())
    if not value:
        raise ConfigError(f"{name} must not be empty")
    if len(value) > limit:
        raise ConfigError(f"{name} is longer than {limit} characters")
    if not value.isprintable():  # an escape sequence would reach every terminal that lists the versions
        raise ConfigError(f"{name} has control characters: {shown(value)}")
    return value


def version_out(v: PolicyVersion, active: str | None) -> VersionOut:
    return VersionOut(version_id=v.version_id, parent=v.parent, action=v.action, source=v.source,
                      approver=v.approver, reason=v.reason, created_at=v.created_at, key_id=v.key_id,
                      active=v.version_id == active, routing_rules=len(v.document.get("routing_rules") or ()),
                      budgets=len(v.document.get("budgets") or ()))


def version_detail(v: PolicyVersion, active: str | None) -> VersionDetail:
    out = version_out(v, active)
    return VersionDetail(**{f: getattr(out, f) for f in out.__struct_fields__}, document=v.document,
                         signature=v.signature)


async def apply_version(pool: asyncpg.Pool, proposal: Policy, settings: Settings, prices: PriceTable, *,
                        now: datetime, approver: str, reason: str, action: VersionAction = "apply",
                        source: str | None = None, expected_active: str | None = None) -> VersionApplied:
    """Apply ``proposal`` and store it as the new active version, signed. ``expected_active``: refuse
    (a non-retriable :class:`StoreError`) unless that version is the active one (the guard's rollback must
    not undo a version applied after the one it judged)."""
    approver = _text(approver, "approver", MAX_APPROVER_CHARS)
    reason = _text(reason, "reason", MAX_REASON_CHARS)
    proposal.check_prices(prices, bedrock_models=settings.bedrock.models.keys())
    key = signing_key(settings)  # before changing anything: a missing or bad key changes nothing
    parent = await store.active_version(pool)
    if expected_active is not None and (parent is None or parent.version_id != expected_active):
        raise StoreError(f"the active policy version is now {parent.version_id if parent else None}, not "
                         f"{expected_active}: another change was applied meanwhile", retriable=False)
    if parent is None:
        parent = await _baseline(pool, settings, key, now=now, approver=approver)
    done = await apply(pool, proposal, settings.enforcement, now=now, actor=approver)
    live = await live_policy(pool, settings.enforcement, now)
    document = to_document(live.with_version(None, proposal.routing, proposal.exploration,
                                             downgrade_max_input_tokens=proposal.downgrade_max_input_tokens,
                                             retry_cap=proposal.retry_cap))
    version = sign(key, version_id=new_id(), parent=parent.version_id if parent else None, action=action,
                   source=source, approver=approver, reason=reason, created_at=now, document=document)
    await store.add_version(pool, version)
    return VersionApplied(**{f: getattr(done, f) for f in done.__struct_fields__}, version_id=version.version_id,
                          parent=version.parent, key_id=version.key_id,
                          unmetered_budgets=proposal.unmetered_budgets(prices,
                                                                       bedrock_models=settings.bedrock.models.keys()))


BASELINE_SOURCE = "baseline"
"""The ``source`` of the version the first ``apply`` stores before its own: the policy then in force."""


async def _baseline(pool: asyncpg.Pool, settings: Settings, key: Ed25519PrivateKey, *, now: datetime,
                    approver: str) -> PolicyVersion:
    """Store the policy in force before the first version (the stored budgets and raises, the settings'
    downgrade size limit and retry cap, no routing rules) as a version of its own, the first version's
    parent. Without it the first change ever applied, usually a newcomer's first ``policy suggest``, could be
    neither judged by the guard against what it replaced nor rolled back."""
    live = await live_policy(pool, settings.enforcement, now)
    version = sign(key, version_id=new_id(), parent=None, action="apply", source=BASELINE_SOURCE,
                   approver=approver, reason="the policy in force before the first applied version",
                   created_at=now, document=to_document(live))
    await store.add_version(pool, version)
    return version


async def rollback(pool: asyncpg.Pool, settings: Settings, prices: PriceTable, *, now: datetime, approver: str,
                   reason: str, to: str | None = None, expected_active: str | None = None) -> VersionApplied:
    """Make the parent of the active version (or version ``to``) active again, as a new version; with
    ``expected_active``, only while that version is the active one."""
    if to is not None:
        version_id_of(to)
    active = await store.active_version(pool)
    if active is None:
        raise ConfigError("no policy versions yet: nothing to roll back (run `spendgate policy apply` first)")
    if expected_active is not None and active.version_id != expected_active:
        raise StoreError(f"the active policy version is now {active.version_id}, not {expected_active}: another "
                         "change was applied meanwhile", retriable=False)
    if to is None and expected_active is None and active.action == "rollback":
        raise ConfigError(_again(active, await store.get_version(pool, active.source) if active.source else None))
    target_id = to or active.parent
    if target_id is None:
        raise ConfigError(f"the active version {active.version_id} is the first: there is none before it")
    if target_id == active.version_id:
        raise ConfigError(f"{target_id} is already the active version")
    target = await store.get_version(pool, target_id)
    if target is None:
        raise ConfigError(f"no policy version {target_id} (see `spendgate policy versions`)")
    verdict = verify(verify_key(settings), target)
    if not verdict.ok:
        raise ConfigError(f"version {target_id} does not verify, so it is not restored: {verdict.problem}")
    proposal = policy_from_document(target.document, settings.enforcement)
    return await apply_version(pool, proposal, settings, prices, now=now, approver=approver, reason=reason,
                               action="rollback", source=target_id, expected_active=active.version_id)


def _again(active: PolicyVersion, restored: PolicyVersion | None) -> str:
    """Why a second plain rollback is refused: the active rollback's parent is the version it undid, so
    "the previous version" would put back what was just rolled back (an operator stepping back twice)."""
    further = (f"one further back is {restored.parent}, " if restored is not None and restored.parent else "")
    return (f"the active version {active.version_id} is a rollback (it restored {active.source}), so its previous "
            f"version {active.parent} is the one just rolled back; name the version to restore with --to (the "
            f"API's \"to\"): {further}undoing the rollback is {active.parent}")


async def versions(pool: asyncpg.Pool, *, limit: int = 100) -> list[VersionOut]:
    found = await store.list_versions(pool, limit=limit)
    active = found[0].version_id if found else None
    return [version_out(v, active) for v in found]


async def check(pool: asyncpg.Pool, settings: Settings, *, version_id: str | None = None,
                every: bool = False) -> Verifications:
    """Verify the active version, version ``version_id``, or (``every``) all of them. The versions are read
    before the key: on a database with none, "no key" would send a newcomer looking for a key they do not
    need yet."""
    if every:
        found = await store.list_versions(pool, limit=MAX_VERIFY)
        if not found:
            raise ConfigError("no policy versions yet: nothing to verify (`spendgate policy apply` stores one)")
    else:
        if version_id is not None:
            version_id_of(version_id)
        one = await (store.get_version(pool, version_id) if version_id else store.active_version(pool))
        if one is None:
            raise ConfigError(f"no policy version {version_id}" if version_id
                              else "no policy versions yet: nothing to verify (`spendgate policy apply` stores one)")
        found = [one]
    public = verify_key(settings)
    verdicts: list[Verdict] = [verify(public, v) for v in found]
    return Verifications(checked=len(verdicts), bad=sum(not v.ok for v in verdicts),
                         versions=[Verification(version_id=v.version_id, ok=v.ok, problem=v.problem)
                                   for v in verdicts])
