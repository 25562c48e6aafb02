"""*Policy* (``/policy``): the live policy, a dry-run of a proposal (pasted or uploaded), applying it after
a confirmation, and the history of changes.

The proposal format, its parsing and checks, the dry-run and the apply are those of ``spendgate policy
dry-run | apply`` and ``POST /v1/policy/dry-run | apply`` (:func:`~spendgate.admin.policy.parse_proposal`,
:func:`~spendgate.domain.enforcement.policy_from_document`, :func:`~spendgate.admin.dryrun.dry_run`,
:func:`~spendgate.admin.policy.apply`). Applying needs the proposal a dry-run just showed and an explicit
confirmation; it is made as the signed-in identity and stored as a new signed policy version. The
*Versions* section lists the signed versions (newest first, the active one marked, each verified against
the configured key) and rolls back to an earlier one, as ``spendgate policy rollback --to`` does: a new
version restoring that one's document. The budget audit trail is the history of every budget change.
"""

from __future__ import annotations

import yaml
from aiohttp import web

from spendgate.admin.access import audit
from spendgate.admin.console.auth_chain import identity_of
from spendgate.admin.console.forms import Refused, action, forbidden, read_form
from spendgate.admin.console.identity import Identity, may_change_policy, reads_everything
from spendgate.admin.console.web import csv_response, render, wants_csv
from spendgate.admin.deps import DEPS
from spendgate.admin.dryrun import dry_run
from spendgate.admin.policy import live_policy, parse_proposal, to_document
from spendgate.admin.policy_versions import VersionOut, apply_version, check, rollback, versions
from spendgate.core.logs import get_logger
from spendgate.domain.enforcement import Policy, policy_from_document
from spendgate.domain.errors import ConfigError, StoreError
from spendgate.domain.money import usd_str
from spendgate.store.budgets import store as budgets_store

log = get_logger(__name__)

HISTORY_LIMIT = 200
SHOWN_BUDGETS = 150
"""Budgets the live policy's table lists (``?q=`` narrows by scope; the YAML holds them all)."""
INLINE_YAML_BUDGETS = 300
"""Up to this many budgets the page carries the live policy as YAML (shown, and the dry-run's starting
text); a larger one is a download (``?format=yaml``): PyYAML represents 2,000 budgets in about a second."""
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml: a 2,000-budget policy in ms, not seconds
PROPOSAL_FIELDS = ("proposal", "proposal_file")


async def page(request: web.Request, *, error: str | None = None, status: int = 200,
               proposal_text: str | None = None) -> web.StreamResponse:
    who = identity_of(request)
    if not reads_everything(who):
        return render(request, "policy.html", title="Policy", status=403, denied=True,
                      error="The policy page is for admins and FinOps.")
    deps = request.app[DEPS]
    live = await live_policy(deps.pool, deps.settings.enforcement, deps.now())
    history = await budgets_store.recent_changes(deps.pool, limit=HISTORY_LIMIT)
    if wants_csv(request):
        return csv_response("policy-history.csv", ["changed_at", "scope", "action", "actor", "daily_usd",
                                                   "weekly_usd", "monthly_usd", "raise_usd", "until", "reason"],
                            [[c.changed_at.isoformat(), c.scope, c.action, c.actor, _usd(c.daily_micros),
                              _usd(c.weekly_micros), _usd(c.monthly_micros), _usd(c.raise_micros),
                              c.until.isoformat() if c.until else "", c.reason or ""] for c in history])
    if request.rel_url.query.get("format") == "yaml":
        return web.Response(text=_yaml(live), content_type="application/yaml", headers={
            "Content-Disposition": 'attachment; filename="live-policy.yaml"', "Cache-Control": "no-store"})
    shown_versions, verified = await _versions(request)
    live_yaml = _yaml(live) if len(live.budgets) <= INLINE_YAML_BUDGETS else None
    needle = request.rel_url.query.get("q", "").strip()[:200]
    budgets = [live.budgets[s] for s in sorted(live.budgets) if needle.lower() in s.lower()]
    return render(request, "policy.html", title="Policy", status=status, denied=False, error=error, live=live,
                  budgets=budgets[:SHOWN_BUDGETS], budget_count=len(budgets), needle=needle, live_yaml=live_yaml,
                  proposal_text=(live_yaml or "") if proposal_text is None else proposal_text, history=history,
                  may_change=may_change_policy(who), limit=HISTORY_LIMIT, versions=shown_versions,
                  verified=verified)


SHOWN_VERSIONS = 50


