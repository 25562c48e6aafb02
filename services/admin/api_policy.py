"""Admin API handlers for budgets, raises and policies (live, dry-run, apply).

Writes go through the enforcement budgets store (audited, NOTIFYing the proxies); the dry-run and
apply are the functions ``spendgate policy …`` runs.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

import msgspec
from aiohttp import web

from spendgate.admin.access import actor, audit, forbidden, require
from spendgate.admin.console.auth_chain import identity_of
from spendgate.admin.console.identity import (
    may_change_policy,
    may_raise_budget,
    may_read_scope,
    may_set_budgets,
    reads_everything,
)
from spendgate.admin.deps import DEPS, Deps
from spendgate.admin.dryrun import DryRun, dry_run
from spendgate.admin.middleware import ApiError, json_response, not_found
from spendgate.admin.openapi import Operation, Param
from spendgate.admin.policy import live_policy, to_document
from spendgate.admin.policy_versions import VersionApplied, apply_version
from spendgate.admin.suggest import suggestion_source
from spendgate.admin.views import (
    BudgetOut,
    Budgets,
    BudgetStatus,
    RaiseOut,
    budget_list,
    budget_out,
    budget_status,
    raise_out,
)
from spendgate.domain.enforcement import (
    Budget,
    BudgetRaise,
    Thresholds,
    budget_of,
    parse_scope,
    policy_from_document,
)
from spendgate.domain.enforcement.policy import MAX_CASCADE_STEPS, MAX_CASCADES, check_cascades
from spendgate.domain.errors import StoreError
from spendgate.domain.money import usd_to_micros
from spendgate.domain.policy_versions import MAX_REASON_CHARS
from spendgate.store.budgets import store

SCOPE_PATTERN = (r"^(org|(key|developer|team|cost_center):[^\x00-\x1f\x7f\s]([^\x00-\x1f\x7f]{0,198}"
                 r"[^\x00-\x1f\x7f\s])?)(\|model:[A-Za-z0-9][A-Za-z0-9._:/@-]{0,127})?$")
"""The scope forms :func:`spendgate.domain.enforcement.parse_scope` accepts, as given (no stray spaces); a
per-model budget's ends in ``|model:<model>`` (``%7C`` in a URL)."""
SCOPE_FORMS = ("key:<id>, developer:<name>, team:<name>, cost_center:<name> or org, optionally followed by "
               "|model:<model>")


def checked_scope(text: str) -> str:
    """A scope as the API and the console accept it (see :data:`SCOPE_PATTERN`), parsed."""
    if re.fullmatch(SCOPE_PATTERN, text) is None:
        raise ApiError(400, "bad_request", f"bad scope {text!r}: use {SCOPE_FORMS}")
    return parse_scope(text)


def _scope(request: web.Request) -> str:
    return checked_scope(request.match_info["scope"])


Usd = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{1,9}(\.[0-9]{1,6})?$",
                                  description="US dollars as an exact decimal string")]


class BudgetIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Fields to set; those left out keep the budget's current value (or the settings' default)."""

    daily: Usd | None = None
    weekly: Usd | None = None
    """The ISO-week amount (Monday 00:00 in the budget's time zone)."""
    monthly: Usd | None = None
    timezone: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    thresholds: Annotated[list[Annotated[int, msgspec.Meta(ge=1, le=10_000)]],
                          msgspec.Meta(min_length=3, max_length=3)] | None = None
    at_pause: Annotated[str, msgspec.Meta(pattern="^(refuse|cheapest|step_down)$")] | None = None
    retry_cap: Annotated[int, msgspec.Meta(ge=0, le=1000)] | None = None
    cascades: Annotated[dict[Annotated[str, msgspec.Meta(max_length=128)],
                             Annotated[list[Annotated[str, msgspec.Meta(max_length=128)]],
                                       msgspec.Meta(max_length=MAX_CASCADE_STEPS)]],
                        msgspec.Meta(max_length=MAX_CASCADES)] | None = None
    """The scope's own cascades, ``{model: [cheaper, ...]}``; ``{}`` removes them (the broader scopes' or
    the settings' apply again)."""


class RaiseIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    by: Usd
    until: Annotated[datetime, msgspec.Meta(tz=True)]
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]


