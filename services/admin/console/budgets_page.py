"""*Budgets and keys* (``/budgets``): budgets with where each period stands, raises, virtual keys; and the
forms that change them.

Every change goes through the functions the admin API calls (:func:`~spendgate.admin.api_policy.
set_budget_fields`, :func:`~spendgate.admin.api_policy.raise_budget`, the keys store), with the form's
fields converted into the API's own request types, so the console validates exactly as the API does.
Each change is made as the signed-in identity (its ``actor`` goes into the budget audit). A new key's
secret is shown once, in the answer to the POST that made it: never in a URL, a redirect or a log.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from spendgate.admin.access import audit
from spendgate.admin.api_keys import KeyCreate
from spendgate.admin.api_policy import BudgetIn, RaiseIn, checked_scope, raise_budget, set_budget_fields
from spendgate.admin.console.auth_chain import identity_of
from spendgate.admin.console.forms import Refused, action, convert, forbidden, read_form, see_other
from spendgate.admin.console.identity import (
    Identity,
    may_manage_keys,
    may_raise_budget,
    may_read_budgets,
    may_read_team,
    may_set_budgets,
    reads_everything,
)
from spendgate.admin.console.web import csv_response, render, wants_csv
from spendgate.admin.deps import DEPS, Deps
from spendgate.admin.views import BudgetStatus, budget_statuses
from spendgate.core.logs import get_logger
from spendgate.domain.enforcement.scopes import KINDS, MODEL_SEP, split_scope
from spendgate.domain.money import format_usd, usd_str, usd_to_micros
from spendgate.store.budgets import store as budgets_store
from spendgate.store.keys import store as keys_store

log = get_logger(__name__)

SCOPE_KINDS = ("org", *KINDS)
SHOWN_BUDGETS = 100
"""Budgets the page lists (the most used first; ``?q=`` narrows by scope, the CSV holds them all)."""
SHOWN_KEYS = 200
DONE = {"set": "Budget set for {scope}.", "raised": "Raise added to {scope}.", "deleted": "Budget deleted.",
        "revoked": "Key revoked."}
"""The message after a change. The scope comes from the URL, so it is named only when it is a budget the
page lists: a crafted link cannot make the page say something else."""


def _team_of(scope: str) -> str | None:
    base, _ = split_scope(scope)
    kind, _, name = base.partition(":")
    return name if kind == "team" else None


def _visible(who: Identity, scope: str) -> bool:
    if reads_everything(who):
        return True
    team = _team_of(scope)
    return team is not None and may_read_team(who, team)


def manager_raise_limit_micros(deps: Deps) -> int | None:
    """The most a manager may raise their team's budget by (``console.manager_raise_limit_usd``); None when
    it is 0, the default: managers may not raise."""
    return deps.settings.console.manager_raise_limit_micros or None


def _key_filter(query: Any) -> dict[str, str]:
    return {k: query.get(k, "").strip()[:200] for k in ("team", "developer", "revoked", "q")}


def _used(s: BudgetStatus) -> float:
    """The largest share of a period's budget the scope has spent: the page lists the most used first."""
    return max((p.spent_micros / p.budget_micros for p in s.periods if p.budget_micros > 0), default=0.0)


async def _keys(deps: Deps, who: Identity, filters: dict[str, str]) -> list[keys_store.VirtualKey]:
    if not may_manage_keys(who):
        return []
    return [k for k in await keys_store.list_keys(deps.pool, include_revoked=filters["revoked"] == "1")
            if (not filters["team"] or k.team == filters["team"])
            and (not filters["developer"] or k.developer == filters["developer"])]


async def page(request: web.Request, *, error: str | None = None, status: int = 200) -> web.StreamResponse:
    who = identity_of(request)
    if not may_read_budgets(who):
        return render(request, "budgets.html", title="Budgets and keys", status=403, denied=True,
                      error="Budgets and keys are for admins, FinOps and managers. Your own budget and spend "
                            "are on your developer page.")
    deps = request.app[DEPS]
    filters = _key_filter(request.rel_url.query)
    needle = filters["q"].lower()
    statuses, keys = await asyncio.gather(
        budget_statuses(deps.pool, deps.now(), lambda scope: _visible(who, scope) and needle in scope.lower()),
        _keys(deps, who, filters))
    statuses.sort(key=lambda s: (-_used(s), s.budget.scope))
    raises = [r for s in statuses for r in s.raises]
    table = request.rel_url.query.get("table", "budgets")
    if wants_csv(request):
        return _csv(table, statuses, keys, raises)
    done = request.rel_url.query.get("done")
    flash = _flash(done, request.rel_url.query.get("scope", ""), statuses)
    return render(request, "budgets.html", title="Budgets and keys", status=status, denied=False, error=error,
                  flash=flash, statuses=statuses[:SHOWN_BUDGETS], budget_count=len(statuses), raises=raises,
                  keys=keys[:SHOWN_KEYS], key_count=len(keys), filters=filters,
                  scope_kinds=SCOPE_KINDS, may_set=may_set_budgets(who),
                  may_keys=may_manage_keys(who), manager_limit=manager_raise_limit_micros(deps),
                  now=deps.now())