async def _versions(request: web.Request) -> tuple[list[VersionOut], dict[str, str] | str]:
    """The newest signed versions, and per version "" (verifies) or what is wrong; or, when no key to verify
    with is configured, why they cannot be checked."""
    deps = request.app[DEPS]
    found = await versions(deps.pool, limit=SHOWN_VERSIONS)
    if not found:
        return found, {}
    try:
        checked = await check(deps.pool, deps.settings, every=True)
    except ConfigError as exc:
        return found, exc.message
    return found, {v.version_id: "" if v.ok else v.problem for v in checked.versions}


def _yaml(live: Policy) -> str:
    """The live policy as a proposal file (the format ``spendgate policy show`` prints)."""
    return str(yaml.dump(to_document(live), Dumper=_Dumper, sort_keys=False, allow_unicode=True))


def _usd(micros: int | None) -> str:
    return "" if micros is None else usd_str(micros)


def _proposal_text(fields: dict[str, str]) -> str:
    """The uploaded file when one was chosen, else the text area."""
    uploaded = fields.get("proposal_file", "")
    text = uploaded if uploaded.strip() else fields.get("proposal", "")
    if not text.strip():
        raise Refused("give a proposal: paste it or choose a file (the live policy is the starting point)")
    return text


def _days(raw: str) -> int:
    raw = raw.strip() or "30"
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 3 and 1 <= int(raw) <= 366):
        raise Refused("days: give a whole number of days, 1 to 366")
    return int(raw)


async def _refuse_with_text(request: web.Request, *, error: str | None = None,
                            status: int = 200) -> web.StreamResponse:
    return await page(request, error=error, status=status, proposal_text=request.get(_TEXT))


_TEXT = web.RequestKey("policy_proposal_text", str)
"""The proposal a refused dry-run or apply was given, so the page shows it again for correcting."""


@action(_refuse_with_text)
async def post_dry_run(request: web.Request, who: Identity) -> web.StreamResponse:
    if not may_change_policy(who):
        raise forbidden("only admins and FinOps dry-run policies")
    deps = request.app[DEPS]
    fields = await read_form(request, big=PROPOSAL_FIELDS)
    text = _proposal_text(fields)
    request[_TEXT] = text
    days = _days(fields.get("days", ""))
    proposal = policy_from_document(parse_proposal(text, source="the proposal"), deps.settings.enforcement)
    result, _ = await dry_run(deps.pool, proposal, deps.prices, days=days, now=deps.now())
    log.info("policy dry-run from the console", days=days, events=result.events, actor=who.actor)
    return render(request, "policy_result.html", title="Policy dry-run", result=result, applied=None,
                  proposal_text=text)


@action(_refuse_with_text)
async def post_apply(request: web.Request, who: Identity) -> web.StreamResponse:
    if not may_change_policy(who):
        raise forbidden("only admins and FinOps apply policies")
    deps = request.app[DEPS]
    fields = await read_form(request, big=PROPOSAL_FIELDS)
    text = _proposal_text(fields)
    request[_TEXT] = text
    if fields.get("confirm") != "yes":
        raise Refused("tick the confirmation to apply: applying makes these the live budgets")
    proposal = policy_from_document(parse_proposal(text, source="the proposal"), deps.settings.enforcement)
    try:  # a new signed policy version, approved by the signed-in identity (docs/policy.md)
        done = await apply_version(deps.pool, proposal, deps.settings, deps.prices, now=deps.now(),
                                   approver=who.actor, reason=fields.get("reason") or "applied from the console")
    except StoreError as exc:
        if exc.retriable:
            raise
        raise Refused(exc.message) from None
    await audit(request, "policy.apply", "policy",
                {"version": done.version_id, "set": done.set_budgets, "deleted": done.deleted_budgets,
                 "raises": done.added_raises})
    return render(request, "policy_result.html", title="Policy applied", result=None, applied=done,
                  proposal_text=text)


@action(_refuse_with_text)
async def post_rollback(request: web.Request, who: Identity) -> web.StreamResponse:
    if not may_change_policy(who):
        raise forbidden("only admins and FinOps roll policies back")
    deps = request.app[DEPS]
    fields = await read_form(request)
    if fields.get("confirm") != "yes":
        raise Refused("tick the confirmation to roll back: the restored version's budgets become the live ones")
    target = fields.get("version", "").strip()[:100] or None
    try:
        done = await rollback(deps.pool, deps.settings, deps.prices, now=deps.now(), approver=who.actor,
                              reason=fields.get("reason") or "rolled back from the console", to=target)
    except StoreError as exc:
        if exc.retriable:
            raise
        raise Refused(exc.message) from None
    await audit(request, "policy.rollback", "policy", {"version": done.version_id, "restored": target})
    return render(request, "policy_result.html", title="Policy rolled back", result=None, applied=done,
                  proposal_text="")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/policy", page, name="policy")
    app.router.add_post("/policy/dry-run", post_dry_run)
    app.router.add_post("/policy/apply", post_apply)
    app.router.add_post("/policy/rollback", post_rollback)