class Deleted(msgspec.Struct, frozen=True, kw_only=True):
    deleted: str


class PolicyDocument(msgspec.Struct, frozen=True, kw_only=True):
    policy: dict[str, Any]
    """The live policy in the proposal format (``spendgate policy dry-run`` / ``apply`` read it)."""


class DryRunIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    proposal: dict[str, Any]
    days: Annotated[int, msgspec.Meta(ge=1, le=366)] = 30


class ApplyIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    proposal: dict[str, Any]
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_REASON_CHARS)] = "policy apply"
    """Why, recorded on the new policy version (the approver is the request's identity)."""
    suggestion: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")] | None = None
    """The ``policy suggest`` suggestion id the proposal came from, recorded as the version's source."""


async def list_budgets(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    who = identity_of(request)
    found = await budget_list(deps.pool, deps.now())
    if reads_everything(who):
        return json_response(found)
    return json_response(Budgets(budgets=[b for b in found.budgets if may_read_scope(who, b.scope)],
                                 raises=[r for r in found.raises if may_read_scope(who, r.scope)]))


async def get_budget(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    scope = _scope(request)
    if not may_read_scope(identity_of(request), scope):
        raise forbidden(f"you may not read the budget of {scope}")
    found = await budget_status(deps.pool, scope, deps.now())
    if found is None:
        raise not_found(f"no budget for {scope}")
    return json_response(found)


async def put_budget(request: web.Request) -> web.Response:
    require(request, may_set_budgets(identity_of(request)), "set budgets")
    deps = request.app[DEPS]
    scope = _scope(request)
    body = msgspec.json.decode(await request.read(), type=BudgetIn)
    budget = await set_budget_fields(deps, scope, body, actor=actor(request))
    _, raises = await store.load_budgets(deps.pool, deps.now())
    return json_response(budget_out(budget, raises))


async def set_budget_fields(deps: Deps, scope: str, body: BudgetIn, *, actor: str) -> Budget:
    """Set the fields ``body`` gives on ``scope``'s budget (created from the settings' defaults when new),
    audited as ``actor``: what ``PUT /v1/budgets/{scope}`` and the console's budget form do."""
    base = await store.get_budget(deps.pool, scope) or Budget(
        scope, timezone=deps.settings.default_timezone,
        thresholds=Thresholds.of(deps.settings.enforcement.thresholds_pct))
    cascades = base.cascade_dict() if body.cascades is None else body.cascades or None
    budget = budget_of(
        scope, daily_micros=base.daily_micros if body.daily is None else usd_to_micros(body.daily),
        weekly_micros=base.weekly_micros if body.weekly is None else usd_to_micros(body.weekly),
        monthly_micros=base.monthly_micros if body.monthly is None else usd_to_micros(body.monthly),
        timezone=body.timezone or base.timezone,
        thresholds=base.thresholds.as_list() if body.thresholds is None else body.thresholds,
        at_pause=body.at_pause or base.at_pause,
        retry_cap=base.retry_cap if body.retry_cap is None else body.retry_cap, cascades=cascades)
    if cascades:
        check_cascades(cascades, deps.prices, what=f"cascades of {scope}")
    await store.set_budget(deps.pool, budget, actor=actor)
    return budget


async def delete_budget(request: web.Request) -> web.Response:
    require(request, may_set_budgets(identity_of(request)), "delete budgets")
    scope = _scope(request)
    if not await store.delete_budget(request.app[DEPS].pool, scope, actor=actor(request)):
        raise not_found(f"no budget for {scope}")
    return json_response(Deleted(deleted=scope))


async def add_raise(request: web.Request) -> web.Response:
    scope = _scope(request)
    body = msgspec.json.decode(await request.read(), type=RaiseIn)
    who, limit = identity_of(request), request.app[DEPS].settings.console.manager_raise_limit_micros
    if not may_raise_budget(who, scope, usd_to_micros(body.by), limit or None):
        raise forbidden(f"the {who.role} role may not raise {scope} by this much (a manager raises their own "
                        f"teams' budgets by at most console.manager_raise_limit_usd)")
    return json_response(raise_out(await raise_budget(request.app[DEPS], scope, body, actor=actor(request))),
                         status=201)


async def raise_budget(deps: Deps, scope: str, body: RaiseIn, *, actor: str) -> BudgetRaise:
    """Add ``body``'s raise to ``scope``'s budget, audited as ``actor`` (the API's and the console's)."""
    raise_ = BudgetRaise(scope, usd_to_micros(body.by), body.until, body.reason)
    if raise_.amount_micros <= 0:
        raise ApiError(400, "bad_request", "a raise must be a positive amount")
    try:
        raise_id = await store.raise_budget(deps.pool, raise_, actor=actor)
    except StoreError as exc:
        if exc.retriable:
            raise
        raise ApiError(409, "conflict", exc.message) from None
    return BudgetRaise(scope, raise_.amount_micros, body.until, body.reason, raise_id)


async def get_policy(request: web.Request) -> web.Response:
    require(request, reads_everything(identity_of(request)), "read the live policy")
    deps = request.app[DEPS]
    return json_response(PolicyDocument(policy=to_document(
        await live_policy(deps.pool, deps.settings.enforcement, deps.now()))))


async def post_dry_run(request: web.Request) -> web.Response:
    require(request, may_change_policy(identity_of(request)), "dry-run policies")
    deps = request.app[DEPS]
    body = msgspec.json.decode(await request.read(), type=DryRunIn)
    proposal = policy_from_document(body.proposal, deps.settings.enforcement)
    result, _ = await dry_run(deps.pool, proposal, deps.prices, days=body.days, now=deps.now())
    return json_response(result)


async def post_apply(request: web.Request) -> web.Response:
    require(request, may_change_policy(identity_of(request)), "apply policies")
    deps = request.app[DEPS]
    body = msgspec.json.decode(await request.read(), type=ApplyIn)
    proposal = policy_from_document(body.proposal, deps.settings.enforcement)
    try:
        done = await apply_version(deps.pool, proposal, deps.settings, deps.prices, now=deps.now(),
                                   approver=actor(request), reason=body.reason,
                                   source=suggestion_source(body.suggestion))
    except StoreError as exc:
        if exc.retriable:
            raise
        raise ApiError(409, "conflict", exc.message) from None
    await audit(request, "policy.apply", "policy",
                {"version": done.version_id, "set": done.set_budgets, "deleted": done.deleted_budgets,
                 "raises": done.added_raises})
    return json_response(done)


def operations() -> list[Operation]:
    scope = Param("scope", {"type": "string", "pattern": SCOPE_PATTERN},
                  SCOPE_FORMS, where="path")
    b, p = ("budgets",), ("policy",)
    return [
        Operation("GET", "/v1/budgets", "listBudgets", "Budgets and active raises", list_budgets, Budgets,
                  errors=(), tags=b),
        Operation("GET", "/v1/budgets/{scope}", "getBudget",
                  "A budget, its active raises and where this day's and month's spend stands", get_budget,
                  BudgetStatus, params=(scope,), errors=(400, 404), tags=b),
        Operation("PUT", "/v1/budgets/{scope}", "setBudget", "Create a budget or change the given fields", put_budget,
                  BudgetOut, params=(scope,), body=BudgetIn, tags=b),
        Operation("DELETE", "/v1/budgets/{scope}", "deleteBudget", "Remove a scope's budget and its raises",
                  delete_budget, Deleted, params=(scope,), errors=(400, 404), tags=b),
        Operation("POST", "/v1/budgets/{scope}/raises", "raiseBudget", "Raise a budget until a time",
                  add_raise, RaiseOut, status=201, params=(scope,), body=RaiseIn, errors=(400, 409), tags=b),
        Operation("GET", "/v1/policy", "getPolicy", "The live policy in the proposal format", get_policy,
                  PolicyDocument, errors=(), tags=p),
        Operation("POST", "/v1/policy/dry-run", "dryRunPolicy", "Replay recent traffic through a proposal",
                  post_dry_run, DryRun, body=DryRunIn, tags=p),
        Operation("POST", "/v1/policy/apply", "applyPolicy",
                  "Make the live budgets, raises and routing rules those of a proposal, as a new signed version",
                  post_apply, VersionApplied, body=ApplyIn, errors=(400, 403, 409), tags=p),
    ]