def _flash(done: str | None, named: str, statuses: list[BudgetStatus]) -> str | None:
    if done not in DONE:
        return None
    return DONE[done].format(scope=named if any(s.budget.scope == named for s in statuses) else "the scope")


def _csv(table: str, statuses: list[BudgetStatus], keys: list[keys_store.VirtualKey],
         raises: list[Any]) -> web.Response:
    if table == "keys":
        return csv_response("keys.csv", ["key_id", "key_prefix", "developer", "team", "cost_center", "created_at",
                                         "revoked_at"],
                            [[k.key_id, k.key_prefix, k.developer, k.team, k.cost_center, k.created_at.isoformat(),
                              k.revoked_at.isoformat() if k.revoked_at else ""] for k in keys])
    if table == "raises":
        return csv_response("raises.csv", ["raise_id", "scope", "amount_usd", "until", "reason"],
                            [[r.raise_id, r.scope, usd_str(r.amount_micros), r.until.isoformat(), r.reason]
                             for r in raises])
    return csv_response("budgets.csv", ["scope", "period", "spent_usd", "budget_usd", "stage", "resets_at"],
                        [[s.budget.scope, p.period, usd_str(p.spent_micros), usd_str(p.budget_micros), p.stage,
                          p.resets_at.isoformat()] for s in statuses for p in s.periods])


def scope_from(fields: dict[str, str]) -> str:
    """The scope a form names: a kind, a name (not for ``org``) and, for a per-model budget, a model."""
    kind, name, model = fields.get("kind", ""), fields.get("name", "").strip(), fields.get("model", "").strip()
    if kind not in SCOPE_KINDS:
        raise Refused(f"unknown scope kind {kind[:40]!r}: use one of {', '.join(SCOPE_KINDS)}")
    if kind != "org" and not name:
        raise Refused(f"a {kind} budget needs a name")
    text = "org" if kind == "org" else f"{kind}:{name}"
    return checked_scope(f"{text}{MODEL_SEP}{model}" if model else text)


def _done(what: str, scope: str) -> web.HTTPSeeOther:
    return see_other("/budgets?" + urlencode({"done": what, "scope": scope}))


def _cascades(text: str) -> dict[str, list[str]] | None:
    """``model: cheaper, cheapest`` per line; ``-`` alone removes the scope's own cascades."""
    if not text.strip():
        return None
    if text.strip() == "-":
        return {}
    out: dict[str, list[str]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        model, sep, steps = line.partition(":")
        if not sep or not model.strip():
            raise Refused(f"cascades line {number}: write model: cheaper, cheapest")
        out[model.strip()] = [s.strip() for s in steps.split(",") if s.strip()]
    return out


def budget_fields(fields: dict[str, str]) -> BudgetIn:
    """The budget form as the API's ``BudgetIn`` (blank fields keep the budget's current value)."""
    body: dict[str, Any] = {k: fields[k].strip() for k in ("daily", "weekly", "monthly", "timezone", "at_pause")
                            if fields.get(k, "").strip()}
    if fields.get("thresholds", "").strip():
        try:
            body["thresholds"] = [int(t) for t in fields["thresholds"].replace(",", " ").split()]
        except ValueError:
            raise Refused("thresholds: give three whole percentages such as 80, 95, 110") from None
    retry_cap = fields.get("retry_cap", "").strip()
    if retry_cap:
        if not (retry_cap.isascii() and retry_cap.isdigit()) or len(retry_cap) > 6:
            raise Refused("retry_cap: give a whole number from 0 to 1000")
        body["retry_cap"] = int(retry_cap)  # msgspec checks the range
    cascades = _cascades(fields.get("cascades", ""))
    if cascades is not None:
        body["cascades"] = cascades
    return convert(body, BudgetIn)


@action(page)
async def set_budget(request: web.Request, who: Identity) -> web.StreamResponse:
    if not may_set_budgets(who):
        raise forbidden("only admins and FinOps set budgets")
    fields = await read_form(request)
    scope = scope_from(fields)
    await set_budget_fields(request.app[DEPS], scope, budget_fields(fields), actor=who.actor)
    log.info("budget set from the console", scope=scope, actor=who.actor)
    raise _done("set", scope)


def _until(text: str) -> str:
    """A ``datetime-local`` value (no zone) is UTC; an ISO time with a zone keeps it."""
    text = text.strip()
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise Refused("until: give a time such as 2026-12-05T18:00 (UTC)") from None
    return (parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)).isoformat()


@action(page)
async def add_raise(request: web.Request, who: Identity) -> web.StreamResponse:
    deps = request.app[DEPS]
    fields = await read_form(request)
    scope = scope_from(fields)
    body = convert({"by": fields.get("by", "").strip(), "until": _until(fields.get("until", "")),
                    "reason": fields.get("reason", "").strip()}, RaiseIn)
    if body.until <= deps.now():
        raise Refused("until: a raise must end in the future")
    limit = manager_raise_limit_micros(deps)
    if not may_raise_budget(who, scope, usd_to_micros(body.by), limit):
        if not may_set_budgets(who) and limit is None:
            raise forbidden("managers may raise their teams' budgets only when console.manager_raise_limit_usd is set "
                            "(see docs/console.md); ask FinOps")
        raise forbidden("you may raise only your own teams' budgets (team:<name>), by at most "
                        f"{format_usd(limit) if limit is not None else '$0'}")
    await raise_budget(deps, scope, body, actor=who.actor)
    log.info("budget raised from the console", scope=scope, actor=who.actor)
    raise _done("raised", scope)


@action(page)
async def delete_budget(request: web.Request, who: Identity) -> web.StreamResponse:
    if not may_set_budgets(who):
        raise forbidden("only admins and FinOps delete budgets")
    fields = await read_form(request)
    scope = checked_scope(fields.get("scope", ""))
    if not await budgets_store.delete_budget(request.app[DEPS].pool, scope, actor=who.actor):
        raise Refused(f"no budget for {scope}", 404)
    log.info("budget deleted from the console", scope=scope, actor=who.actor)
    raise _done("deleted", scope)


@action(page)
async def create_key(request: web.Request, who: Identity) -> web.StreamResponse:
    if not may_manage_keys(who):
        raise forbidden("only admins create virtual keys")
    fields = await read_form(request)
    body = convert({k: fields[k].strip() for k in ("developer", "team", "cost_center")
                    if fields.get(k, "").strip()}, KeyCreate)
    created = await keys_store.create_key(request.app[DEPS].pool, developer=body.developer, team=body.team,
                                          cost_center=body.cost_center)
    await audit(request, "key.create", created.key.key_id,
                {"prefix": created.key.key_prefix, "developer": created.key.developer, "team": created.key.team,
                 "cost_center": created.key.cost_center})
    return render(request, "key_created.html", title="Key created", key=created.key, secret=created.secret)


@action(page)
async def revoke_key(request: web.Request, who: Identity) -> web.StreamResponse:
    if not may_manage_keys(who):
        raise forbidden("only admins revoke virtual keys")
    fields = await read_form(request)
    key_id = fields.get("key_id", "").strip()
    try:
        revoked = await keys_store.revoke_key(request.app[DEPS].pool, key_id)
    except keys_store.AmbiguousKeyError as exc:
        raise Refused(exc.message, 409) from None
    if revoked is None:
        raise Refused(f"no virtual key {key_id[:80]!r}", 404)
    await audit(request, "key.revoke", revoked.key_id,
                {"prefix": revoked.key_prefix, "developer": revoked.developer, "team": revoked.team})
    raise _done("revoked", revoked.key_id)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/budgets", page, name="budgets")
    app.router.add_post("/budgets/set", set_budget)
    app.router.add_post("/budgets/raise", add_raise)
    app.router.add_post("/budgets/delete", delete_budget)
    app.router.add_post("/budgets/keys/create", create_key)
    app.router.add_post("/budgets/keys/revoke", revoke_key)
